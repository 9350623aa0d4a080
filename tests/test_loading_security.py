"""Malicious and untrusted pickles: refused with EG901/EG902, and nothing is ever executed.

Every payload here would create ``tmp_path / "pwned"`` if it ran; each test asserts that the
file never appears. The corpus is generated at test time (``__reduce__`` and hand-written
pickle opcodes); nothing binary is committed.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from evalguard.errors import RefusedTarget, UsageError
from evalguard.loading import load_target
from evalguard.loading.allowlist import ALLOWED, UNSAFE, UNTRUSTED, AllowList
from evalguard.loading.pickle_scan import GlobalRef, scan_pickle_bytes
from evalguard.subject import AuditOptions


class Payload:
    """Pickles as ``func(*args)``: what an attacker puts in a checkpoint."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload ran"


def refused(path, **options) -> RefusedTarget:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions(**options))
    return info.value


def unsafe_globals(exc: RefusedTarget) -> list[str]:
    eg901 = [f for f in exc.findings if f.rule == "EG901"]
    assert len(eg901) == 1, exc.findings
    return eg901[0].evidence["globals"]


def op_str(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4) or BINUNICODE for a string."""
    data = text.encode()
    return (b"\x8c" + bytes([len(data)]) + data) if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def global_call(module: str, name: str, arg: str) -> bytes:
    """Protocol-2 opcodes for ``module.name(arg)``: GLOBAL, BINUNICODE, TUPLE1, REDUCE, STOP."""
    data = arg.encode()
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(data)) + data
            + b"\x85R.")


def rewrite_zip(src: Path, dst: Path, replace=None, add=None) -> Path:
    """Copy a zip archive, replacing members whose name ends with a key of ``replace``."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        prefix = zin.namelist()[0].split("/")[0] + "/"
        for item in zin.infolist():
            data = zin.read(item.filename)
            for suffix, new in replace.items():
                if item.filename.endswith(suffix):
                    data = new(data) if callable(new) else new
            zout.writestr(item, data)
        for name, data in add.items():
            zout.writestr(prefix + name, data)
    return dst


# -- the corpus ---------------------------------------------------------------------------

def _os_system_in_zip(tmp, cmd):
    torch.save({"model": nn.Linear(2, 2).state_dict(), "hook": Payload(os.system, cmd)}, tmp / "m.pt")
    return tmp / "m.pt", "system"


def _popen_legacy(tmp, cmd):
    torch.save(Payload(subprocess.Popen, ["sh", "-c", cmd]), tmp / "m.pt", _use_new_zipfile_serialization=False)
    return tmp / "m.pt", "subprocess.Popen"


def _exec_protocol4(tmp, cmd):
    (tmp / "m.pt").write_bytes(pickle.dumps(Payload(exec, f"import os; os.system({cmd!r})"), protocol=4))
    return tmp / "m.pt", "builtins.exec"


def _eval_protocol2(tmp, cmd):
    (tmp / "m.bin").write_bytes(global_call("builtins", "eval", f"__import__('os').system({cmd!r})"))
    return tmp / "m.bin", "builtins.eval"


def _py2_builtin_names(tmp, cmd):
    # Python-2 spelling, mapped to builtins.eval exactly as torch's loader maps it.
    (tmp / "m.pt").write_bytes(global_call("__builtin__", "eval", f"__import__('os').system({cmd!r})"))
    return tmp / "m.pt", "builtins.eval"


def _collect_env_run(tmp, cmd):
    from torch.utils import collect_env

    torch.save([Payload(collect_env.run, cmd)], tmp / "m.pt")
    return tmp / "m.pt", "torch.utils.collect_env.run"


def _torch_load_gadget(tmp, cmd):
    torch.save({"state": Payload(torch.load, str(tmp / "other.pt"))}, tmp / "m.pt")
    return tmp / "m.pt", "torch.serialization.load"


def _protocol0_text(tmp, cmd):
    (tmp / "m.pt").write_bytes(f"cos\nsystem\n(S'{cmd}'\ntR.".encode())
    return tmp / "m.pt", "os.system"


def _handwritten_data_pkl(tmp, cmd):
    torch.save(torch.zeros(2), tmp / "clean.pt")
    rewrite_zip(tmp / "clean.pt", tmp / "m.pt", replace={"data.pkl": global_call("posix", "system", cmd)})
    return tmp / "m.pt", "posix.system"


def _memo_stack_global(tmp, cmd):
    # 'os' and 'system' are memoised, popped, and fetched back before STACK_GLOBAL.
    body = (b"\x80\x04" + op_str("os") + b"\x94" + op_str("system") + b"\x94" + b"00"
            + b"h\x00h\x01\x93" + op_str(cmd) + b"\x85R.")
    (tmp / "m.pt").write_bytes(body)
    return tmp / "m.pt", "os.system"


