"""EG106 (inference without eval()): where it fires, and the shapes of correct code it must leave alone."""
import textwrap

import pytest

from evalguard.checks.source.check import run
from evalguard.subject import AuditOptions, AuditSubject


def eg106(source: str) -> list[tuple[int, str]]:
    subject = AuditSubject(path="serve.py", kind="python-source", source_text=textwrap.dedent(source))
    return [(f.location.line, f.evidence["model"]) for f in run(subject, AuditOptions(selected=frozenset({"EG106"}))).findings]


BAD = {
    "script": ("""\
        import torch
        from models import ResNetClassifier
        model = ResNetClassifier()
        model.load_state_dict(torch.load("w.pt"))
        with torch.no_grad():
            out = model(torch.randn(1, 3, 224, 224))
        """, [(6, "model")]),
    "full-pickle-in-function": ("""\
        import torch
        def predict(path, x):
            net = torch.load(path, weights_only=False)
            with torch.inference_mode():
                return net(x)
        """, [(5, "net")]),
    "decorated": ("""\
        import torch
        import torchvision
        backbone = torchvision.models.resnet18()
        @torch.no_grad()
        def embed(x):
            return backbone.forward(x)
        """, [(6, "backbone")]),
    "named-like-inference": ("""\
        import torch, timm
        def run_inference(x):
            m = timm.create_model("resnet18").to("cpu")
            return m(x)
        """, [(4, "m")]),
    "handler-attribute": ("""\
        import torch
        class Handler:
            def initialize(self, ctx):
                self.model = torch.jit.load(ctx.path)
            def handle(self, data):
                return self.model(data)
        """, [(6, "self.model")]),
    "caller-chain": ("""\
        import torch
        from torch import nn
        class Net(nn.Module):
            def forward(self, x):
                return x
        def build():
            return Net()
        def infer(model, x):
            with torch.no_grad():
                return model(x)
        def main():
            model = build()
            infer(model, 1)
        """, [(10, "model")]),
    "set-grad-enabled-false": ("""\
        import torch
        from models import UNet
        net = UNet()
        with torch.set_grad_enabled(False):
            mask = net(image)
        """, [(5, "net")]),
    "wrapped-by-compile": ("""\
        import torch
        from models import TextEncoder
        encoder = TextEncoder()
        fast = torch.compile(encoder)
        with torch.no_grad():
            fast(tokens)
        """, [(6, "fast")]),
    "async-serving": ("""\
        import torch
        from models import SpeechModel
        model = SpeechModel()
        async def serve(request):
            with torch.inference_mode():
                return model(request.audio)
        """, [(6, "model")]),
}

