"""EG106 from semantics (issue 27): networks of unseen class, call sites across files, explicit
``train()`` before inference, a trainer's own ``eval()``, and the confidence of each finding."""
import textwrap

import pytest

from evalguard.checks.source.check import run
from evalguard.subject import AuditOptions, AuditSubject

OPTIONS = AuditOptions(selected=frozenset({"EG106"}))


def eg106(source: str, path: str = "serve.py") -> list[tuple[int, str, str]]:
    subject = AuditSubject(path=path, kind="python-source", source_text=textwrap.dedent(source))
    outcome = run(subject, OPTIONS)
    assert not outcome.target_errors, outcome.target_errors      # a syntax error would read as silence
    return [(f.location.line, f.evidence["model"], f.evidence["confidence"]) for f in outcome.findings]


def eg106_in(folder, name: str) -> list[tuple[int, str, str]]:
    subject = AuditSubject(path=str(folder / name), kind="python-source")
    return [(f.location.line, f.evidence["model"], f.evidence["confidence"])
            for f in run(subject, OPTIONS).findings]


def write(folder, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


MEDIUM = {
    "builder-outside-the-project": """\
        import torch
        from mylib import build_model
        model = build_model(cfg)
        with torch.no_grad():
            out = model(x)
        """,
    "registry-entry": """\
        import torch
        import torchvision.models as models
        net = models.__dict__[args.arch](num_classes=10)
        with torch.no_grad():
            for images, _ in val_loader:
                out = net(images)
        """,
    "config-system": """\
        import torch
        from hydra.utils import instantiate
        model = instantiate(cfg.model)
        with torch.no_grad():
            out = model(batch)
        """,
    "module-methods-on-an-unknown-object": """\
        import torch
        def serve(registry, name, batch):
            model = registry.get(name)
            model.load_state_dict(torch.load("w.pt", weights_only=True))
            with torch.no_grad():
                return model(batch)
        """,
    "outside-package": """\
        import torch
        import open_clip
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
        with torch.no_grad():
            features = model.encode_image(preprocess(image))
            logits = model(image)
        """,
    "requires-grad-off-is-not-eval": """\
        import torch
        from mylib import load_model
        model = load_model("ckpt")
        model.requires_grad_(False)
        with torch.no_grad():
            out = model(x)
        """,
}


MEDIUM = {name: textwrap.dedent(text) for name, text in MEDIUM.items()}


@pytest.mark.parametrize("name", sorted(MEDIUM))
def test_a_network_of_unseen_class_is_reported_with_medium_confidence(name):
    found = eg106(MEDIUM[name])
    assert len(found) == 1 and found[0][2] == "medium", found
    model = found[0][1]
    fixed = MEDIUM[name].replace("with torch.no_grad():", f"{model}.eval()\nwith torch.no_grad():")
    if name == "module-methods-on-an-unknown-object":
        fixed = MEDIUM[name].replace("    with torch", "    model.eval()\n    with torch")
    assert eg106(fixed) == []


def test_a_helper_called_from_another_file_is_judged_from_its_callers(tmp_path):
    write(tmp_path, {
        "models.py": """\
            from torch import nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.body = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
                def forward(self, x):
                    return self.body(x)
            """,
        "utils/metrics.py": """\
            import torch
            def evaluate(model, loader):
                with torch.no_grad():
                    return [model(x) for x, _ in loader]
            """,
        "main.py": """\
            from models import Net
            from utils.metrics import evaluate
            model = Net()
            print(evaluate(model, test_loader))
            """,
        "requirements.txt": "torch\n",
    })
    assert eg106_in(tmp_path, "utils/metrics.py") == [(4, "model", "high")]
    main = tmp_path / "main.py"
    main.write_text(main.read_text().replace("model = Net()\n", "model = Net()\nmodel.eval()\n"))
    assert eg106_in(tmp_path, "utils/metrics.py") == []


def test_an_evaluator_receives_its_model_from_a_caller_in_another_file(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/evaluator.py": """\
            import torch
            class Evaluator:
                def __init__(self, model, loader):
                    self.model = model
                    self.loader = loader
                def run(self):
                    with torch.no_grad():
                        return [self.model(x) for x in self.loader]
            """,
        "run.py": """\
            import torchvision
            from pkg.evaluator import Evaluator
            Evaluator(torchvision.models.resnet18(), loader).run()
            """,
    })
    assert eg106_in(tmp_path, "pkg/evaluator.py") == [(8, "self.model", "high")]
    run_py = tmp_path / "run.py"
    run_py.write_text(run_py.read_text().replace("resnet18()", "resnet18().eval()"))
    assert eg106_in(tmp_path, "pkg/evaluator.py") == []


def test_a_parameter_is_taken_for_a_network_only_when_someone_passes_one():
    lone = textwrap.dedent("""\
        import torch
        def evaluate(model, loader):
            with torch.no_grad():
                return [model(x) for x in loader]
        """)
    assert eg106(lone) == []
    called = lone + "def main(model, loader):\n    print(evaluate(model, loader))\n"
    assert eg106(called) == [(4, "model", "medium")]


EXPLICIT_TRAIN = textwrap.dedent("""\
    import torch
    from models import Net
    def predict(loader):
        model = Net()
        model.load_state_dict(torch.load("w.pt", weights_only=True))
        model.train()
        with torch.no_grad():
            return [model(x).argmax(1) for x in loader]
    """)


def test_train_before_inference_that_trains_nothing_is_the_bug():
    # the outputs are collected, but over different batches: one pass each, not MC dropout
    found = eg106(EXPLICIT_TRAIN.replace("return [model(x).argmax(1) for x in loader]",
                                         "preds = []\n        for x in loader:\n"
                                         "            preds.append(model(x).argmax(1))\n        return preds"))
    assert [(line, model) for line, model, _ in found] == [(10, "model")], found


@pytest.mark.parametrize("shape", [
    "return torch.stack([model(x) for _ in range(20)]).mean(0)",          # passes aggregated
    "for x in loader:\n            model(x)",                              # outputs thrown away: BN stats
])
def test_deliberate_training_mode_is_left_alone(shape):
    source = EXPLICIT_TRAIN.replace("return [model(x).argmax(1) for x in loader]", shape)
    assert eg106(source) == []


def test_mc_dropout_said_in_a_comment_is_left_alone():
    source = EXPLICIT_TRAIN.replace("model.train()", "model.train()  # keep dropout on: MC dropout")
    assert eg106(source) == []


def test_a_plain_forward_after_train_is_reported():
    source = EXPLICIT_TRAIN.replace("return [model(x).argmax(1) for x in loader]",
                                    "x = next(iter(loader))\n        return model(x).argmax(1)")
    assert [(line, model) for line, model, _ in eg106(source)] == [(9, "model")]


def test_a_trainers_own_eval_method_is_not_mode_handling():
    source = """\
        import torch
        import torchvision
        class Trainer:
            def __init__(self):
                self.model = torchvision.models.resnet18()
            def eval(self, loader):
                return self.test(loader)
            def test(self, loader):
                self.eval  # a reference, not nn.Module.eval
                with torch.no_grad():
                    return [self.model(x) for x in loader]
            def run(self, loader):
                self.eval(loader)
        """
    # eval() runs the model through test(): both are inference without nn.Module.eval()
    assert eg106(source) == [(7, "self.model", "high"), (11, "self.model", "high")]
    assert eg106(source.replace("self.eval  # a reference", "self.model.eval()  # a reference")) == []


def test_a_module_running_itself_with_a_hand_written_training_branch():
    source = """\
        import torch
        from torch import nn
        import torch.nn.functional as F
        class Scorer(nn.Module):
            def forward(self, x):
                if self.training:
                    x = x + torch.randn_like(x)
                return x
            def predict_proba(self, x):
                with torch.no_grad():
                    return F.softmax(self(x), -1)
        """
    assert eg106(source) == [(11, "self", "high")]


def test_a_module_with_layers_from_elsewhere_running_itself_is_medium():
    source = """\
        import torch
        from torch import nn
        from somewhere import make_body
        class Scorer(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = make_body()
            def forward(self, x):
                return self.body(x)
            def embed(self, x):
                with torch.no_grad():
                    return self.forward(x)
            def predict(self, x):
                with torch.no_grad():
                    return self(x)
        """
    found = eg106(source)
    assert found and {c for _, _, c in found} == {"medium"}, found


def eg105(source: str) -> list[int]:
    subject = AuditSubject(path="attn.py", kind="python-source", source_text=textwrap.dedent(source))
    outcome = run(subject, AuditOptions(selected=frozenset({"EG105"})))
    assert not outcome.target_errors, outcome.target_errors
    return [f.location.line for f in outcome.findings]


ATTENTION = """\
    import torch
    from torch import nn
    from .kernels import pick_attention
    class Attention(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p
            self._attention_call = pick_attention()
        def forward(self, q, k, v):
            return self._attention_call(q, k, v, dropout_p=self.p)
    """


def test_attention_dropout_through_an_attribute_is_reported():
    assert eg105(ATTENTION) == [10]
    assert eg105(ATTENTION.replace("dropout_p=self.p", "dropout_p=self.p if self.training else 0.0")) == []
    assert eg105(ATTENTION.replace("dropout_p=self.p", "dropout_p=0.0")) == []
    assert eg105(ATTENTION.replace("dropout_p=self.p", "dropout_p=self.p, training=self.training")) == []


def test_min_confidence_on_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "serve.py").write_text(textwrap.dedent(MEDIUM["builder-outside-the-project"]))
    (tmp_path / "sure.py").write_text(textwrap.dedent("""\
        import torch
        import torchvision
        model = torchvision.models.resnet18()
        with torch.no_grad():
            out = model(x)
        """))

    def confidences(*extra):
        done = subprocess.run([sys.executable, "-m", "evalguard", "check", str(tmp_path), "--select", "EG106",
                               "--format", "json", "--exit-zero", *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return sorted(f["evidence"]["confidence"] for f in json.loads(done.stdout)["findings"])

    assert confidences() == ["high", "medium"]
    assert confidences("--min-confidence", "high") == ["high"]


def notebook(cells: list[tuple[str, str]]) -> str:
    import json

    return json.dumps({"cells": [{"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True),
                                  **({"outputs": [], "execution_count": None} if kind == "code" else {})}
                                 for kind, text in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
                      indent=1)


NOTEBOOK = [
    ("markdown", "# Inference\n"),
    ("code", "%matplotlib inline\nimport torch\n!pip install timm\nimport timm\n"),
    ("code", "%%bash\nls -l\n"),
    ("code", "model = timm.create_model('resnet50', pretrained=True)\nmodel?\n"),
    ("code", "with torch.no_grad():\n    out = model(torch.randn(1, 3, 224, 224))\n"),
]


def test_notebooks_are_checked_cell_by_cell_when_walking_a_folder(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "infer.ipynb").write_text(notebook(NOTEBOOK))
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", str(tmp_path), "--select", "EG106",
                           "--format", "json", "--exit-zero"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    findings = json.loads(done.stdout)["findings"]
    assert [(f["rule"], f["evidence"]["cell"], f["evidence"]["cell_line"]) for f in findings] == [("EG106", 5, 2)]
    assert "(cell 5:line 2)" in findings[0]["message"]
    fixed = [*NOTEBOOK[:4], ("code", "model.eval()\n"), NOTEBOOK[4]]
    (tmp_path / "infer.ipynb").write_text(notebook(fixed))
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", str(tmp_path), "--select", "EG106",
                           "--format", "json"], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["findings"] == [], done.stdout + done.stderr


def test_a_file_named_ipynb_that_is_no_notebook_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    (tmp_path / "broken.ipynb").write_text("not json")
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", str(tmp_path / "broken.ipynb")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not a Jupyter notebook" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


HELPER = """\
    import torch
    import torchvision


    class Runner:
        def __init__(self):
            self.model = torchvision.models.resnet18()
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

        def _forward_pass(self, batch):
            return self.model(batch[0])

        def train_epoch(self, loader):
            self.model.train()
            for batch in loader:
                self._forward_pass(batch).sum().backward()
                self.optimizer.step()

        def validate(self, loader):
            with torch.no_grad():
                return [self._forward_pass(batch) for batch in loader]
    """


def test_a_helper_shared_with_training_runs_the_model_in_validation():
    assert eg106(HELPER) == [(21, "self.model", "high")]
    fixed = HELPER.replace("        with torch.no_grad():", "        self.model.eval()\n        with torch.no_grad():")
    assert eg106(fixed) == []


def test_fix_writes_the_notebook_back_unchanged_outside_the_edit(tmp_path):
    import json
    import subprocess
    import sys

    raw = notebook(NOTEBOOK)
    path = tmp_path / "infer.ipynb"
    path.write_text(raw)
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", str(path), "--select", "EG106", "--fix",
                           "--unsafe-fixes", "--format", "json", "--exit-zero"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["findings"] == []
    after = path.read_text()
    cells = json.loads(after)["cells"]
    assert "".join(cells[4]["source"]) == "model.eval()\nwith torch.no_grad():\n    out = model(torch.randn(1, 3, 224, 224))\n"
    assert cells[:4] == json.loads(raw)["cells"][:4]                 # magics and shell lines kept
    expected = json.loads(raw)
    expected["cells"][4]["source"] = cells[4]["source"]
    assert after == json.dumps(expected, indent=1)                    # byte for byte elsewhere


# -- round 2: library entry points, inherited inference context, loaded trained weights -----------

def test_a_library_predict_function_is_its_own_inference_context():
    source = textwrap.dedent("""\
        import torch
        def predict(model, x):
            with torch.no_grad():
                return model(x)
        """)
    assert eg106(source) == [(4, "model", "medium")]
    assert eg106(source.replace("    with torch.no_grad():", "    model.eval()\n    with torch.no_grad():")) == []
    # a helper that is not offered for prediction says nothing about its callers' intent
    assert eg106(source.replace("def predict(", "def apply(")) == []


PREDICTOR = textwrap.dedent("""\
    import torch
    class Predictor:
        def __init__(self, model, reader):
            self._model = model
            self._reader = reader

        def predict_instance(self, text):
            with torch.no_grad():
                return self._run(self._reader(text))

        def _run(self, tokens):
            return self._model(tokens)
    """)


def test_a_predictor_holding_a_model_it_was_handed_is_medium():
    assert eg106(PREDICTOR) == [(9, "self._model", "medium")]
    fixed = PREDICTOR.replace("        self._model = model\n", "        model.eval()\n        self._model = model\n")
    assert eg106(fixed) == []
    # a tokenizer or reader it holds is no network
    assert eg106(PREDICTOR.replace("self._model", "self._tokenize")) == []


def test_a_subclass_that_evaluates_the_held_model_handles_the_mode(tmp_path):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/base.py": """\
            import torch
            class Strategy:
                def __init__(self, net):
                    self.model = net
                def get_embedding(self, xs):
                    with torch.no_grad():
                        return [self.model(x) for x in xs]
            """,
        "pkg/smi.py": """\
            from pkg.base import Strategy
            class SMI(Strategy):
                def select(self, xs):
                    self.model.eval()
                    return self.get_embedding(xs)
            """,
    })
    assert eg106_in(tmp_path, "pkg/base.py") == []
    (tmp_path / "pkg" / "smi.py").write_text((tmp_path / "pkg" / "smi.py").read_text().replace(
        "        self.model.eval()\n", ""))
    assert eg106_in(tmp_path, "pkg/base.py") == [(7, "self.model", "medium")]


LOADED = textwrap.dedent("""\
    import torch
    from torch import nn
    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Dropout(0.5))
        def forward(self, x):
            return self.body(x)
    def main(loader):
        cnn = CNN()
        cnn.load_state_dict(torch.load("cnn.pt", weights_only=True))
        for images, _ in loader:
            print(cnn(images).argmax(1))
    """)


def test_trained_weights_loaded_and_run_with_no_training_is_inference():
    assert eg106(LOADED) == [(13, "cnn", "high")]
    assert eg106(LOADED.replace("weights_only=True))", "weights_only=True))\n    cnn.eval()")) == []
    # fine-tuning from a checkpoint is training, not inference
    trains = LOADED.replace("print(cnn(images).argmax(1))", "cnn(images).sum().backward()")
    assert eg106(trains) == []


def test_inference_reaches_an_engine_through_an_instance_and_a_worker_function():
    source = textwrap.dedent("""\
        import torch
        class Engine:
            def __init__(self, model):
                self.model = model
            def run(self, batch):
                return self.model(batch)
        class Service:
            def __init__(self, model):
                self.engine = Engine(model)
            def predict(self, batch):
                with torch.no_grad():
                    return self.engine.run(batch)
        def _worker(net, batch):
            return net(batch)
        def predict_all(net, batches):
            return [_worker(net, b) for b in batches]
        """)
    assert sorted(eg106(source)) == [(6, "self.model", "medium"), (14, "net", "medium")]
    # the same engine run only by training code is not inference
    training = source.replace("def predict(self, batch):\n        with torch.no_grad():\n            return self.engine.run(batch)",
                              "def fit(self, batch):\n        self.engine.run(batch).sum().backward()")
    assert training != source
    assert (6, "self.model", "medium") not in eg106(training)


def test_an_assert_on_the_mode_is_mode_handling():
    source = textwrap.dedent("""\
        import torch
        def predict(model, x):
            with torch.no_grad():
                return model(x)
        """)
    assert eg106(source) == [(4, "model", "medium")]
    assert eg106(source.replace("    with torch.no_grad():", "    assert not model.training\n    with torch.no_grad():")) == []


def test_a_hook_wrapper_reads_the_network_it_holds():
    source = textwrap.dedent("""\
        import torch
        class FeatureExtractor:
            def __init__(self, model, layer):
                self.model = model
                self.features = None
                self.model.get_submodule(layer).register_forward_hook(self._keep)
            def _keep(self, module, inputs, output):
                self.features = output
            def __call__(self, x):
                with torch.no_grad():
                    self.model(x)
                return self.features
        """)
    assert eg106(source) == [(11, "self.model", "medium")]
    assert eg106(source.replace("        self.model = model\n", "        self.model = model.eval()\n")) == []


def test_a_registry_builder_returns_a_network():
    source = textwrap.dedent("""\
        import torch
        from mmdet.registry import MODELS
        detector = MODELS.build(cfg.model)
        with torch.no_grad():
            out = detector(images)
        """)
    assert eg106(source) == [(5, "detector", "medium")]
    assert eg106(source.replace("out = detector(images)", "detector.eval()\n    out = detector(images)")) == []


LIT = textwrap.dedent("""\
    import torch
    import lightning as L
    class Classifier(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model
        def training_step(self, batch, idx):
            return self.model(batch[0]).sum()
        def predict_proba(self, x):
            with torch.no_grad():
                return self.model(x).softmax(-1)
    """)


def test_a_lightning_modules_own_predict_running_its_wrapped_model():
    assert eg106(LIT) == [(11, "self", "medium")]
    assert eg106(LIT.replace("        with torch.no_grad():", "        self.eval()\n        with torch.no_grad():")) == []
    assert eg106(LIT.replace("        with torch.no_grad():", "        self.model.eval()\n        with torch.no_grad():")) == []


def test_an_eval_step_of_a_plain_trainer_is_evaluation_but_lightnings_is_not():
    source = textwrap.dedent("""\
        import torch
        import torchvision
        class Trainer:
            def __init__(self):
                self.model = torchvision.models.resnet18()
            def eval_step(self, batch):
                with torch.no_grad():
                    return self.model(batch)
        """)
    assert eg106(source) == [(8, "self.model", "high")]
    assert eg106(source.replace("class Trainer:", "class Trainer(torch.nn.Module):")) == []


def test_a_pretrained_network_run_by_a_script_that_never_trains():
    source = textwrap.dedent("""\
        import torchvision
        from PIL import Image
        net = torchvision.models.resnet50(weights="IMAGENET1K_V2")
        for path in paths:
            print(net(load(path)).argmax(1))
        """)
    assert eg106(source) == [(5, "net", "high")]
    assert eg106(source.replace('weights="IMAGENET1K_V2")', 'weights="IMAGENET1K_V2").eval()')) == []
    # fine-tuning the same network is training
    assert eg106(source.replace("print(net(load(path)).argmax(1))", "net(load(path)).sum().backward()")) == []


NOTEBOOK_HELPER = textwrap.dedent("""\
    import torch.nn as nn
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.2))
    def show(x):
        print(net(x))
    show(batch)
    """)


def test_a_notebook_helper_running_the_global_network():
    assert eg106(NOTEBOOK_HELPER) == [(4, "net", "high")]
    assert eg106(NOTEBOOK_HELPER.replace("nn.Dropout(0.2))", "nn.Dropout(0.2)).eval()")) == []
    trains = NOTEBOOK_HELPER.replace("show(batch)", "net(batch).sum().backward()\nopt.step()")
    assert eg106(trains) == []


def test_prediction_named_functions_and_framework_step_hooks():
    source = textwrap.dedent("""\
        import torch
        def make_prediction(model, x):
            with torch.no_grad():
                return model(x)
        """)
    assert eg106(source) == [(4, "model", "medium")]
    # a trainer's prediction_step is called by its loop, which switches the mode
    assert eg106(source.replace("make_prediction", "prediction_step")) == []


ADAPTER = """\
    import abc
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.fc(x))


    class Adapter(abc.ABC):
        def __init__(self, net):
            self.net = net

        def forward(self, x):
            return self.net(x)


    class Scaler:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return x * self.k


    def predict(x):
        adapter = Adapter(Net())
        with torch.no_grad():
            return adapter.forward(x)


    def predict_scaled(x):
        scale = Scaler(2)
        with torch.no_grad():
            return scale(x)
    """


def test_a_plain_adapter_is_no_network_but_the_network_it_holds_is(tmp_path):
    """An abc.ABC adapter with its own forward() has no eval(): the finding names the network it holds
    (adapter.net, which has eval()); a plain class holding no network stays silent."""
    assert eg106(ADAPTER) == [(35, "adapter.net", "high")]
    fixed = ADAPTER.replace("            return adapter.forward(x)",
                            "            adapter.net.eval()\n            return adapter.forward(x)")
    assert eg106(fixed) == []
    evaluated_first = ADAPTER.replace("        adapter = Adapter(Net())",
                                      "        net = Net().eval()\n        adapter = Adapter(net)")
    assert eg106(evaluated_first) == []


BUILDERS = """\
    import torch
    import hydra
    import open_clip
    from torchvision import models

    MODELS = {}


    def predict_from_config(cfg, x):
        model = hydra.utils.instantiate(cfg.model)
        with torch.no_grad():
            return model(x)


    def embed_images(x):
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
        with torch.no_grad():
            return model.encode_image(preprocess(x))


    def predict_registered(cfg, x):
        model_cls = MODELS[cfg.name]
        model = model_cls(**cfg.kwargs)
        with torch.no_grad():
            return model(x)


    def predict_by_name(name, x):
        model = getattr(models, name)(weights="DEFAULT")
        with torch.no_grad():
            return model(x)
    """


def test_networks_from_config_systems_registries_and_model_packages():
    """hydra's instantiate, open_clip's builder (first element of its tuple), a class taken from a
    registry dict and called with the config, a torchvision model found by name: all networks in
    training mode. The registry's class itself is built, not run: the finding is on the model call."""
    assert eg106(BUILDERS) == [(12, "model", "medium"), (18, "model", "medium"), (25, "model", "medium"),
                               (31, "model", "medium")]
    fixed = BUILDERS.replace("        with torch.no_grad():", "        model.eval()\n        with torch.no_grad():")
    assert eg106(fixed) == []


WRAPPED = """\
    import torch
    from torch import nn
    from accelerate import Accelerator


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.fc(x))


    def predict_compiled(x):
        net = Net()
        fast = torch.compile(net)
        with torch.no_grad():
            return fast(x)


    def predict_prepared(x, loader):
        net = Net()
        net, loader = Accelerator().prepare(net, loader)
        with torch.no_grad():
            return net(x)


    def predict_parallel(x):
        net = Net()
        parallel = nn.DataParallel(net)
        with torch.no_grad():
            return net(x)
    """


def test_a_wrapped_network_is_the_same_network():
    """torch.compile, accelerator.prepare, nn.DataParallel return the network they wrap: eval() on the
    wrapper or on the wrapped one counts for both; a missing eval on both is a finding."""
    assert eg106(WRAPPED) == [(20, "fast", "high"), (27, "net", "high"), (34, "net", "high")]
    on_wrapper = WRAPPED.replace("        parallel = nn.DataParallel(net)\n",
                                    "        parallel = nn.DataParallel(net)\n        parallel.eval()\n")
    assert eg106(on_wrapper) == [(20, "fast", "high"), (27, "net", "high")]
    on_wrapped = WRAPPED.replace("        fast = torch.compile(net)\n",
                                 "        fast = torch.compile(net)\n        net.eval()\n")
    assert eg106(on_wrapped) == [(28, "net", "high"), (35, "net", "high")]


GLOBAL_CLIP = """\
    import sys
    import torch
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")


    def image_vectors(images):
        return model.encode_image(torch.stack([preprocess(i) for i in images]))


    def text_vectors(tokens):
        return model.forward(tokens)


    if __name__ == "__main__":
        print(image_vectors(sys.argv[1:]))
    """


def test_a_script_global_network_run_through_its_methods():
    """A script that never trains keeps its network at module level; its functions run it through
    encode_image()/forward(): inference, whatever the functions are called. A training function in
    the file makes them ambiguous again (silent)."""
    assert eg106(GLOBAL_CLIP) == [(9, "model", "medium"), (13, "model", "medium")]
    assert eg106(GLOBAL_CLIP.replace('"ViT-B-32")\n', '"ViT-B-32")\n    model.eval()\n')) == []
    trains = GLOBAL_CLIP.replace("    if __name__", "    def fit(loss):\n        loss.backward()\n\n\n    if __name__")
    assert eg106(trains) == []


def test_a_runner_derived_from_a_plain_interface_is_no_network():
    """A class whose only base is a plain abstract interface of the project is plain too: the advice
    names the network it holds (runner.model), never runner.eval(), which does not exist."""
    source = ADAPTER.replace("class Adapter(abc.ABC):", "class Base(abc.ABC):\n        pass\n\n\n    class Adapter(Base):")
    found = eg106(source)
    assert (39, "adapter.net", "high") in found
    assert all(model != "adapter" for _, model, _ in found)


def test_classes_looked_up_in_a_registry_then_called():
    """``arch = getattr(models, name)`` / ``builder = MODEL_REGISTRY.get(name)`` then ``arch(...)``:
    the call builds a network (no finding on it); running the result without eval() is the finding."""
    source = """\
        import torch
        import torchvision.models as models
        from mylib import MODEL_REGISTRY


        def predict_by_name(name, x):
            arch = getattr(models, name)
            model = arch(weights="DEFAULT")
            with torch.no_grad():
                return model(x)


        def predict_registered(cfg, x):
            builder = MODEL_REGISTRY.get(cfg.name)
            model = builder(**cfg.kwargs)
            with torch.no_grad():
                return model(x)
        """
    assert eg106(source) == [(10, "model", "medium"), (17, "model", "medium")]
    fixed = source.replace("    with torch.no_grad():", "    model.eval()\n            with torch.no_grad():")
    assert eg106(fixed) == []


def test_a_plain_wrapper_that_evaluates_what_it_holds_is_silent():
    """The wrapper moves the network to a device and puts it in eval mode itself (in __init__ or in a
    method): nothing to report; moving it without eval still leaves it in training mode."""
    moved = ADAPTER.replace("            self.net = net\n", "            self.net = net.to('cpu')\n")
    assert eg106(moved) == [(35, "adapter.net", "high")]
    assert eg106(ADAPTER.replace("            self.net = net\n", "            self.net = net.to('cpu').eval()\n")) == []
    assert eg106(ADAPTER.replace("            self.net = net\n",
                                 "            self.net = net\n            self.net.eval()\n")) == []


def test_a_held_network_is_reported_once():
    """A plain runner's own ``self.net(x)`` and a service calling the runner run the same network
    built in one place: one finding, naming an object that has eval()."""
    source = """\
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop = nn.Dropout(0.5)

            def forward(self, x):
                return self.drop(x)


        class Runner:
            def __init__(self, net):
                self.net = net

            def __call__(self, x):
                return self.net(x)


        class Service:
            def __init__(self):
                self.runner = Runner(Net())

            def predict(self, x):
                with torch.no_grad():
                    return self.runner(x)
        """
    found = eg106(source)
    assert len(found) == 1 and found[0][1] in ("self.net", "self.runner.net"), found
    assert eg106(source.replace("Runner(Net())", "Runner(Net().eval())")) == []