def _dynamic_stack_global(tmp, cmd):
    # The module name is computed (str.join) at load time: it cannot be read statically.
    body = (b"\x80\x04" + op_str("builtins") + op_str("str") + b"\x93" + op_str("os") + b"\x85R"
            + op_str("system") + b"\x93" + op_str(cmd) + b"\x85R.")
    (tmp / "m.pt").write_bytes(body)
    return tmp / "m.pt", "<unresolved>"


def _getattr_gadget(tmp, cmd):
    (tmp / "m.pt").write_bytes(global_call("builtins", "getattr", cmd))
    return tmp / "m.pt", "builtins.getattr"


def _tensor_pickled_with_pickle_module(tmp, cmd):
    # pickle.dumps(tensor) goes through torch.storage._load_from_bytes, i.e. torch.load(weights_only=False).
    (tmp / "m.pkl").write_bytes(pickle.dumps(torch.ones(2)))
    return tmp / "m.pkl", "torch.storage._load_from_bytes"


def _torchscript_with_payload(tmp, cmd):
    torch.jit.script(nn.Linear(2, 2)).save(str(tmp / "clean.pt"))
    rewrite_zip(tmp / "clean.pt", tmp / "m.pt", replace={"constants.pkl": global_call("posix", "system", cmd)})
    return tmp / "m.pt", "posix.system"


CORPUS = {
    "os.system in a torch.save zip": _os_system_in_zip,
    "subprocess.Popen in a legacy torch.save file": _popen_legacy,
    "builtins.exec via protocol-4 STACK_GLOBAL": _exec_protocol4,
    "builtins.eval in a plain protocol-2 pickle": _eval_protocol2,
    "__builtin__.eval (python-2 name)": _py2_builtin_names,
    "torch.utils.collect_env.run (torch function running a shell)": _collect_env_run,
    "torch.load inside a checkpoint": _torch_load_gadget,
    "protocol-0 text pickle named .pt": _protocol0_text,
    "hand-written data.pkl inside a torch zip": _handwritten_data_pkl,
    "STACK_GLOBAL through the memo": _memo_stack_global,
    "STACK_GLOBAL with a computed module name": _dynamic_stack_global,
    "builtins.getattr gadget": _getattr_gadget,
    "tensor pickled with the pickle module": _tensor_pickled_with_pickle_module,
    "TorchScript archive with a payload pickle": _torchscript_with_payload,
}


@pytest.mark.parametrize("make", CORPUS.values(), ids=CORPUS.keys())
def test_malicious_pickles_are_refused_with_eg901(make, tmp_path, sentinel):
    path, expected = make(tmp_path, f"touch {sentinel}")
    exc = refused(path)
    globals_ = unsafe_globals(exc)
    assert any(expected in g for g in globals_), globals_
    assert "not loaded" in str(exc) and len(str(exc).splitlines()) == 1


def test_trusting_a_module_never_allows_stdlib_callables(tmp_path, sentinel):
    path, _ = _os_system_in_zip(tmp_path, f"touch {sentinel}")
    exc = refused(path, trust_modules=("transformers",))
    assert any("system" in g for g in unsafe_globals(exc))


def test_payload_would_run_without_the_scanner(tmp_path):
    """Control: the corpus is real (the payload does run under a plain unpickler, in a child)."""
    marker = tmp_path / "ran"
    path, _ = _memo_stack_global(tmp_path, f"touch {marker}")
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())",
                    str(path)], check=True, timeout=60)
    assert marker.exists()


# -- torch.export archives ----------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory) -> Path:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).relu()

    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    batch = torch.export.Dim("batch", min=2, max=64)
    program = torch.export.export(Net(), (torch.randn(3, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def _edit_program(edit):
    def rewrite(data: bytes) -> bytes:
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()
    return rewrite


def _set_first(key, value):
    def edit(program):
        def walk(obj):
            if isinstance(obj, dict):
                for k in obj:
                    if k == key:
                        obj[k] = value
                        return True
                    if walk(obj[k]):
                        return True
            elif isinstance(obj, list):
                return any(walk(item) for item in obj)
            return False
        assert walk(program), key
    return edit


def test_pt2_sympy_expression_payload_is_refused(clean_pt2, tmp_path, sentinel):
    expr = f"__import__('os').system('touch {sentinel}')"
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2",
                       replace={"models/model.json": _edit_program(_set_first("expr_str", expr))})
    exc = refused(path)
    assert any("sympy" in c for c in exc.findings[0].evidence["constructs"])


def test_pt2_guard_code_payload_is_refused(clean_pt2, tmp_path, sentinel):
    guard = f"__import__('os').system('touch {sentinel}') == 0"
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2",
                       replace={"models/model.json": _edit_program(lambda p: p.update(guards_code=[guard]))})
    exc = refused(path)
    assert any("guard" in c for c in exc.findings[0].evidence["constructs"])


def test_pt2_node_target_outside_operators_is_refused(clean_pt2, tmp_path, sentinel):
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2",
                       replace={"models/model.json": _edit_program(_set_first("target", "torch.serialization.load"))})
    exc = refused(path)
    eg904 = [f for f in exc.findings if f.rule == "EG904"]
    assert len(eg904) == 1 and any("torch.serialization.load" in op for op in eg904[0].evidence["operations"])


