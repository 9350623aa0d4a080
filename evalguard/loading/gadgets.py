"""Classes that ``--trust-module`` never admits: trusting a package is not trusting its gadgets.

A trusted package contributes its ``nn.Module`` classes and plain data classes. Everything that
touches files, processes, memory maps or the network when it is rebuilt or used is refused, by
name (``DENIED``: a curated list for commonly trusted packages, each entry with its reason and a
test) and by shape (a base class from ``_DANGEROUS_BASES``, or Python code in ``__new__``,
``__setstate__``, ``__reduce__`` or ``__del__``, which the unpickler or the garbage collector runs).
"""
from __future__ import annotations

import enum
import inspect

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

#: Bases (by "module.qualname") whose subclasses open files, processes, sockets or maps.
_DANGEROUS_BASES = frozenset({
    "_io._IOBase", "io.IOBase", "mmap.mmap", "numpy.memmap", "subprocess.Popen", "threading.Thread",
    "multiprocessing.process.BaseProcess", "socket.socket", "zipfile.ZipFile", "tarfile.TarFile",
    "logging.Handler", "tempfile.SpooledTemporaryFile", "torch.utils.data.dataset.Dataset",
    "torch.utils.data.dataloader.DataLoader", "ctypes._CData", "_ctypes._CData",
})
_HOOKS = ("__new__", "__setstate__", "__reduce__", "__reduce_ex__", "__del__")


def gadget_reason(cls: type) -> str:
    """Why ``cls`` may not be rebuilt from a trusted package ("" when it may)."""
    from torch import nn

    name = f"{cls.__module__}.{cls.__qualname__}"
    if name in DENIED:
        return DENIED[name]
    for base in inspect.getmro(cls):
        base_name = f"{base.__module__}.{base.__qualname__}"
        if base_name in _DANGEROUS_BASES:
            return f"a {base_name} (touches files, processes or memory)"
    if issubclass(cls, nn.Module) or issubclass(cls, enum.Enum):
        return ""
    for base in inspect.getmro(cls):
        if base.__module__ == "builtins":
            continue
        for hook in _HOOKS:
            value = vars(base).get(hook)
            if value is not None and inspect.isfunction(getattr(value, "__func__", value)):
                return f"not a plain data class ({base.__qualname__}.{hook} runs Python code when rebuilt)"
    return ""
