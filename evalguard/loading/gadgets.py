"""Classes that ``--trust-module`` never admits: trusting a package is not trusting its gadgets.

A trusted package contributes its ``nn.Module`` classes and plain data classes. Everything that
touches files, processes, memory maps or the network when it is rebuilt or used is refused:

* by name (``DENIED``: a curated list for commonly trusted packages, each entry with its reason and
  a test). Every entry is listed under the name users import it by *and* the defining module a
  real pickle names (``transformers.Trainer`` is pickled as ``transformers.trainer.Trainer``), and
  the class's whole MRO is compared, so a subclass of a denied class is denied too. Nothing is
  imported to decide this: the class being vetted is already imported (its package is trusted)
  and its bases carry their own defining names;
* by shape: a base class from ``_DANGEROUS_BASES``; Python code in ``__new__``, ``__setstate__``,
  ``__reduce__`` or ``__del__`` (the unpickler or the garbage collector runs them); or a
  ``__setattr__``/``__setitem__`` (run when a pickle sets its state) whose code, followed through
  the ``self.method()`` calls and same-module functions it makes, calls file, process, network or
  import functions. When the pickle *calls* the class (REDUCE/INST/OBJ; ``call_reason``) the same
  reading covers ``__init__``/``__post_init__``, which then run with arguments the file chose;
  a class rebuilt with NEWOBJ (how pickle saves instances) never runs them. The reading is
  static: code it cannot read (no source) fails closed.
"""
from __future__ import annotations

import ast
import enum
import functools
import inspect
import sys
import textwrap

#: "module.qualname" -> why it is refused even from a trusted package.
DENIED: dict[str, str] = {
    "numpy.memmap": "maps (and creates) files",
    "numpy.lib.format.open_memmap": "maps (and creates) files",
    "numpy.lib.npyio.NpzFile": "opens files",
    "numpy.lib._npyio_impl.NpzFile": "opens files",
    "numpy.lib.npyio.DataSource": "opens files and URLs",
    "numpy.lib._datasource.DataSource": "opens files and URLs",
    "numpy.DataSource": "opens files and URLs",
    "numpy.nditer": "iterator over raw memory",
    "numpy.recarray": "structured records (field offsets chosen by the file)",
    "numpy.ctypeslib.c_intp": "raw C pointers",
    "transformers.Trainer": "writes checkpoints, starts processes",
    "transformers.TrainingArguments": "creates output folders and logging",
    "transformers.Seq2SeqTrainingArguments": "creates output folders and logging",
    "transformers.HfArgumentParser": "parses the command line and reads files",
    "transformers.Pipeline": "downloads and runs models",
    "transformers.pipelines.base.Pipeline": "downloads and runs models",
    "transformers.TrainerCallback": "runs on training events (file writes)",
    "transformers.integrations.WandbCallback": "network access",
    "timm.utils.CheckpointSaver": "writes and deletes checkpoint files",
    "timm.utils.checkpoint_saver.CheckpointSaver": "writes and deletes checkpoint files",
    "timm.data.ImageDataset": "reads files",
    "timm.data.dataset.ImageDataset": "reads files",
    "timm.data.readers.reader_image_folder.ReaderImageFolder": "walks and reads folders",
    "lightning.pytorch.callbacks.ModelCheckpoint": "writes and deletes checkpoint files",
    "pytorch_lightning.callbacks.ModelCheckpoint": "writes and deletes checkpoint files",
    "lightning.pytorch.loggers.TensorBoardLogger": "writes log files",
    "pytorch_lightning.loggers.TensorBoardLogger": "writes log files",
}
#: The defining module of each re-exported entry above (what pickle writes for the class).
DENIED.update({
    "transformers.trainer.Trainer": DENIED["transformers.Trainer"],
    "transformers.training_args.TrainingArguments": DENIED["transformers.TrainingArguments"],
    "transformers.training_args_seq2seq.Seq2SeqTrainingArguments": DENIED["transformers.Seq2SeqTrainingArguments"],
    "transformers.hf_argparser.HfArgumentParser": DENIED["transformers.HfArgumentParser"],
    "transformers.trainer_callback.TrainerCallback": DENIED["transformers.TrainerCallback"],
    "transformers.integrations.integration_utils.WandbCallback": DENIED["transformers.integrations.WandbCallback"],
    "numpy._core.memmap.memmap": DENIED["numpy.memmap"],
    "numpy.core.memmap.memmap": DENIED["numpy.memmap"],
    "numpy._core.records.recarray": DENIED["numpy.recarray"],
    "numpy.core.records.recarray": DENIED["numpy.recarray"],
    "numpy.rec.recarray": DENIED["numpy.recarray"],
    "numpy.lib._npyio_impl.DataSource": DENIED["numpy.DataSource"],
    "numpy.lib._format_impl.open_memmap": DENIED["numpy.lib.format.open_memmap"],
    "timm.data.readers.reader_image_folder.ReaderImageFolder": "walks and reads folders",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint": "writes and deletes checkpoint files",
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": "writes and deletes checkpoint files",
    "lightning.pytorch.loggers.tensorboard.TensorBoardLogger": "writes log files",
    "pytorch_lightning.loggers.tensorboard.TensorBoardLogger": "writes log files",
})

