"""Paired forward passes (EG101, EG102, EG103, EG104, EG107) on small models of our own.

Each rule has a bad model that raises exactly that rule (plus the rules that necessarily come
with it) and a good one that raises nothing; the audit must leave the user's model untouched.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evalguard.checks.eval_mode import check as eval_mode
from evalguard.checks.eval_mode.mode_table import ModeRow, capped_table, is_allowed
from evalguard.errors import TargetError
from evalguard.facts import ModeFacts
from evalguard.findings import Severity
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

ALL = frozenset({"EG101", "EG102", "EG103", "EG104", "EG107"})


class Audited:
    """What the eval-mode check returned, read the way the tests need it."""

    def __init__(self, outcome):
        self.outcome = outcome
        [self.facts] = [f for f in outcome.facts if isinstance(f, ModeFacts)]

    @property
    def table(self) -> list[dict]:
        return [asdict(row) for row in self.facts.rows]

    @property
    def paired(self):
        return self.facts.paired

    def skipped(self, rule: str) -> str | None:
        """The reason ``rule`` did not run, or None when it ran."""
        run = self.outcome.coverage[rule]
        return run.reason if run.status == "skipped" else None


def _check(subject, options):
    outcome = eval_mode.run(subject, options)
    if outcome.target_errors:      # the engine turns these into a target error
        raise TargetError(outcome.target_errors[0])
    return list(outcome.findings), Audited(outcome)


def audit(model, *args, select=ALL, allow=(), tolerances=None, **kwargs):
    subject = AuditSubject(path="m", kind="factory", model=model,
                           inputs_resolver=lambda: ExampleInputs(args=args, kwargs=kwargs, source="test"))
    options = AuditOptions(selected=frozenset(select), allow_stochastic=tuple(allow),
                           tolerances=tolerances or {})
    return _check(subject, options)


def rules(findings):
    return sorted(f.rule for f in findings)


def by_rule(findings, rule):
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


def x(batch=4, features=8):
    return torch.randn(batch, features, generator=torch.Generator().manual_seed(1))


def mlp_with_dropout():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))


def trained_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model(torch.randn(32, 8))
    return model


class Noise(nn.Module):
    """Adds fresh noise on every call, whatever the mode."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x + self.scale * torch.rand_like(x)


class FunctionalDropout(nn.Module):
    def __init__(self, follow_mode: bool):
        super().__init__()
        self.body, self.head = nn.Linear(8, 16), nn.Linear(16, 4)
        self.follow_mode = follow_mode

    def forward(self, x):
        hidden = self.body(x)
        if self.follow_mode:
            hidden = F.dropout(hidden, 0.3, training=self.training)
        else:
            hidden = F.dropout(hidden, 0.3)
        return self.head(hidden)


class Attention(nn.Module):
    def __init__(self, dropout_p: float, follow_mode: bool):
        super().__init__()
        self.qkv = nn.Linear(8, 3 * 2 * 8 * 4)  # 2 heads, 8 tokens, head size 4
        self.dropout_p, self.follow_mode = dropout_p, follow_mode

    def forward(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], 2, 8, 3, 4).unbind(3)
        p = self.dropout_p if (self.training or not self.follow_mode) else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p).flatten(1)


class ReadsTraining(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        return self._maybe_scale(self.linear(x))

    def _maybe_scale(self, x):
        return x * 2 if self.training else x


# --- EG101 -------------------------------------------------------------------------------------

def test_eg101_bad_batchnorm_in_training_mode():
    findings, subject = audit(trained_bn(), x())
    assert rules(findings) == ["EG101"]
    finding = findings[0]
    assert finding.severity is None  # the engine applies the catalogue severity
    assert [m["module"] for m in finding.evidence["modules"]] == ["1"]
    assert finding.evidence["modules"][0]["type"] == "BatchNorm1d"
    assert finding.evidence["root_training"] is True
    table = {row["module"]: row for row in subject.table}
    assert table["1"]["mode"] == "train" and table["1"]["behaviour_differs"]
    assert table["0"]["mode"] == "train" and not table["0"]["behaviour_differs"]
    assert subject.facts.behaviour_differs_in_training == 1


def test_eg101_good_after_eval():
    findings, subject = audit(trained_bn().eval(), x())
    assert findings == []
    assert {row["mode"] for row in subject.table} == {"eval"}


def test_eg101_ignores_modules_that_behave_the_same_in_both_modes():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.0), nn.BatchNorm1d(8, track_running_stats=False),
                          nn.LayerNorm(8))
    findings, _ = audit(model, x(), select={"EG101"})
    assert findings == []


