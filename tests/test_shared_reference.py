"""The ONNX check takes the eval-mode check's eval pass as its reference (issue 18) instead of
running the model again, only when inputs and weights are the same, and judges exactly as before."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from evalguard.checks.eval_mode import check as eval_mode_check
from evalguard.checks.onnx import check as onnx_check
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

RULES = frozenset({"EG101", "EG102", "EG103", "EG104", "EG107", "EG401", "EG402", "EG403", "EG404"})


class Counted(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear that counts its eager (not traced) forward passes by batch."""

    def __init__(self, random_in_eval: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.bn, self.fc2 = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4)
        self.random_in_eval = random_in_eval
        self.calls: list[int] = []

    def forward(self, x):
        if not torch.jit.is_tracing():
            self.calls.append(int(x.shape[0]))
        h = F.relu(self.bn(self.fc1(x)))
        if self.random_in_eval:
            h = F.dropout(h, 0.5, training=True)   # randomness that survives eval()
        return self.fc2(h)


def subject_for(model, kind="checkpoint"):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    return AuditSubject(path="m.pt", kind=kind, model=model, inputs_resolver=lambda: ExampleInputs(args=(x,)))


def onnx_after_eval_mode(model, kind="checkpoint", between=None):
    subject = subject_for(model, kind)
    options = AuditOptions(selected=RULES)
    eval_mode_check.run(subject, options)
    if between is not None:
        between(model)
    start = len(model.calls)
    outcome = onnx_check.run(subject, options)
    return subject, outcome, model.calls[start:]


def onnx_alone(model, kind="checkpoint"):
    subject = subject_for(model, kind)
    start = len(model.calls)
    outcome = onnx_check.run(subject, AuditOptions(selected=RULES))
    return subject, outcome, model.calls[start:]


def onnx_facts(outcome):
    [facts] = [f for f in outcome.facts if f.family == "onnx"]
    return facts


def parity(outcome):
    [facts] = [f for f in outcome.facts if f.family == "onnx"]
    return [(r["output"], r["batch"], r["passed"]) for r in facts.parity]


def statuses(outcome):
    return {rule: (run.status, run.reason) for rule, run in outcome.coverage.items()}


def test_clean_model_onnx_reuses_the_eval_pass():
    _, alone, alone_calls = onnx_alone(Counted().eval())
    subject, shared, shared_calls = onnx_after_eval_mode(Counted().eval())
    assert subject.eval_reference is not None
    assert alone_calls == [4, 3]            # its own reference at the example batch, then EG404's batch
    # both came from the eval-mode check: its eval pass, and EG104's batch probe (rows 3, 2, 1)
    assert shared_calls == []
    assert parity(shared) == parity(alone) and all(ok for *_, ok in parity(shared))
    assert statuses(shared) == statuses(alone)
    assert not shared.findings
    assert "batch probe" in onnx_facts(shared).second_batch
    assert "resized to batch 3" in onnx_facts(alone).second_batch


def test_without_eg104_the_second_batch_is_the_onnx_checks_own_pass():
    model = Counted().eval()
    subject = subject_for(model)
    options = AuditOptions(selected=RULES - {"EG104"})
    eval_mode_check.run(subject, options)
    start = len(model.calls)
    outcome = onnx_check.run(subject, options)
    assert model.calls[start:] == [3]
    assert all(ok for *_, ok in parity(outcome)) and not outcome.findings