#: Bases (by "module.qualname") whose subclasses open files, processes, sockets or maps.
_DANGEROUS_BASES = frozenset({
    "_io._IOBase", "io.IOBase", "mmap.mmap", "numpy.memmap", "subprocess.Popen", "threading.Thread",
    "multiprocessing.process.BaseProcess", "socket.socket", "zipfile.ZipFile", "tarfile.TarFile",
    "logging.Handler", "tempfile.SpooledTemporaryFile", "torch.utils.data.dataset.Dataset",
    "torch.utils.data.dataloader.DataLoader", "ctypes._CData", "_ctypes._CData",
})
_HOOKS = ("__new__", "__setstate__", "__reduce__", "__reduce_ex__", "__del__")
#: Run when a pickle sets an object's state (BUILD's slot state, SETITEM/SETITEMS on it).
_STATE_METHODS = ("__setattr__", "__setitem__")
#: Run when a pickle calls the class (REDUCE/INST/OBJ: ``cls(*args)``); NEWOBJ runs neither.
_CALL_METHODS = ("__init__", "__post_init__")
#: Calls that touch files, processes, the network or the import system, as written in code:
#: functions called by bare name, methods that mean I/O on any receiver, and whole modules.
_IO_FUNCTIONS = frozenset({
    "open", "exec", "eval", "compile", "__import__", "import_module", "hf_hub_download", "snapshot_download",
    "cached_file", "urlopen", "urlretrieve", "mkdtemp", "mkstemp", "NamedTemporaryFile", "TemporaryDirectory",
    "memmap", "open_memmap", "FileHandler", "SummaryWriter", "CDLL", "makedirs", "rmtree", "copyfile",
    "copytree", "system", "popen", "Popen", "check_call", "check_output", "create_connection", "from_file",
})
_IO_METHODS = frozenset({
    "open", "mkdir", "touch", "write_text", "write_bytes", "read_text", "read_bytes", "unlink", "rmdir",
    "symlink_to", "hardlink_to", "from_pretrained", "save_pretrained", "push_to_hub", "to_json_file",
    "download", "makedirs", "rmtree", "urlopen", "memmap", "from_file",
})
_IO_MODULES = frozenset({"subprocess", "shutil", "socket", "requests", "urllib", "http", "ctypes", "importlib",
                         "tempfile", "mmap", "pickle", "wandb", "httpx", "ftplib", "smtplib", "multiprocessing"})
_IO_DOTTED = frozenset({"torch.save", "torch.load", "torch.from_file", "np.load", "np.save", "np.savez",
                        "numpy.load", "numpy.save", "numpy.savez", "np.fromfile", "numpy.fromfile",
                        "json.dump", "json.load", "yaml.dump", "yaml.load", "io.open", "io.FileIO"})
#: ``os`` attributes that read the environment or paths, not the file system's contents.
_OS_PURE = frozenset({"environ", "path", "getenv", "fspath", "sep", "linesep", "name", "cpu_count", "getpid",
                      "pathsep", "curdir", "pardir", "extsep"})
_MAX_FOLLOWED = 40