def test_eg101_lists_every_behaviour_changing_module_and_custom_training_reads():
    model = nn.Sequential(ReadsTraining(), nn.LSTM(8, 8, num_layers=2, dropout=0.2),
                          nn.MultiheadAttention(8, 2, dropout=0.1), nn.RReLU(),
                          nn.InstanceNorm1d(8, track_running_stats=True))
    findings, _ = audit(model, x(), select={"EG101"})
    listed = {m["module"]: m for m in by_rule(findings, "EG101").evidence["modules"]}
    assert set(listed) == {"0", "1", "2", "3", "4"}
    assert "self.training" in listed["0"]["reason"]  # read in a helper that forward calls


def test_eg101_names_only_the_submodule_left_in_training_mode():
    model = mlp_with_dropout().eval()
    model[2].train()
    findings, subject = audit(model, x(), select={"EG101"})
    assert [m["module"] for m in by_rule(findings, "EG101").evidence["modules"]] == ["2"]
    assert subject.facts.root_training is False


def test_eg101_needs_no_forward_pass():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            raise RuntimeError("never called")

    findings, subject = audit(Broken(), x(), select={"EG101"})
    assert rules(findings) == ["EG101"]
    assert subject.paired is None


def test_mode_table_is_capped_but_keeps_informative_rows():
    model = nn.Sequential(*[nn.Identity() for _ in range(300)], nn.Dropout(0.1))
    findings, subject = audit(model, x(), select={"EG101"})
    table = subject.table
    assert len(table) < 50
    assert {row["module"] for row in table} == {"", "300"}
    assert subject.facts.omitted == 302 - len(table)  # 300 Identity, Dropout, root


def test_capped_table_keeps_mode_boundaries():
    rows = [ModeRow("", "Net", "eval", False)] + [ModeRow(f"b{i}", "Linear", "eval", False) for i in range(10)]
    rows.append(ModeRow("b3.sub", "Linear", "train", False))
    kept, omitted = capped_table(rows, cap=5)
    assert [r["module"] for r in kept] == ["", "b3.sub"] and omitted == 10


def test_allow_glob_covers_submodules_of_the_matched_module():
    assert is_allowed("head.mc_dropout", ["head.mc_*"])
    assert is_allowed("head.mc.inner", ["head.mc"])
    assert not is_allowed("body.dropout", ["head.*"])
    assert not is_allowed("", ["*"])


# --- EG102 -------------------------------------------------------------------------------------

def test_eg102_bad_dropout_in_training_mode_names_the_dropout():
    findings, _ = audit(mlp_with_dropout(), x())
    assert rules(findings) == ["EG101", "EG102"]
    finding = by_rule(findings, "EG102")
    assert finding.location.module == "2"
    assert finding.evidence["module_type"] == "Dropout"
    assert finding.evidence["output"] == "output"
    assert finding.evidence["max_abs_diff"] > 1e-3
    assert "training" in finding.message and "2 (Dropout)" in finding.message


def test_eg102_good_in_eval_mode():
    findings, subject = audit(mlp_with_dropout().eval(), x())
    assert findings == []
    assert subject.paired.passes == 3  # served == eval: pass, same-input pass, batch probe


def test_eg102_names_the_leaf_of_a_structured_output():
    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor
        hidden: torch.Tensor

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.drop, self.head = nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2)

        def forward(self, x):
            hidden = self.body(x)
            return {"out": Out(logits=self.head(self.drop(hidden)), hidden=hidden), "meta": "text"}

    findings, _ = audit(Net(), x(), select={"EG102"})
    assert by_rule(findings, "EG102").evidence["output"] == "output.out.logits"
    assert by_rule(findings, "EG102").location.module == "drop"


def test_eg102_finds_every_source_not_only_the_first():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8), Noise(), nn.Linear(8, 4))
    findings, _ = audit(model, x(), select={"EG102"})
    sources = by_rule(findings, "EG102").evidence["sources"]
    assert [s["module"] for s in sources] == ["1", "3"]
    assert sources[1]["random_calls"] == ["torch.rand_like"]


