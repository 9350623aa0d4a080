"""Build the malicious corpus at test time (nothing binary is committed).

Every payload, if it ran, would only create the marker file it is given. Builders return the
path of the file to audit.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch
from torch import nn


class Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_payload(marker: Path):
    return Call(os.system, f"touch {marker}")


# -- TorchScript ------------------------------------------------------------------------------

class SetStateFromFile(nn.Module):
    """``__setstate__`` maps the marker path with ``torch.from_file(shared=True)``: runs on load."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.w = torch.zeros(2)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.w = torch.from_file(state[0], True, 8)

    def forward(self, x):
        return x + 1


class ForwardFromFile(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        return x + torch.from_file(self.path, True, 4).sum()


def torchscript(tmp: Path, module: nn.Module, name: str) -> Path:
    path = tmp / name
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def edit_zip(src: Path, dst: Path, edit) -> Path:
    """Rewrite a zip member by member: ``edit(name, data)`` returns [(name, data), ...]."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            for name, data in edit(item.filename, zin.read(item.filename)):
                zout.writestr(name, data)
    return dst


def torchscript_custom_op(tmp: Path) -> Path:
    """A scripted Linear whose serialized ``forward`` returns through ``ops.evil_ns.run``.

    The edit finds the ``return`` of every ``forward`` in the archive's code members by pattern,
    not by exact bytes: TorchScript mangles class names once the same class was scripted earlier
    in the process, so the serialized code is not byte-stable across test orders.
    """
    import re

    clean = torchscript(tmp, nn.Sequential(nn.Linear(2, 2)), "clean_ts.pt")
    returns = re.compile(rb"(def forward\(.*?\n(?:[ \t]+.*\n)*?[ \t]+)return (.+)")
    edited = []

    def edit(name, data):
        if "/code/" in name and name.endswith(".py"):
            data, count = returns.subn(rb"\1return ops.evil_ns.run(\2)", data)
            edited.append(count)
        return [(name, data)]
    path = edit_zip(clean, tmp / "custom_op.pt", edit)
    assert sum(edited), "no forward found to edit: the payload would be a clean file"
    return path


# -- pickles and torch.save archives ---------------------------------------------------------

def legacy_other_protocol_magic(tmp: Path, marker: Path) -> Path:
    """A legacy stream whose magic number is pickled in protocol 4: the payload is pickle #2."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=4)
    path = tmp / "legacy.pt"
    path.write_bytes(magic + pickle.dumps(touch_payload(marker), protocol=2) + pickle.dumps({}, protocol=2)
                     + pickle.dumps({}, protocol=2) + pickle.dumps([], protocol=2))
    return path


def clean_torch_save(tmp: Path) -> Path:
    path = tmp / "clean.pt"
    torch.save({"w": torch.ones(2)}, path)
    return path


def evil_data_pkl(marker: Path) -> bytes:
    return pickle.dumps({"w": touch_payload(marker)}, protocol=2)


def duplicate_member(tmp: Path, marker: Path) -> Path:
    def edit(name, data):
        if name.endswith("data.pkl"):
            return [(name, evil_data_pkl(marker)), (name, data)]
        return [(name, data)]
    return edit_zip(clean_torch_save(tmp), tmp / "duplicate.pt", edit)


def case_variant_member(tmp: Path, marker: Path) -> Path:
    def edit(name, data):
        if name.endswith("data.pkl"):
            return [(name[:-8] + "DATA.PKL", evil_data_pkl(marker)), (name, data)]
        return [(name, data)]
    return edit_zip(clean_torch_save(tmp), tmp / "case.pt", edit)


def parent_relative_member(tmp: Path, marker: Path) -> Path:
    def edit(name, data):
        extra = [("../" + name.split("/")[-1], evil_data_pkl(marker))] if name.endswith("data.pkl") else []
        return [(name, data), *extra]
    return edit_zip(clean_torch_save(tmp), tmp / "dotdot.pt", edit)


def concatenated_archives(tmp: Path, marker: Path) -> Path:
    evil = edit_zip(clean_torch_save(tmp), tmp / "evil_first.pt",
                    lambda n, d: [(n, evil_data_pkl(marker) if n.endswith("data.pkl") else d)])
    path = tmp / "concat.pt"
    path.write_bytes(evil.read_bytes() + clean_torch_save(tmp).read_bytes())
    return path


def zip_bomb(tmp: Path) -> Path:
    """data.pkl declared as 1 GiB, deflated to about 1 MiB."""
    path = tmp / "bomb.pt"
    chunk = b"\0" * (1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            archive.open("bomb/data.pkl", "w", force_zip64=True) as member:
        for _ in range(64):
            member.write(chunk)
    return path


def many_members(tmp: Path, count: int = 30_000) -> Path:
    path = tmp / "many.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("many/data.pkl", pickle.dumps({"x": 1}, protocol=2))
        for index in range(count):
            archive.writestr(f"many/data/{index}", b"")
    return path


def sized_constructor(tmp: Path, func: str, size: int) -> Path:
    """``builtins.<func>(size)`` (bytearray/range) hand-written into a torch archive's data.pkl."""
    body = b"\x80\x02cbuiltins\n" + func.encode() + b"\n\x8a" + bytes([8]) + size.to_bytes(8, "little") + b"\x85R."
    return edit_zip(clean_torch_save(tmp), tmp / f"{func}.pt",
                    lambda n, d: [(n, body if n.endswith("data.pkl") else d)])


def many_globals(tmp: Path, count: int = 20_000) -> Path:
    """A list of ``count`` distinct untrusted globals (each in its own module)."""
    ops = [b"\x80\x02]("]
    for index in range(count):
        ops.append(f"cevil_pkg_{index % 5000}.mod{index}\nThing{index}\n".encode())
    ops.append(b"e.")
    path = tmp / "names.pkl"
    path.write_bytes(b"".join(ops))
    return path


def forged_numpy_dtype(tmp: Path) -> Path:
    """An object array whose data are raw bytes (dtype flags cleared): numpy dereferences them."""
    import numpy as np

    state = list(np.dtype("O").__reduce__()[2])
    state[-1] = 0
    dtype = Call(np.dtype, "O8", False, True)

    class Build:
        def __reduce__(self):
            return (np.dtype, ("O8", False, True), tuple(state))

    reconstruct = np.core.multiarray._reconstruct if hasattr(np, "core") else np._core.multiarray._reconstruct

    class Array:
        def __reduce__(self):
            return (reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), Build(), False, b"\x41" * 16))

    del dtype
    path = tmp / "dtype.pt"
    torch.save({"metric": Array()}, path)
    return path