def test_pt2_input_name_code_injection_is_refused(clean_pt2, tmp_path, sentinel):
    name = f"x=__import__('os').system('touch {sentinel}')"
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2",
                       replace={"models/model.json": _edit_program(_set_first("name", name))})
    exc = refused(path)
    assert any("identifier" in c for c in exc.findings[0].evidence["constructs"])


def test_pt2_payload_in_sample_inputs_is_refused(clean_pt2, tmp_path, sentinel):
    torch.save((Payload(os.system, f"touch {sentinel}"),), tmp_path / "inputs.pt")
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2",
                       replace={"sample_inputs/model.pt": (tmp_path / "inputs.pt").read_bytes()})
    exc = refused(path)
    assert any("system" in g for g in unsafe_globals(exc))
    assert exc.kind == "exported-program"


def test_pt2_with_aotinductor_code_is_refused(clean_pt2, tmp_path):
    path = rewrite_zip(clean_pt2, tmp_path / "m.pt2", add={"data/aotinductor/model/model.so": b"\x7fELF"})
    exc = refused(path)
    assert any("AOTInductor" in c for c in exc.findings[0].evidence["constructs"])


def test_clean_pt2_passes_the_static_checks(clean_pt2, as_worker):
    subject = load_target(str(clean_pt2), AuditOptions())
    assert subject.kind == "exported-program"


# -- EG902: classes from packages the user did not trust ---------------------------------

@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package ``pkg_<n>`` whose import would drop ``imported`` next to it."""
    name = f"evalguard_userpkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(tmp_path / 'imported')!r}).touch()\n")
    (root / "models.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        from subprocess import Popen

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
                self.drop = nn.Dropout(0.3)

            def forward(self, x):
                return self.drop(self.fc(x))

        def make_net():
            return Net()
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def _class_pickle(module: str, name: str) -> bytes:
    """A zip checkpoint that instantiates ``module.name`` (written without importing it)."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")\x81}b."


def test_untrusted_class_gives_eg902_without_importing_the_package(user_package, tmp_path):
    torch.save(torch.zeros(1), tmp_path / "clean.pt")
    path = rewrite_zip(tmp_path / "clean.pt", tmp_path / "m.pt",
                       replace={"data.pkl": _class_pickle(f"{user_package}.models", "Net")})
    exc = refused(path)
    assert [f.rule for f in exc.findings] == ["EG902"]
    finding = exc.findings[0]
    assert finding.evidence["package"] == user_package
    assert f"--trust-module {user_package}" in finding.message
    assert not (tmp_path / "imported").exists()


def test_untrusted_function_is_unsafe_not_untrusted(user_package, tmp_path):
    (tmp_path / "m.pt").write_bytes(global_call(f"{user_package}.models", "make_net", "x"))
    exc = refused(tmp_path / "m.pt")
    assert [f.rule for f in exc.findings] == ["EG901"]
    assert not (tmp_path / "imported").exists()


def test_trusted_package_classes_load_and_keep_training_flags(user_package, tmp_path, as_worker):
    import importlib

    models = importlib.import_module(f"{user_package}.models")
    model = models.Net().eval()
    model.drop.train()  # the evidence EG101 needs: one module left in training mode
    torch.save(model, tmp_path / "m.pt")
    subject = load_target(str(tmp_path / "m.pt"), AuditOptions(trust_modules=(user_package,)))
    assert type(subject.model).__name__ == "Net"
    assert subject.model.training is False and subject.model.drop.training is True
    assert subject.load.saved_training is False


def test_trusted_package_re_exporting_popen_is_still_refused(user_package, tmp_path, sentinel):
    (tmp_path / "m.pt").write_bytes(global_call(f"{user_package}.models", "Popen", f"touch {sentinel}"))
    exc = refused(tmp_path / "m.pt", trust_modules=(user_package,))
    details = exc.findings[0].evidence["details"]
    assert exc.findings[0].rule == "EG901"
    assert "subprocess.Popen" in details[0]["reason"]
    assert "never allowed" in details[0]["reason"]