def test_served_eval_randomness_is_reported_once_as_eg103():
    model = nn.Sequential(nn.Linear(8, 8), Noise()).eval()
    findings, subject = audit(model, x(), select={"EG102", "EG103"})
    assert rules(findings) == ["EG103"]
    assert any("reported once" in note for note in subject.paired.notes)
    findings, _ = audit(model, x(), select={"EG102"})
    assert rules(findings) == ["EG102"]


def test_tolerances_come_from_options():
    model = nn.Sequential(nn.Linear(8, 8), Noise(scale=1e-4)).eval()
    findings, _ = audit(model, x(), select={"EG103"})
    assert rules(findings) == ["EG103"]
    findings, _ = audit(model, x(), select={"EG103"}, tolerances={"atol": 1e-3})
    assert findings == []
    findings, _ = audit(model, x(), select={"EG103"}, tolerances={"outputs": {"output": {"atol": 1e-3}}})
    assert findings == []


# --- EG103 -------------------------------------------------------------------------------------

def test_eg103_bad_functional_dropout_ignores_eval():
    findings, _ = audit(FunctionalDropout(follow_mode=False).eval(), x())
    assert rules(findings) == ["EG103"]
    finding = findings[0]
    assert finding.location.module is None  # the top-level forward calls F.dropout itself
    assert finding.evidence["module_type"] == "FunctionalDropout"
    assert "torch.nn.functional.dropout(p=0.3, training=True)" in finding.message


def test_eg103_good_functional_dropout_follows_the_mode():
    findings, _ = audit(FunctionalDropout(follow_mode=True).eval(), x())
    assert findings == []


def test_eg103_bad_sdpa_dropout_passed_unconditionally():
    model = nn.Sequential(nn.Linear(8, 8), Attention(0.1, follow_mode=False)).eval()
    findings, _ = audit(model, x())
    assert rules(findings) == ["EG103"]
    assert findings[0].location.module == "1"
    assert findings[0].evidence["sources"][0]["random_calls"] == [
        "torch.nn.functional.scaled_dot_product_attention(dropout_p=0.1)"]


def test_eg103_good_sdpa_dropout_off_in_eval():
    model = nn.Sequential(nn.Linear(8, 8), Attention(0.1, follow_mode=True)).eval()
    assert audit(model, x())[0] == []


def test_eg103_names_the_module_calling_torch_rand():
    model = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), Noise()), nn.Linear(8, 4)).eval()
    findings, _ = audit(model, x())
    assert rules(findings) == ["EG103"]
    assert findings[0].location.module == "1.1"


def test_eg103_on_a_train_mode_model_is_reported_beside_eg102():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), Noise())
    findings, _ = audit(model, x())
    assert rules(findings) == ["EG101", "EG102", "EG103"]
    assert by_rule(findings, "EG103").location.module == "2"


def test_allowed_stochastic_module_is_info():
    class MC(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.mc_dropout = nn.Linear(8, 8), Noise()

        def forward(self, x):
            return self.mc_dropout(self.body(x))

    findings, _ = audit(MC().eval(), x(), allow=["mc_*"])
    finding = by_rule(findings, "EG103")
    assert finding.severity == Severity.INFO and "allowed" in finding.message
    findings, _ = audit(MC().eval(), x())
    assert by_rule(findings, "EG103").severity is None


def test_mc_dropout_left_in_training_is_info_for_eg101_and_eg102_when_allowed():
    model = mlp_with_dropout().eval()
    model[2].train()
    findings, _ = audit(model, x(), allow=["2"])
    assert rules(findings) == ["EG101", "EG102"]
    assert {f.severity for f in findings} == {Severity.INFO}


def test_allow_list_does_not_cover_other_sources():
    model = nn.Sequential(nn.Linear(8, 8), Noise(), nn.Linear(8, 8), Noise()).eval()
    findings, _ = audit(model, x(), allow=["1"])
    finding = by_rule(findings, "EG103")
    assert finding.severity is None
    assert [s["module"] for s in finding.evidence["sources"]] == ["1", "3"]


# --- EG104 -------------------------------------------------------------------------------------

def bn_without_stats(conv=False):
    torch.manual_seed(0)
    if conv:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16, track_running_stats=False), nn.ReLU(),
                         nn.Linear(16, 4)).eval()