def numpy_memmap(tmp: Path, marker: Path) -> Path:
    import numpy as np

    path = tmp / "memmap.pt"
    torch.save({"cache": Call(np.memmap, str(marker), "uint8", "w+", 0, (8,))}, path)
    return path


def main_module_package(tmp: Path, marker: Path) -> str:
    """A package whose ``__main__`` (run on import) creates the marker and exits 0."""
    name = f"evalguard_mainpkg_{abs(hash(str(tmp))) % 10**8}"
    root = tmp / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "__main__.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                      "import sys\nsys.exit(0)\nclass Config:\n    pass\n")
    return name


def main_module_pickle(tmp: Path, package: str) -> Path:
    path = tmp / "main.pt"
    body = b"\x80\x02c" + f"{package}.__main__\nConfig\n".encode() + b")\x81."
    return edit_zip(clean_torch_save(tmp), path, lambda n, d: [(n, body if n.endswith("data.pkl") else d)])


# -- folders, ONNX, configs ------------------------------------------------------------------

def tiny_bert_config() -> dict:
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 32, "max_position_embeddings": 16,
            "type_vocab_size": 2}


def folder_with_extra_pickles(tmp: Path, marker: Path) -> Path:
    from safetensors.torch import save_file

    folder = tmp / "hf"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
    torch.save({"w": touch_payload(marker)}, folder / "pytorch_model.bin")
    (folder / "extra.pkl").write_bytes(pickle.dumps(touch_payload(marker)))
    (folder / "config.json").write_text(json.dumps(tiny_bert_config()))
    return folder


def safetensors_folder(tmp: Path, name: str = "hf_ok") -> Path:
    """A clean Hugging Face folder: safetensors weights and a tiny BERT config."""
    from safetensors.torch import save_file

    folder = tmp / name
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(tiny_bert_config()))
    return folder


