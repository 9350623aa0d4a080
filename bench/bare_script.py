"""The script a user writes instead of evalguard: load the weights, one eval forward pass,
torch.onnx.export, an ONNX Runtime session, compare. Timed as a baseline.

``--exporter default`` is torch's default (the dynamo exporter in torch 2.13); ``--exporter fast``
is the fastest honest script, ``dynamo=False`` (the TorchScript exporter)."""
import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()

import numpy as np  # noqa: E402 - timed from the start
import onnxruntime as ort  # noqa: E402 - timed from the start
import torch  # noqa: E402 - timed from the start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--factory", required=True)   # path/to/models.py:fn
    parser.add_argument("--shape", required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--exporter", choices=("default", "fast"), default="default")
    parser.add_argument("--steps", action="store_true", help="print each step's seconds to stderr")
    args = parser.parse_args()
    last = [START]

    def step(name):
        if args.steps:
            now = time.perf_counter()
            print(f"{now - last[0]:7.2f} s  {name}", file=sys.stderr)
            last[0] = now

    step("imports (torch, numpy, onnxruntime)")

    path, fn = args.factory.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("bench_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, fn)()
    step("build the architecture (factory)")
    model.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    step("torch.load + load_state_dict")

    shape = tuple(int(d) for d in args.shape.split("x"))
    torch.manual_seed(0)
    x = torch.randint(0, 2, shape) if args.dtype == "int64" else torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    if not isinstance(expected, torch.Tensor):
        expected = expected[0] if isinstance(expected, (tuple, list)) else next(iter(expected.values()))
    step("one eval forward")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = str(Path(tmp) / "model.onnx")
        extra = {"dynamo": False} if args.exporter == "fast" else {}
        torch.onnx.export(model, (x,), onnx_path, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, **extra)  # the defaults otherwise
        step(f"torch.onnx.export ({'dynamo=False' if extra else 'default'})")
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        step("ONNX Runtime session + one run")
    ok = np.allclose(got, expected.numpy(), atol=1e-4, rtol=1e-3)
    print("match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