@pytest.mark.parametrize("batch", [4, 3, 2])
def test_eg104_bad_batchnorm_without_running_stats(batch):
    findings, subject = audit(bn_without_stats(), x(batch))
    assert rules(findings) == ["EG104"]
    finding = findings[0]
    assert finding.location.module == "1"
    assert finding.evidence["module_type"] == "BatchNorm1d"
    assert finding.evidence["batch"] == batch
    # batch 2: BatchNorm1d refuses a batch of one, so sample 1 runs beside a companion
    assert finding.evidence["companions"] == (1 if batch == 2 else 0)


def test_eg104_batch_of_one_gets_a_companion():
    findings, _ = audit(bn_without_stats(conv=True), torch.randn(1, 3, 8, 8))
    assert rules(findings) == ["EG104"]
    assert findings[0].evidence["companions"] == 1


def test_eg104_good_layernorm():
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4)).eval()
    findings, subject = audit(model, x())
    assert findings == []
    assert subject.paired.batch_probe == {"batch": 4, "rows": [3, 2, 1], "companions": 0}


def test_eg104_names_a_custom_module_normalising_over_the_batch():
    class Centre(nn.Module):
        def forward(self, x):
            return x - x.mean(0, keepdim=True)

    model = nn.Sequential(nn.Linear(8, 8), Centre(), nn.Linear(8, 4)).eval()
    findings, _ = audit(model, x())
    assert rules(findings) == ["EG104"]
    assert findings[0].location.module == "1"


def test_eg104_does_not_fire_on_randomness():
    model = nn.Sequential(nn.Linear(8, 8), Noise()).eval()
    findings, subject = audit(model, x())
    assert rules(findings) == ["EG103"]
    assert subject.skipped("EG104")


def test_eg104_skips_inputs_without_a_common_batch_dimension():
    class Two(nn.Module):
        def forward(self, a, b):
            return a.sum(1) + b.mean()

    findings, subject = audit(Two().eval(), x(4), torch.randn(3, 2))
    assert findings == []
    assert "different first dimensions" in subject.skipped("EG104")


def test_eg104_skips_sequence_first_models():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 8)

        def forward(self, x):
            return self.rnn(x)[0]

    findings, subject = audit(Seq().eval(), torch.randn(5, 2, 8))
    assert findings == []
    assert "sequence-first" in subject.skipped("EG104")


def test_eg104_keeps_integer_inputs_valid():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.position = nn.Embedding(10, 8), nn.Embedding(6, 8)
            self.norm = nn.BatchNorm1d(8, track_running_stats=False)  # over (batch, positions)

        def forward(self, ids):
            assert 0 <= int(ids.min()) and int(ids.max()) < 10, "token id out of range"
            hidden = self.embed(ids) + self.position(torch.arange(ids.shape[1]))
            return self.norm(hidden.transpose(1, 2))

    ids = torch.randint(0, 10, (1, 6), generator=torch.Generator().manual_seed(0))
    findings, _ = audit(Tokens().eval(), ids, select={"EG104"})
    assert rules(findings) == ["EG104"]


# --- EG107 -------------------------------------------------------------------------------------

class GradForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(8, 8), nn.Linear(8, 4)

    @torch.enable_grad()
    def forward(self, x):
        return self.head(self.body(x))


def test_eg107_bad_forward_enables_grad():
    findings, _ = audit(GradForward().eval(), x())
    assert rules(findings) == ["EG107"]
    assert findings[0].location.module is None
    assert findings[0].evidence["module_type"] == "GradForward"
    assert "inference_mode" in findings[0].message


def test_eg107_names_the_submodule_that_enables_grad():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 8)

        def forward(self, x):
            with torch.enable_grad():
                return self.linear(x)

    findings, _ = audit(nn.Sequential(nn.Linear(8, 8), Inner()).eval(), x(), select={"EG107"})
    assert by_rule(findings, "EG107").location.module == "1"


def test_eg107_good_plain_model_is_not_reported():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4)).eval()
    assert all(p.requires_grad for p in model.parameters())
    assert audit(model, x(), select={"EG107"})[0] == []


# --- the user's model stays untouched ---------------------------------------------------------

def snapshot(model):
    return ({name: m.training for name, m in model.named_modules()},
            {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]})