def test_class_from_the_saving_script_main_is_eg902_with_state_dict_advice(tmp_path):
    (tmp_path / "m.pt").write_bytes(_class_pickle("__main__", "Net"))
    exc = refused(tmp_path / "m.pt")
    assert exc.findings[0].rule == "EG902" and "state_dict" in exc.findings[0].message


@pytest.mark.parametrize("name", ["os", "subprocess", "torch", "torch.utils", "builtins", "not a name"])
def test_stdlib_and_torch_cannot_be_trusted(name):
    with pytest.raises(UsageError):
        AllowList(trust_modules=(name,))


# -- the allow-list itself ----------------------------------------------------------------

@pytest.mark.parametrize("full, status", [
    ("torch._utils._rebuild_tensor_v2", ALLOWED),
    ("collections.OrderedDict", ALLOWED),
    ("builtins.set", ALLOWED),
    ("builtins.slice", ALLOWED),
    ("torch.nn.modules.linear.Linear", ALLOWED),
    ("torch.nn.modules.dropout.Dropout", ALLOWED),
    ("torch.nn.parameter.Parameter", ALLOWED),
    ("torch.nn.functional.relu", ALLOWED),
    ("torch._C._nn.gelu", ALLOWED),
    ("numpy._core.multiarray.scalar", ALLOWED),
    ("argparse.Namespace", ALLOWED),
    ("torch.nn.utils.weight_norm.WeightNorm", ALLOWED),
    ("argparse.ArgumentParser", UNSAFE),
    ("torch.nn.utils.weight_norm.weight_norm", UNSAFE),
    ("torch.utils.hooks.RemovableHandle", UNSAFE),
    ("torch.nn.functional.dropout", UNSAFE),
    ("torch.nn.modules.module.register_module_forward_hook", UNSAFE),
    ("torch.hub.load", UNSAFE),
    ("torch._ops.ops", UNSAFE),
    ("torch.fx.graph_module.reduce_graph_module", UNSAFE),
    ("torch.optim.adam.Adam", UNSAFE),
    ("torch.utils.collect_env.run", UNSAFE),
    ("builtins.exec", UNSAFE),
    ("builtins.type", UNSAFE),
    ("posix.system", UNSAFE),
    ("runpy._run_code", UNSAFE),
    ("functools.partial", UNSAFE),
    ("operator.attrgetter", UNSAFE),
    ("transformers.models.bert.modeling_bert.BertModel", UNTRUSTED),
    ("transformers.utils.import_utils.is_torch_available", UNSAFE),
])
def test_allowlist_decisions(full, status):
    module, name = full.rsplit(".", 1)
    assert AllowList().decide(GlobalRef(module, name)).status == status


@pytest.mark.realmodel  # imports transformers (slow), builds nothing
def test_transformers_classes_are_allowed_only_when_trusted():
    ref = GlobalRef("transformers.models.bert.configuration_bert", "BertConfig")
    assert AllowList().decide(ref).status == UNTRUSTED
    decision = AllowList(trust_modules=("transformers",)).decide(ref)
    assert decision.status == ALLOWED and decision.obj.__name__ == "BertConfig"


def test_scanner_reads_inst_and_ext_opcodes():
    # INST (protocol 0) names a class directly; EXT1 names one through copyreg's registry.
    refs = scan_pickle_bytes(b"(S'x'\nios\nsystem\n.")
    assert [r.full for r in refs] == ["os.system"]
    refs = scan_pickle_bytes(b"\x80\x02\x82\x01)R.")
    assert refs[0].module == "copyreg"
    assert AllowList().decide(refs[0]).status == UNSAFE


def test_scanner_follows_memo_overwrites():
    # memo[0] first holds an allowed-looking module name, then a computed one: the scan must
    # not keep the stale string (it would "resolve" a global the unpickler never uses).
    body = (b"\x80\x04" + op_str("torch.nn.modules.linear") + b"q\x00" + b"0"      # memo[0] = 'torch...'
            + op_str("builtins") + op_str("str") + b"\x93" + op_str("os") + b"\x85R"  # str('os'), computed
            + b"q\x00" + b"0"                                                          # memo[0] = <computed>
            + b"h\x00" + op_str("system") + b"\x93" + op_str("true") + b"\x85R.")
    refs = scan_pickle_bytes(body)
    assert refs[-1].module == "<unresolved>"
    assert AllowList().decide(refs[-1]).status == UNSAFE
