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
    "utility-parameter-without-callers-is-unknown": """\
        import torch
        def apply_all(model, xs):
            with torch.no_grad():
                return [model(x) for x in xs]
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


# -- issue 15: evaluation code, mode order, project-wide origins --------------------------------

def eg106_in(folder, name: str) -> list[tuple[int, str]]:
    """EG106 findings for one file of a project on disk (imports resolved across the folder)."""
    path = folder / name
    subject = AuditSubject(path=str(path), kind="python-source")
    return [(f.location.line, f.evidence["model"])
            for f in run(subject, AuditOptions(selected=frozenset({"EG106"}))).findings]


def write(folder, files: dict[str, str]):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))


SERVING = """\
    import torch
    def load(path):
        return torch.load(path, weights_only=False)
    def predict(model, batch):
        with torch.no_grad():
            return model(batch).argmax(dim=1)
    """


def test_serving_script_next_to_its_loader_is_reported():
    assert eg106(SERVING) == [(6, "model")]
    assert eg106(SERVING.replace("weights_only=False)", "weights_only=False).eval()")) == []


@pytest.mark.parametrize("name", ["test", "evaluate", "validate_epoch", "detect_objects", "run_test", "val"])
def test_evaluation_functions_of_a_training_file(name):
    source = textwrap.dedent(f"""\
        def train(model, loader, opt):
            for x, y in loader:
                model(x).sum().backward()
                opt.step()
        def {name}(model, loader):
            correct = 0
            for x, y in loader:
                correct += (model(x).argmax(1) == y).sum()
            return correct
        """)
    assert eg106(source) == [(8, "model")]
    assert eg106(source.replace("    correct = 0\n", "    model.eval()\n    correct = 0\n")) == []
    # the same helper in a file that never trains: the model's origin is unknown, nothing is said
    assert eg106("\n".join(source.splitlines()[4:])) == []


def test_pytest_functions_are_not_evaluation_code():
    source = """\
        import torch
        def train(model, x):
            model(x).sum().backward()
        def test_model_runs(model, x):
            assert model(x) is not None
        """
    assert eg106(source) == []


def test_order_of_train_and_eval_in_a_training_function():
    source = """\
        import torch
        from models import Net
        def fit(loader, val_loader):
            model = Net()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            model.eval()
            for x, y in loader:
                model.train()
                model(x).sum().backward()
                opt.step()
            for x, y in val_loader:
                print(model(x))
        """
    assert eg106(source) == [(12, "model")]
    fixed = source.replace("            for x, y in val_loader:", "            model.eval()\n            for x, y in val_loader:")
    assert eg106(fixed) == []


def test_monte_carlo_dropout_without_training_is_left_alone():
    source = """\
        import torch
        from models import Net
        def sample(x, val_loader):
            model = Net()
            model.train()
            with torch.no_grad():
                return [model(x) for _ in range(10)]
        """
    assert eg106(source) == []


def test_conditional_expression_in_a_factory():
    source = """\
        import torch
        from models import Net
        def build(gpu):
            m = Net()
            return m.cuda() if gpu else m.cpu()
        def predict(x):
            model = build(True)
            return model(x)
        """
    assert eg106(source) == [(8, "model")]


def test_wrapper_call_of_a_loaded_script_module():
    source = """\
        import torch
        class Predictor:
            def __init__(self, path):
                self.module = torch.jit.load(path)
            def __call__(self, x):
                return self.module(x)
        """
    assert eg106(source) == [(6, "self.module")]
    assert eg106(source.replace("torch.jit.load(path)", "torch.jit.load(path).eval()")) == []


def test_self_call_in_a_module_predict():
    source = """\
        import torch
        from torch import nn
        class Tagger(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop = nn.Dropout(0.2)
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(self.drop(x))
            def predict(self, x):
                with torch.no_grad():
                    return self(x).argmax(-1)
        """
    assert eg106(source) == [(12, "self")]
    assert eg106(source.replace("                with torch.no_grad():",
                                "                self.eval()\n                with torch.no_grad():")) == []
    assert eg106(source.replace("nn.Dropout(0.2)", "nn.Identity()")) == []     # nothing mode-dependent


def test_model_without_mode_dependent_layers_is_not_reported():
    source = """\
        import torch
        from torch import nn
        class Linear2(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 2)
            def forward(self, x):
                return self.b(torch.relu(self.a(x)))
        model = Linear2()
        with torch.no_grad():
            model(x)
        """
    assert eg106(source) == []
    assert eg106(source.replace("nn.Linear(4, 2)", "nn.Sequential(nn.Dropout(), nn.Linear(4, 2))")) == [(12, "model")]


#: A project whose EG106 findings need classes, factories and base classes from other files
#: (also the tree of tests/test_source_parallel.py).
CROSS_FILE_PROJECT = {
    "pkg/__init__.py": "from .nets import PointCls\n",
    "pkg/nets.py": """\
        import torch.nn as nn
        class Base(nn.Module):
            pass
        class PointCls(Base):
            def __init__(self):
                super().__init__()
                self.bn = nn.BatchNorm1d(8)
        def make(k):
            return PointCls()
        """,
    "pkg/trainer.py": """\
        from .nets import make
        class BaseTrainer:
            def __init__(self):
                self.net = make(3)
        """,
    "run.py": """\
        import torch
        from pkg import PointCls
        from pkg.nets import make
        a = PointCls()
        b = make(2)
        with torch.no_grad():
            a(1)
            b(2)
        """,
    "sub.py": """\
        import torch
        from pkg.trainer import BaseTrainer
        class Evaluator(BaseTrainer):
            def evaluate(self, loader):
                with torch.no_grad():
                    return [self.net(x) for x in loader]
        """,
}


def test_classes_factories_and_base_classes_resolved_across_the_folder(tmp_path):
    write(tmp_path, CROSS_FILE_PROJECT)
    assert eg106_in(tmp_path, "run.py") == [(7, "a"), (8, "b")]
    assert eg106_in(tmp_path, "sub.py") == [(6, "self.net")]
    (tmp_path / "pkg/nets.py").write_text((tmp_path / "pkg/nets.py").read_text().replace("BatchNorm1d", "Linear"))
    assert eg106_in(tmp_path, "run.py") == []


def test_recursive_factories_are_followed_once_per_call_and_depth(monkeypatch):
    """The shape of torch/_inductor/fuzzer.py's ``_bisect_failing_config_helper``: a method whose
    returns call itself. Following each path anew cost branches ** MAX_DEPTH calls (seven
    branches there: the file never finished); each call is now traced once per depth."""
    from evalguard.checks.source import model_origin

    followed = []
    callees = model_origin.Tracer._callees
    monkeypatch.setattr(model_origin.Tracer, "_callees",
                        lambda self, scope, call: followed.append(call) or callees(self, scope, call))
    source = """\
        import torch
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop = nn.Dropout(0.1)
        class Search:
            def shrink(self, configs):
                if len(configs) <= 1:
                    return Net()
                if test(configs[:1]):
                    return self.shrink(configs[:1])
                if test(configs[1:]):
                    return self.shrink(configs[1:])
                return self.shrink(configs[::2])
            def evaluate(self, configs, x):
                model = self.shrink(configs)
                with torch.no_grad():
                    return model(x)
        """
    assert eg106(source) == [(19, "model")]
    assert len(followed) < 100, len(followed)


LITE = """\
    import io
    import torch

    class LiteScriptModule:
        def __init__(self, cpp_module) -> None:
            self._c = cpp_module
            super().__init__()

        def __call__(self, *input):
            return self._c.forward(input)

        def forward(self, *input):
            return self._c.forward(input)

    def _load_for_lite_interpreter(f):
        cpp_module = torch._C._load_for_lite_interpreter(f, "cpu")
        return LiteScriptModule(cpp_module)

    def compare(model, input):
        with torch.no_grad():
            script_module = torch.jit.script(model)
            buffer = io.BytesIO(script_module._save_to_buffer_for_lite_interpreter())
            mobile_module = _load_for_lite_interpreter(buffer)
            return mobile_module(input)
    """


def test_a_plain_class_with_a_forward_has_no_mode_to_switch():
    """torch/jit/mobile's LiteScriptModule (used so in torch/testing/_internal/common_quantization.py):
    no base class and no eval()/train(), so ``mobile_module.eval()`` would raise; its ``forward``
    alone does not make it a model in training mode."""
    assert eg106(LITE) == []
    as_module = LITE.replace("class LiteScriptModule:", "class LiteScriptModule(torch.nn.Module):")
    assert eg106(as_module) == [(24, "mobile_module")]
    with_eval = LITE.replace("    def forward(self, *input):", "    def eval(self):\n            return self\n\n"
                                                                "        def forward(self, *input):")
    assert eg106(with_eval) == [(27, "mobile_module")]
