"""Models the audit loads from a file are run in place (no deep copy, to save memory on large
checkpoints): every check must put back what it changed, so later checks see the model as saved."""
import textwrap

import torch

from evalguard.catalogue import load_catalogue
from evalguard.engine import audit_subject
from evalguard.loading import load_target
from evalguard.loading.factory import build_model
from evalguard.subject import AuditOptions

FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3))
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.body(x))

    def build():
        torch.manual_seed(0)
        return Net()
""")


def state(model):
    return ({name: m.training for name, m in model.named_modules()},
            {k: v.clone() for k, v in model.state_dict().items()})


def test_checkpoint_model_is_run_in_place_and_restored(tmp_path):
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    spec = f"{factory}:build"
    model = build_model(spec)
    with torch.no_grad():  # real BatchNorm statistics
        model(torch.randn(16, 8))
    checkpoint = tmp_path / "net.pt"
    torch.save(model.state_dict(), checkpoint)

    options = AuditOptions(selected=frozenset(load_catalogue()), model_factory=spec, input_shapes=((4, 8),))
    subject = load_target(str(checkpoint), options)
    assert subject.owns_model
    subject.model.train()  # served in training mode: the passes update BatchNorm statistics
    modes_before, tensors_before = state(subject.model)

    result, findings = audit_subject(subject, options)

    assert result.status == "audited"
    assert {"EG101", "EG102"} <= {f.rule for f in findings}
    assert result.facts["eval_mode"].paired.copy.startswith("in place")
    modes_after, tensors_after = state(subject.model)
    assert modes_after == modes_before
    assert all(torch.equal(tensors_before[k], tensors_after[k]) for k in tensors_before)
    assert [row["passed"] for row in result.facts["onnx"].parity] == [True, True]