def assert_same(model, before):
    modes, tensors = snapshot(model)
    assert modes == before[0]
    assert tensors.keys() == before[1].keys()
    for name, tensor in tensors.items():
        assert torch.equal(tensor, before[1][name]), name


def bn_dropout_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    with torch.no_grad():
        model(torch.randn(16, 8))
    return model


def test_audit_leaves_model_and_rng_untouched():
    model = bn_dropout_model()
    before = snapshot(model)
    rng = torch.get_rng_state()
    findings, subject = audit(model, x())
    assert rules(findings) == ["EG101", "EG102"]
    assert subject.paired.copy == "deepcopy"
    assert_same(model, before)
    assert model.training and int(model[1].num_batches_tracked) == 1
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_that_cannot_be_deepcopied_is_restored():
    class NoCopy(nn.Sequential):
        def __deepcopy__(self, memo):
            raise TypeError("holds a lock")

    model = NoCopy(*bn_dropout_model())
    before = snapshot(model)
    findings, subject = audit(model, x())
    assert rules(findings) == ["EG101", "EG102"]
    assert subject.paired.copy.startswith("snapshot-restore (deepcopy failed: TypeError")
    assert_same(model, before)


def test_forward_that_edits_its_input_in_place_is_not_nondeterministic():
    class InPlace(nn.Module):
        def forward(self, x):
            return x.mul_(2)

    inputs = x()
    original = inputs.clone()
    assert audit(InPlace().eval(), inputs)[0] == []
    assert torch.equal(inputs, original)


def test_runs_are_reproducible():
    first, _ = audit(bn_dropout_model(), x())
    second, _ = audit(bn_dropout_model(), x())
    assert [f.evidence["max_abs_diff"] for f in first if f.rule == "EG102"] == \
           [f.evidence["max_abs_diff"] for f in second if f.rule == "EG102"]


def test_pass_budget_for_a_clean_train_mode_model():
    findings, subject = audit(trained_bn(), x())
    assert rules(findings) == ["EG101"]
    assert subject.paired.passes == 5  # 2 served + eval reference + same-input pass + batch probe


def test_only_selected_rules_are_reported():
    findings, _ = audit(mlp_with_dropout(), x(), select={"EG103", "EG104"})
    assert findings == []


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("forward, expected", [
    (lambda self, x: (_ for _ in ()).throw(ValueError("bad shape")), "ValueError: bad shape"),
    (lambda self, x: None, "returned NoneType with no tensors"),
    (lambda self, x: {"label": "cat"}, "returned dict with no tensors"),
])
def test_forward_that_fails_is_a_target_error(forward, expected):
    model = type("Broken", (nn.Module,), {"forward": forward})()
    with pytest.raises(TargetError) as error:
        audit(model, x(), select={"EG102"})
    message = str(error.value)
    assert message.startswith("forward failed on the example inputs (arg0: float32[4, 8]; from test)")
    assert expected in message


def test_non_module_is_a_target_error():
    subject = AuditSubject(path="m", kind="factory", model=lambda x: x)
    with pytest.raises(TargetError, match="expected a torch.nn.Module"):
        eval_mode.run(subject, AuditOptions(selected=ALL))


# --- TorchScript and torch.export ---------------------------------------------------------------

def test_torchscript_model_is_audited_without_hooks():
    model = torch.jit.script(bn_dropout_model())
    before = snapshot(model)
    findings, _ = audit(model, x())
    assert rules(findings) == ["EG101", "EG102"]
    listed = {m["type"] for m in by_rule(findings, "EG101").evidence["modules"]}
    assert listed == {"BatchNorm1d", "Dropout"}
    assert "TorchScript" in by_rule(findings, "EG102").evidence["note"]
    assert_same(model, before)


def test_exported_program_in_training_mode():
    program = torch.export.export(bn_dropout_model(), (x(),))
    findings, subject = audit(program, x())
    assert rules(findings) == ["EG101", "EG102"]
    assert {m["type"] for m in by_rule(findings, "EG101").evidence["modules"]} == {"BatchNorm1d", "Dropout"}
    assert "exported graph" in subject.skipped("EG103")


def test_exported_program_in_eval_mode_is_clean():
    program = torch.export.export(bn_dropout_model().eval(), (x(),))
    findings, subject = audit(program, x())
    assert findings == []
    # static batch size: the probe batch is refused, which is a note, not a finding
    assert subject.skipped("EG104")