def test_eg404_and_the_backend_matrix_share_one_pass_at_the_second_batch(monkeypatch):
    """Without a probe to reuse, the ONNX check runs PyTorch at the second batch once, for EG404
    and for the backends alike (the backends' latency timing aside, which calls the model itself)."""
    seen = []
    real = onnx_check._ModelAudit._reference

    def counted(self, tensors=None):
        seen.append(None if tensors is None else int(tensors[0].shape[0]))
        return real(self, tensors)

    monkeypatch.setattr(onnx_check._ModelAudit, "_reference", counted)
    options = AuditOptions(selected=RULES | {"EG406", "EG407"}, backends=("onnxruntime", "torchscript"))
    outcome = onnx_check.run(subject_for(Counted().eval()), options)
    assert seen == [None, 3]
    assert outcome.coverage["EG404"].status == "ran"
    [facts] = [f for f in outcome.facts if f.family == "onnx"]
    assert {(b.backend, b.status) for b in facts.backends} >= {("torchscript", "matches")}
    assert sorted({r["batch"] for r in facts.parity}) == [3, 4]


def test_the_second_batch_from_the_probe_still_finds_a_baked_in_batch_size():
    """EG404 on EG104's probe rows: a batch size the tracer froze into the graph still fails."""

    class Baked(Counted):
        def forward(self, x):
            return super().forward(x).reshape(int(x.shape[0]), -1)   # int(): a constant once traced

    subject, outcome, calls = onnx_after_eval_mode(Baked().eval())
    assert calls == []
    assert [f.rule for f in outcome.findings] == ["EG404"]
    assert "batch probe" in onnx_facts(outcome).second_batch


def test_factory_model_shares_too_and_the_users_model_is_untouched():
    model = Counted().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    subject, outcome, calls = onnx_after_eval_mode(model, kind="factory")
    assert subject.eval_reference is not None and 4 not in calls
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not outcome.findings


def test_served_in_training_mode_shares_the_pass_after_eval():
    subject, outcome, calls = onnx_after_eval_mode(Counted().train())
    assert subject.eval_reference is not None and calls == []
    assert all(ok for *_, ok in parity(outcome)) and not outcome.findings


def test_weights_changed_in_between_mean_a_fresh_reference():
    def edit(model):
        with torch.no_grad():
            model.fc2.bias.add_(1.0)

    subject, outcome, calls = onnx_after_eval_mode(Counted().eval(), between=edit)
    assert subject.eval_reference is not None
    assert calls == [4, 3]                  # the shared pass is stale: the ONNX check ran its own
    assert all(ok for *_, ok in parity(outcome)) and not outcome.findings


def test_other_inputs_mean_a_fresh_reference():
    model = Counted().eval()
    subject = subject_for(model)
    options = AuditOptions(selected=RULES)
    eval_mode_check.run(subject, options)
    subject._inputs = ExampleInputs(args=(torch.randn(4, 8),))
    start = len(model.calls)
    onnx_check.run(subject, options)
    assert model.calls[start:] == [4, 3]


def test_random_eval_model_is_still_judged_on_a_real_second_pass():
    """The determinism check after a mismatch must run the model, never compare the cache with itself."""
    _, alone, _ = onnx_alone(Counted(random_in_eval=True).eval())
    _, shared, calls = onnx_after_eval_mode(Counted(random_in_eval=True).eval())
    assert 4 in calls                       # the real pass of the determinism check
    assert shared.coverage["EG401"].status == "skipped"
    assert shared.coverage["EG401"].reason == alone.coverage["EG401"].reason
    assert "EG401" not in {f.rule for f in shared.findings}


def test_no_sharing_without_the_eval_mode_check():
    model = Counted().eval()
    subject, _, calls = onnx_alone(model)
    assert subject.eval_reference is None and calls == [4, 3]


class FailsOnSecondCall(Counted):
    def forward(self, x):
        if len(self.calls) >= 1 and not torch.jit.is_tracing():
            self.calls.append(int(x.shape[0]))
            raise RuntimeError("stateful model: only one call")
        return super().forward(x)


def test_a_model_that_failed_in_the_eval_mode_check_shares_nothing():
    model = FailsOnSecondCall().eval()
    subject = subject_for(model)
    outcome = eval_mode_check.run(subject, AuditOptions(selected=RULES))
    assert outcome.target_errors and subject.eval_reference is None