GOOD = {
    "eval-in-function": """\
        import torch
        from models import ResNetClassifier
        def predict(x):
            model = ResNetClassifier()
            model.eval()
            with torch.no_grad():
                return model(x)
        """,
    "eval-chained-at-load": """\
        import torch
        from models import ResNetClassifier
        model = ResNetClassifier().to("cpu").eval()
        with torch.no_grad():
            model(x)
        """,
    "eval-in-main-guard": """\
        import torch
        from models import ResNetClassifier
        model = ResNetClassifier()
        def predict(x):
            with torch.no_grad():
                return model(x)
        if __name__ == "__main__":
            model.eval()
            predict(1)
        """,
    "eval-in-another-function-for-a-global": """\
        import torch
        from models import ResNetClassifier
        model = ResNetClassifier()
        def setup():
            model.eval()
        def predict(x):
            with torch.no_grad():
                return model(x)
        """,
    "train-false": """\
        import torch
        from models import ResNetClassifier
        net = ResNetClassifier()
        net.train(False)
        with torch.no_grad():
            net(x)
        """,
    "eval-in-init": """\
        import torch
        class Service:
            def __init__(self, path):
                model = torch.jit.load(path)
                model.eval()
                self.model = model
            def predict(self, x):
                return self.model(x)
        """,
    "caller-evals": """\
        import torch
        from models import Net
        def infer(model, x):
            with torch.no_grad():
                return model(x)
        def main():
            model = Net()
            model.eval()
            infer(model, 1)
        """,
    "factory-evals": """\
        import torch
        from models import Net
        def load(path):
            model = Net()
            model.load_state_dict(torch.load(path))
            model.eval()
            return model
        @torch.inference_mode()
        def serve(x):
            net = load("w.pt")
            return net(x)
        """,
    "helper-evals": """\
        import torch
        from models import Net
        def prepare(m):
            m.eval()
            return m
        model = Net()
        prepare(model)
        with torch.no_grad():
            model(x)
        """,
    "from-pretrained-is-eval": """\
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("bert-base-uncased")
        with torch.no_grad():
            model(**batch)
        """,
    "parameter-without-callers-is-unknown": """\
        import torch
        def predict(model, x):
            with torch.no_grad():
                return model(x)
        """,
    "opaque-factory-is-unknown": """\
        import torch
        from mylib import build_model
        model = build_model(cfg)
        with torch.no_grad():
            model(x)
        """,
    "batchnorm-recalibration": """\
        import torch
        from models import Net
        model = Net()
        model.train()
        with torch.no_grad():
            for x in loader:
                model(x)
        """,
    "builder-warms-up-batchnorm": """\
        import torch
        from torch import nn
        def warmed_up():
            model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
            with torch.no_grad():
                model(torch.randn(32, 8))
            return model
        """,
    "training-loop-with-ema-block": """\
        import torch
        from models import Net
        def train(loader):
            model = Net()
            opt = torch.optim.AdamW(model.parameters())
            for x in loader:
                model(x).sum().backward()
                with torch.no_grad():
                    norm = sum(p.norm() for p in model.parameters())
        """,
    "loss-and-linear-are-not-mode-dependent": """\
        import torch
        from torch import nn
        loss_fn = nn.CrossEntropyLoss()
        probe = nn.Linear(8, 2)
        with torch.no_grad():
            loss = loss_fn(probe(x), y)
        """,
    "submodule-inside-an-nn-module": """\
        import torch
        from torch import nn
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2), 2)
            @torch.no_grad()
            def generate(self, x):
                return self.encoder(x)
        """,
    "lightning-steps": """\
        import torch
        class Lit(LightningModule):
            def __init__(self):
                super().__init__()
                self.model = Net()
            def predict_step(self, batch):
                return self.model(batch)
            def validation_step(self, batch):
                with torch.no_grad():
                    return self.model(batch)
        """,
    "validation-evals-itself": """\
        import torch
        from models import Net
        def validate(model, loader):
            model.eval()
            with torch.no_grad():
                return [model(x) for x in loader]
        def main():
            model = Net()
            validate(model, [])
        """,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_eg106_fires(name):
    source, expected = BAD[name]
    assert eg106(source) == expected


@pytest.mark.parametrize("name", sorted(GOOD))
def test_eg106_stays_silent(name):
    assert eg106(GOOD[name]) == []


def test_eg106_message_names_the_origin():
    source, _ = BAD["caller-chain"]
    subject = AuditSubject(path="serve.py", kind="python-source", source_text=textwrap.dedent(source))
    (finding,) = run(subject, AuditOptions(selected=frozenset({"EG106"}))).findings
    line = textwrap.dedent(source).splitlines()[finding.location.line - 1]
    assert finding.location.column == line.index("model(x)") + 1          # 1-based column
    assert "infer() runs model for inference" in finding.message
    assert "Net(...) at line 7" in finding.message
    assert finding.evidence["created_line"] == 7


def test_eg106_one_finding_per_model_and_function():
    source = """\
        import torch
        from models import Net
        model = Net()
        with torch.no_grad():
            a = model(x)
            b = model(y)
        """
    assert eg106(source) == [(5, "model")]