def gadget_reason(cls: type) -> str:
    """Why ``cls`` may not be rebuilt from a trusted package ("" when it may)."""
    from torch import nn

    mro = inspect.getmro(cls)
    for base in mro:
        base_name = f"{base.__module__}.{base.__qualname__}"
        if base_name in DENIED:
            return DENIED[base_name] if base is cls else f"a subclass of {base_name} ({DENIED[base_name]})"
        if base_name in _DANGEROUS_BASES:
            return f"a {base_name} (touches files, processes or memory)"
    if not (issubclass(cls, nn.Module) or issubclass(cls, enum.Enum)):
        for base in mro:
            if base.__module__ == "builtins":
                continue
            for hook in _HOOKS:
                value = vars(base).get(hook)
                if value is not None and inspect.isfunction(getattr(value, "__func__", value)):
                    return f"not a plain data class ({base.__qualname__}.{hook} runs Python code when rebuilt)"
    return _io_reason(cls, _STATE_METHODS)


def call_reason(cls: type) -> str:
    """Why a pickle may not *call* ``cls`` (REDUCE/INST/OBJ run its ``__init__`` with arguments the
    file chose): its ``__init__``/``__post_init__`` reach I/O. "" when it may."""
    return _io_reason(cls, _CALL_METHODS)


def _io_reason(cls: type, hooks: tuple[str, ...]) -> str:
    """Why running ``hooks`` of ``cls`` may touch I/O; "" if not."""
    for base in inspect.getmro(cls):
        if base.__module__ == "builtins" or base.__module__.split(".")[0] == "torch":
            continue  # torch's own nn.Module machinery is audited with torch, not per class
        for hook in hooks:
            func = vars(base).get(hook)
            if func is None or not inspect.isfunction(func):
                continue
            if _generated(func):
                continue  # a dataclass/attrs __init__: plain assignments
            found = _io_in(func, cls)
            if found:
                return f"not a plain data class ({base.__qualname__}.{hook} reaches {found}: I/O when rebuilt)"
    return ""


def _generated(func) -> bool:
    """Code generated by ``dataclasses``/``attrs`` (plain field assignments), not written by hand."""
    return func.__code__.co_filename.startswith("<")


def _io_in(func, cls: type) -> str:
    """The first I/O call ``func`` makes, following ``self.x()`` and same-module function calls."""
    pending, seen = [func], set()
    while pending and len(seen) < _MAX_FOLLOWED:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        wrapped = getattr(current, "__wrapped__", None)
        if inspect.isfunction(wrapped) and not _generated(wrapped):
            pending.append(wrapped)   # a decorator's wrapper: both its own code and what it wraps
        tree = _parsed(current.__code__)
        if tree is None:
            return f"{getattr(current, '__qualname__', current)} (source unreadable)"
        module = sys.modules.get(getattr(current, "__module__", "") or "")
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            dotted = _dotted(call.func)
            if not dotted:
                continue
            parts = dotted.split(".")
            if _is_io_call(parts, dotted):
                return f"{dotted}()"
            target = _follow(parts, cls, module)
            if target is not None:
                pending.append(target)
    return ""


def _is_io_call(parts: list[str], dotted: str) -> bool:
    if len(parts) == 1:
        return parts[0] in _IO_FUNCTIONS
    if dotted in _IO_DOTTED or parts[-1] in _IO_METHODS or parts[0] in _IO_MODULES:
        return True
    return parts[0] == "os" and parts[1] not in _OS_PURE


def _follow(parts: list[str], cls: type, module):
    """The Python function a call reaches when it is ``self.method`` or a same-module function."""
    if parts[0] in ("self", "cls") and len(parts) == 2:
        target = inspect.getattr_static(cls, parts[1], None)
    elif len(parts) == 1 and module is not None:
        target = vars(module).get(parts[0])
    else:
        return None
    target = getattr(target, "__func__", target)
    return target if inspect.isfunction(target) and not _generated(target) else None


@functools.lru_cache(maxsize=1024)
def _parsed(code) -> ast.AST | None:
    """The source of one code object (not of what a decorator wraps: ``getsource`` would unwrap)."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None


def _dotted(node) -> str:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return ".".join(reversed(names))
    if isinstance(node, ast.Call) and names:   # Path(x).mkdir(): a method of whatever the call returns
        inner = _dotted(node.func) or "<call>"
        return ".".join([f"{inner}()", *reversed(names)])
    return ""