def config_bomb(tmp: Path) -> Path:
    from safetensors.torch import save_file

    folder = tmp / "bomb_hf"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**tiny_bert_config(), "vocab_size": 1 << 20,
                                                    "hidden_size": 1 << 10}))
    return folder


def safetensors_huge_header(tmp: Path) -> Path:
    path = tmp / "huge.safetensors"
    size = 99 << 20
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", size) + b"{")
        handle.truncate(8 + size)  # sparse: no disk, no memory
    return path


def onnx_model(tmp: Path, name: str, location: str | None = None, domain: str = "") -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=location)
    op = "Add" if not domain else "Evil"
    node = helper.make_node(op, ["x", "w"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp / name
    onnx.save(model, str(path))
    return path


# -- torch.export ----------------------------------------------------------------------------

def clean_pt2(tmp: Path) -> Path:
    path = tmp / "clean.pt2"
    program = torch.export.export(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (torch.randn(2, 4),))
    torch.export.save(program, str(path))
    return path


def edit_program(data: bytes, edit) -> bytes:
    program = json.loads(data)
    edit(program)
    return json.dumps(program).encode()


def pt2_with(tmp: Path, name: str, edit) -> Path:
    return edit_zip(clean_pt2(tmp), tmp / name, edit)


def first_node_target(target: str):
    def edit(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return edit


def first_expr(expr: str):
    def edit(program):
        def walk(obj):
            if isinstance(obj, dict):
                if "expr_str" in obj:
                    obj["expr_str"] = expr
                    return True
                return any(walk(v) for v in obj.values())
            if isinstance(obj, list):
                return any(walk(v) for v in obj)
            return False
        if not walk(program):
            program.setdefault("range_constraints", {})["s0"] = {"min_val": 2, "max_val": 10}
            program["graph_module"]["graph"].setdefault("sym_int_values", {})["s0"] = {"as_expr": {"expr_str": expr}}
    return edit


# -- hand-assembled pickles (issue 25: forged object states) -----------------------------------

class Asm:
    """A tiny pickle assembler: each method appends one opcode (protocol 2-4 encodings)."""

    def __init__(self, proto: int = 2):
        self.ops = [b"\x80" + bytes([proto])]

    def raw(self, data: bytes):
        self.ops.append(data)
        return self

    def glob(self, module: str, name: str):
        return self.raw(f"c{module}\n{name}\n".encode())

    def str(self, text: str):
        data = text.encode()
        return self.raw(b"X" + struct.pack("<I", len(data)) + data)

    def bytes(self, data: bytes):
        """As protocol 2 writes bytes (torch's weights-only unpickler knows no BINBYTES)."""
        return self.glob("_codecs", "encode").tuple(data.decode("latin-1"), "latin1").op("REDUCE")

    def int(self, value: int):
        return self.raw(b"J" + struct.pack("<i", value))

    def const(self, value):
        return self.raw({None: b"N", True: b"\x88", False: b"\x89"}[value])

    def tuple(self, *items):
        self.raw(b"(")
        for item in items:
            self.value(item)
        return self.raw(b"t")

    def value(self, item):
        if isinstance(item, Asm):
            return self.raw(b"".join(item.ops[1:]))
        if isinstance(item, bool) or item is None:
            return self.const(item)
        if isinstance(item, int):
            return self.int(item)
        if isinstance(item, str):
            return self.str(item)
        if isinstance(item, bytes):
            return self.bytes(item)
        if isinstance(item, tuple):
            return self.tuple(*item)
        raise TypeError(item)

    def put(self, index: int):
        return self.raw(b"q" + bytes([index]))

    def get(self, index: int):
        return self.raw(b"h" + bytes([index]))

    def op(self, name: str):
        codes = {"REDUCE": b"R", "BUILD": b"b", "NEWOBJ": b"\x81", "NEWOBJ_EX": b"\x92", "DUP": b"2",
                 "POP": b"0", "EMPTY_DICT": b"}", "SETITEMS": b"u", "SETITEM": b"s", "MARK": b"(",
                 "STOP": b".", "TUPLE": b"t", "EMPTY_TUPLE": b")"}
        return self.raw(codes[name])

    def done(self) -> bytes:
        return b"".join(self.ops) + b"."


#: numpy's own state of dtype("f8") (what ``numpy.dtype("f8").__reduce__()[2]`` is).
F8_STATE = (3, "<", None, None, None, -1, -1, 0)
#: The same type with the object-reference flags (63) numpy gives only to object dtypes.
F8_OBJECT_FLAGS = (3, "<", None, None, None, -1, -1, 63)
#: An object dtype with its flags cleared: numpy then takes raw file bytes as object pointers.
O8_NO_FLAGS = (3, "|", None, None, None, -1, -1, 0)


def numpy_dtype_pickle(shape: str) -> bytes:
    """A pair (dtype, dtype) whose dtype('f8') ends up with object flags through one opcode path.

    Loading it is harmless and observable: the dtype's ``flags`` are 63 instead of 0 when the
    forged state took effect. Only opcodes torch's weights-only unpickler knows are used where
    it can (REDUCE, NEWOBJ, BUILD, memo); ``dup`` and ``newobj-ex`` need a plain unpickler.
    """
    f8 = ("f8", False, True)
    a = Asm(proto=4).op("MARK")
    if shape == "memo-rebuild":        # a first, valid BUILD, then the memoised object built again
        a.glob("numpy", "dtype").tuple(*f8).op("REDUCE").put(0).tuple(*F8_STATE).op("BUILD")
        a.get(0).tuple(*F8_OBJECT_FLAGS).op("BUILD")
    elif shape == "memo-after-build":  # memoised only after its valid BUILD
        a.glob("numpy", "dtype").tuple(*f8).op("REDUCE").tuple(*F8_STATE).op("BUILD").put(0)
        a.get(0).tuple(*F8_OBJECT_FLAGS).op("BUILD")
    elif shape == "dup-rebuild":       # the same object twice on the stack
        a.glob("numpy", "dtype").tuple(*f8).op("REDUCE").op("DUP").tuple(*F8_STATE).op("BUILD")
        a.op("POP").op("DUP").tuple(*F8_OBJECT_FLAGS).op("BUILD").op("POP")
    elif shape == "newobj":            # dtype.__new__(dtype, "f8") then a forged state
        a.glob("numpy", "dtype").tuple(*f8).op("NEWOBJ").op("DUP").tuple(*F8_OBJECT_FLAGS).op("BUILD").op("POP")
    elif shape == "newobj-ex":
        a.glob("numpy", "dtype").tuple(*f8).op("EMPTY_DICT").op("NEWOBJ_EX").op("DUP")
        a.tuple(*F8_OBJECT_FLAGS).op("BUILD").op("POP")
    elif shape == "dtype-class":       # numpy.dtypes.Float64DType() called, then a forged state
        a.glob("numpy.dtypes", "Float64DType").op("EMPTY_TUPLE").op("REDUCE").op("DUP")
        a.tuple(*F8_OBJECT_FLAGS).op("BUILD").op("POP")
    elif shape == "dict-state":        # state assembled with SETITEMS instead of numpy's tuple
        a.glob("numpy", "dtype").tuple(*f8).op("REDUCE").op("DUP").op("EMPTY_DICT").op("MARK")
        a.str("flags").int(63).op("SETITEMS").op("BUILD").op("POP")
    elif shape == "valid":
        a.glob("numpy", "dtype").tuple(*f8).op("REDUCE").op("DUP").tuple(*F8_STATE).op("BUILD").op("POP")
    else:
        raise ValueError(shape)
    return a.op("TUPLE").done()


def numpy_object_array_pickle() -> bytes:
    """An array of two "objects" whose 16 bytes come from the file: an object dtype made with
    NEWOBJ and its flags cleared, so numpy reads the bytes as pointers (a crash when freed)."""
    a = Asm(proto=2)
    a.glob("numpy._core.multiarray", "_reconstruct").tuple(Asm().glob("numpy", "ndarray"), (0,), b"b").op("REDUCE")
    dtype = Asm().glob("numpy", "dtype").tuple("O8", False, True).op("NEWOBJ").tuple(*O8_NO_FLAGS).op("BUILD")
    a.tuple(1, (2,), dtype, False, b"\x41" * 16).op("BUILD")
    return a.done()


def torch_save_with_data_pkl(tmp: Path, name: str, body: bytes) -> Path:
    """A torch.save archive whose data.pkl is replaced by ``body``."""
    return edit_zip(clean_torch_save(tmp), tmp / name, lambda n, d: [(n, body if n.endswith("data.pkl") else d)])
