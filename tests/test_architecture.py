"""Architecture rules EG201-EG207, called through the check's entry point on small models.

Each rule has layouts that must raise it (including ones no nn.Sequential shows: custom
forwards, functional ops, reused modules, data-dependent control flow) and near-identical
layouts that must not.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evalguard.checks.architecture import check as architecture
from evalguard.facts import ArchitectureFacts
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

ALL = frozenset(architecture.RULES)


class Audited:
    """What the architecture check returned: its facts and each rule's coverage."""

    def __init__(self, outcome):
        self.outcome = outcome
        [self.facts] = [f for f in outcome.facts if isinstance(f, ArchitectureFacts)]

    def skipped(self, rule: str) -> str | None:
        run = self.outcome.coverage[rule]
        return run.reason if run.status == "skipped" else None


def audit(model, *inputs, rules=ALL, kind="factory"):
    """Run the check; returns (findings, subject). No inputs means the resolver fails like the CLI's."""
    resolver = (lambda: ExampleInputs(args=inputs)) if inputs else None
    subject = AuditSubject(path="m", kind=kind, model=model, inputs_resolver=resolver)
    outcome = architecture.run(subject, AuditOptions(selected=frozenset(rules)))
    return list(outcome.findings), Audited(outcome)


def only(findings, rule):
    return [f for f in findings if f.rule == rule]


def img(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


# ---- EG201 --------------------------------------------------------------------------------

class ConvDropBN(nn.Module):
    """Dropout between conv and BatchNorm inside a custom forward: no Sequential shows it."""

    def __init__(self, p=0.1):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout2d(p)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.drop(self.conv(x))).mean(dim=(2, 3))


def test_eg201_custom_forward_found_by_fx_without_inputs():
    findings, subject = audit(ConvDropBN().eval())
    [finding] = only(findings, "EG201")
    assert finding.location.module == "drop"
    assert finding.evidence["view"] == "fx"
    assert finding.evidence["path"] == ["drop", "bn"]
    assert "BatchNorm2d `bn`" in finding.message
    assert subject.facts.dataflow == "fx"


def test_eg201_weight_layer_activation_and_pooling_between_still_count():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout2d(0.1), nn.Conv2d(4, 4, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.BatchNorm2d(4)).eval()
    [finding] = only(audit(model, img(2, 3, 12, 12))[0], "EG201")
    assert finding.evidence["path"] == ["1", "2", "3", "4", "5"]


def test_eg201_concatenation_keeps_the_dropped_channels():
    class DenseLayer(nn.Module):   # DenseNet: new features dropped, concatenated, normalised next
        def __init__(self):
            super().__init__()
            self.conv, self.drop, self.norm = nn.Conv2d(4, 4, 3, padding=1), nn.Dropout(0.2), nn.BatchNorm2d(8)

        def forward(self, x):
            return self.norm(torch.cat([x, self.drop(self.conv(x))], dim=1))

    [finding] = only(audit(DenseLayer().eval(), img(2, 4, 6, 6))[0], "EG201")
    assert finding.evidence["batchnorm"] == "norm"
    assert finding.evidence["path"][1] == "cat()"


def test_eg201_functional_dropout_and_functional_batch_norm():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.register_buffer("mean", torch.zeros(8))
            self.register_buffer("var", torch.ones(8))

        def forward(self, x):
            y = F.dropout(self.fc(x), 0.3, self.training)
            y = torch.flatten(y, 1) * 2.0
            return F.batch_norm(y, self.mean, self.var, training=self.training)

    [finding] = only(audit(Functional().eval(), img(4, 8))[0], "EG201")
    assert finding.evidence["dropout"] == "dropout()"
    assert finding.evidence["p"] == 0.3
    assert finding.evidence["path"] == ["dropout()", "flatten()", "mul()", "batch_norm()"]
    assert finding.location.module is None   # functional call at the model's top level


def test_eg201_data_dependent_forward_uses_the_hooks_view():
    class Branchy(ConvDropBN):
        def forward(self, x):
            if x.sum() > -1e9:                  # fx cannot trace this
                x = self.drop(torch.relu(self.conv(x)))
            return self.bn(x)

    findings, subject = audit(Branchy().eval(), img(2, 3, 6, 6))
    [finding] = only(findings, "EG201")
    assert finding.evidence["view"] == "hooks"
    assert finding.evidence["path"] == ["drop", "bn"]
    assert subject.facts.dataflow == "hooks"
    assert any("torch.fx cannot trace" in note for note in subject.facts.notes)


def test_the_hooks_view_rides_on_the_eval_mode_checks_second_pass():
    """Issue 18: a model fx cannot trace is recorded during the eval-mode check's second eval
    pass, not by one more forward; the graph and the findings are those of a pass of its own
    (the fingerprint hooks that run in that pass leave no nodes in it)."""
    from evalguard.checks.architecture import dataflow
    from evalguard.checks.eval_mode import check as eval_mode

    class Branchy(ConvDropBN):
        calls = 0

        def forward(self, x):
            type(self).calls += isinstance(x, torch.Tensor)   # eager passes, not fx's trace (a Proxy)
            if x.sum() > -1e9:                  # fx cannot trace this
                x = self.drop(torch.relu(self.conv(x)))
            return self.bn(x)

    x = img(2, 3, 6, 6)
    alone, _ = audit(Branchy().eval(), x)
    own_flow = dataflow.from_hooks(Branchy().eval(), ExampleInputs(args=(x,)))

    model = Branchy().eval()
    subject = AuditSubject(path="m", kind="factory", model=model,   # a factory's model: run on a copy
                           inputs_resolver=lambda: ExampleInputs(args=(x,)))
    options = AuditOptions(selected=ALL | {"EG101", "EG102", "EG103", "EG104"})
    eval_mode.run(subject, options)
    recorded = subject.recorded_dataflow
    assert recorded is not None and recorded.flow is not None
    assert [(n.kind, n.inputs, n.shape) for n in recorded.flow.nodes] == \
        [(n.kind, n.inputs, n.shape) for n in own_flow.nodes]
    assert recorded.flow.outputs == own_flow.outputs
    before = Branchy.calls
    outcome = architecture.run(subject, options)
    assert Branchy.calls == before           # no forward pass of its own
    assert [(f.rule, f.evidence) for f in outcome.findings] == [(f.rule, f.evidence) for f in alone]
    assert only(list(outcome.findings), "EG201")
    [facts] = [f for f in outcome.facts if isinstance(f, ArchitectureFacts)]
    assert facts.dataflow == "hooks"
    assert any("second eval pass" in note for note in facts.notes)


def test_a_forward_that_fails_leaves_no_recording_and_no_function_mode_behind():
    from evalguard.checks.architecture import dataflow

    class Fails(nn.Module):
        def forward(self, x):
            torch.relu(x)
            raise RuntimeError("boom")

    model = Fails().eval()
    with dataflow.HooksRecording(model) as recording:
        with pytest.raises(RuntimeError):
            model(torch.randn(2))
    assert recording.flow is None and recording.error
    assert not torch.overrides._is_torch_function_mode_enabled()


def test_eg201_reused_dropout_reported_once_from_the_call_that_reaches_batchnorm():
    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
            self.drop, self.ln, self.bn = nn.Dropout(0.1), nn.LayerNorm(8), nn.BatchNorm1d(8)

        def forward(self, x):
            x = self.ln(self.a(self.drop(x)))   # first call: LayerNorm resets the shift
            return self.bn(self.drop(self.b(x)))

    [finding] = only(audit(Reused().eval(), img(4, 8))[0], "EG201")
    assert finding.evidence["path"] == ["drop", "bn"]


@pytest.mark.parametrize("layout", ["layernorm", "residual", "bert", "p0", "after"])
def test_eg201_silent_where_the_shift_is_reset_mixed_or_absent(layout):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.drop = nn.Dropout(0.0 if layout == "p0" else 0.3)
            self.ln, self.bn = nn.LayerNorm(8), nn.BatchNorm1d(8)

        def forward(self, x):
            if layout == "layernorm":
                return self.bn(self.ln(self.drop(self.fc(x))))
            if layout == "residual":
                return self.bn(x + self.drop(self.fc(x)))
            if layout == "bert":                       # dropout -> residual add -> LayerNorm
                return self.ln(x + self.drop(self.fc(x)))
            if layout == "p0":
                return self.bn(self.drop(self.fc(x)))
            return self.drop(self.bn(self.fc(x)))

    assert only(audit(Net().eval(), img(4, 8))[0], "EG201") == []


# ---- EG202 --------------------------------------------------------------------------------

def test_eg202_dropout_before_gelu_is_reported_as_changing_the_result():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1), nn.GELU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 2)).eval()
    [finding] = only(audit(model, img(2, 8), rules={"EG202"})[0], "EG202")
    assert finding.location.module == "1"
    assert finding.evidence["activation"] == "2"
    assert finding.evidence["numerically_equivalent"] is False


def test_eg202_relu_through_a_reshape_is_reported_as_equivalent():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.drop, self.out = nn.Linear(8, 8), nn.Dropout(0.2), nn.Linear(8, 2)

        def forward(self, x):
            return self.out(F.relu(self.drop(self.fc(x)).view(x.shape[0], -1)))

    [finding] = only(audit(Net().eval(), img(2, 8), rules={"EG202"})[0], "EG202")
    assert finding.evidence["numerically_equivalent"] is True
    assert finding.evidence["path"] == ["drop", "view()", "relu()"]
    assert "exactly" in finding.message


def test_eg202_silent_when_dropout_follows_the_activation():
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 8), nn.GELU(),
                          nn.Linear(8, 2)).eval()
    assert audit(model, img(2, 8), rules={"EG202"})[0] == []


# ---- EG203 --------------------------------------------------------------------------------

def test_eg203_dropout_feeding_the_classifier():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3), nn.Softmax(-1)).eval()
    [finding] = only(audit(model, img(2, 8))[0], "EG203")
    assert finding.location.module == "2"
    assert finding.evidence["final_layer"] == "3"


def test_eg203_dropout_applied_to_the_output_itself():
    model = nn.Sequential(nn.Linear(8, 3), nn.Dropout(0.2)).eval()
    [finding] = only(audit(model, img(2, 8))[0], "EG203")
    assert finding.evidence["final_layer"] is None
    assert "output" in finding.message


def test_eg203_silent_for_dropout_on_a_hidden_layer():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 3)).eval()
    assert only(audit(model, img(2, 8))[0], "EG203") == []


# ---- EG204 --------------------------------------------------------------------------------

def _conv_net(dropout, conv=nn.Conv2d):
    return nn.Sequential(conv(3, 4, 3, padding=1), nn.BatchNorm2d(4) if conv is nn.Conv2d else nn.Identity(),
                         nn.ReLU(), dropout, conv(4, 4, 3, padding=1)).eval()


def test_eg204_elementwise_dropout_on_conv2d_maps():
    [finding] = only(audit(_conv_net(nn.Dropout(0.1)), img(2, 3, 6, 6))[0], "EG204")
    assert finding.evidence["rank"] == 4
    assert finding.evidence["shape"] == [2, 4, 6, 6]
    assert finding.evidence["conv"] == "0"
    assert finding.evidence["suggestion"] == "nn.Dropout2d"


def test_eg204_conv3d_suggests_dropout3d_and_needs_no_inputs_under_fx():
    findings, _ = audit(_conv_net(nn.Dropout(0.1), conv=nn.Conv3d))
    [finding] = only(findings, "EG204")
    assert finding.evidence == {**finding.evidence, "rank": 5, "shape": None, "suggestion": "nn.Dropout3d"}


def test_eg204_silent_for_dropout2d_and_for_attention_weights():
    assert only(audit(_conv_net(nn.Dropout2d(0.1)), img(2, 3, 6, 6))[0], "EG204") == []

    class Attention(nn.Module):            # 4-D (batch, heads, q, k) tensor, not a feature map
        def __init__(self):
            super().__init__()
            self.qk, self.drop = nn.Linear(8, 16), nn.Dropout(0.1)

        def forward(self, x):
            q, k = self.qk(x).view(2, 5, 2, 8).transpose(1, 2).chunk(2, dim=-1)
            return self.drop(torch.softmax(q @ k.transpose(-1, -2), dim=-1))

    assert only(audit(Attention().eval(), img(2, 5, 8))[0], "EG204") == []


# ---- EG205 --------------------------------------------------------------------------------

def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 6), nn.BatchNorm1d(6))


def _train_stats(model):
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 4) * 2 + 1)
    return model.eval()


def test_eg205_silent_on_a_freshly_built_model():
    assert audit(_bn_net().eval(), rules={"EG205"})[0] == []


def test_eg205_checkpoint_with_initial_statistics():
    findings, _ = audit(_bn_net().eval(), rules={"EG205"}, kind="checkpoint")
    assert [f.location.module for f in findings] == ["1", "4"]
    assert findings[0].evidence["num_batches_tracked"] == 0
    assert "checkpoint" in findings[0].evidence["trained_evidence"]


def test_eg205_one_stale_batchnorm_next_to_an_updated_one():
    model = _train_stats(_bn_net())
    model[4].reset_running_stats()
    [finding] = audit(model, rules={"EG205"})[0]
    assert finding.location.module == "4"
    assert "`1`" in finding.evidence["trained_evidence"]


def test_eg205_trained_affine_weights_count_as_trained():
    model = _bn_net().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(0.5, 1.5, 6))
    assert [f.location.module for f in audit(model, rules={"EG205"})[0]] == ["1", "4"]


def test_eg205_silent_for_real_statistics_even_with_a_zero_counter():
    model = _train_stats(_bn_net())
    for module in (model[1], model[4]):
        module.num_batches_tracked.zero_()      # as converted checkpoints often have
    assert audit(model, rules={"EG205"}, kind="checkpoint")[0] == []


def test_eg205_ignores_batchnorm_without_running_stats():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False)).eval()
    assert audit(model, rules={"EG205"}, kind="checkpoint")[0] == []


# ---- EG206 --------------------------------------------------------------------------------

def _block(p):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(p))


def test_eg206_heavy_dropout_in_a_batchnorm_block():
    model = nn.Sequential(_block(0.3), nn.Flatten()).eval()
    [finding] = audit(model, rules={"EG206"})[0]
    assert finding.location.module == "0.3"
    assert finding.evidence == {"p": 0.3, "block": "0", "batchnorms": ["0.1"]}


def test_eg206_batchnorm_inside_a_sibling_container_counts():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            self.drop = nn.Dropout(0.5)

    model = nn.Sequential(Block())
    [finding] = audit(model, rules={"EG206"})[0]
    assert finding.location.module == "0.drop"
    assert finding.evidence["batchnorms"] == ["0.body.1"]


def test_eg206_at_the_top_level_only_a_later_batchnorm_counts():
    class Stages(nn.Module):    # stages as attributes of the model, Dropout between two of them
        def __init__(self, later_stage=True):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            self.drop = nn.Dropout2d(0.3)
            if later_stage:
                self.stage = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))

    [finding] = audit(Stages(), rules={"EG206"})[0]
    assert finding.location.module == "drop"
    assert finding.evidence == {"p": 0.3, "block": "", "batchnorms": ["stage.1"]}
    assert "top level before BatchNorm `stage.1`" in finding.message
    assert audit(Stages(later_stage=False), rules={"EG206"})[0] == []


def test_eg206_silent_for_light_dropout_and_for_a_classifier_after_the_features():
    assert audit(nn.Sequential(_block(0.1)), rules={"EG206"})[0] == []
    vgg_like = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)),
                             nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.LazyLinear(2)))
    assert audit(vgg_like, rules={"EG206"})[0] == []


# ---- EG207 --------------------------------------------------------------------------------

def test_eg207_names_and_counts_non_finite_values():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        model[0].weight[0, :2] = float("nan")
        model[0].weight[1, 0] = float("-inf")
        model[1].running_var[3] = float("inf")
    findings, _ = audit(model, rules={"EG207"})
    by_tensor = {f.evidence["tensor"]: f for f in findings}
    assert set(by_tensor) == {"0.weight", "1.running_var"}
    weight = by_tensor["0.weight"]
    assert (weight.evidence["nan"], weight.evidence["inf"], weight.evidence["numel"]) == (2, 1, 16)
    assert weight.location.module == "0"
    assert "2 NaN and 1 Inf of 16" in weight.message
    assert by_tensor["1.running_var"].evidence["kind"] == "buffer"


def test_eg207_skips_additive_masks_and_finite_models():
    model = nn.Linear(4, 4)
    model.register_buffer("causal_mask", torch.full((4, 4), float("-inf")).triu(1))
    assert audit(model, rules={"EG207"})[0] == []


# ---- how the check runs -------------------------------------------------------------------

def test_static_rules_need_no_inputs_and_no_forward():
    def refuse():
        raise AssertionError("static rules must not resolve inputs")

    model = nn.Sequential(_block(0.5), nn.Flatten())
    subject = AuditSubject(path="m", kind="checkpoint", model=model, inputs_resolver=refuse)
    findings = architecture.run(subject, AuditOptions(selected=frozenset({"EG205", "EG206", "EG207"}))).findings
    assert {f.rule for f in findings} == {"EG205", "EG206"}


def test_untraceable_model_without_inputs_keeps_the_static_rules():
    class Branchy(ConvDropBN):
        def forward(self, x):
            return self.bn(self.drop(self.conv(x))) if x.sum() > 0 else x

    model = Branchy().eval()
    with torch.no_grad():
        model.conv.bias[0] = float("nan")
    findings, subject = audit(model)
    assert {f.rule for f in findings} == {"EG207"}
    assert subject.facts.dataflow == "unavailable"
    assert "no example inputs" in subject.skipped("EG201")
    assert subject.skipped("EG207") is None


def test_failing_forward_is_a_note_not_a_crash():
    class Broken(ConvDropBN):
        def forward(self, x):
            if x.sum() > 0:
                raise RuntimeError("shape mismatch in user code")
            return x

    findings, subject = audit(Broken().eval(), img(2, 3, 4, 4))
    assert findings == []
    assert "shape mismatch in user code" in subject.facts.notes[-1]
    assert "shape mismatch in user code" in subject.skipped("EG202")


def test_the_users_model_is_never_touched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.3), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2))
    model.train()                                  # a train-mode pass would update BatchNorm stats
    before = copy.deepcopy(model.state_dict())
    for view_input in ((), (img(2, 3, 6, 6),)):
        findings, _ = audit(model, *view_input)
        assert "EG201" in {f.rule for f in findings}
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch._C._len_torch_function_stack() == 0


def test_hooks_view_leaves_no_hooks_or_modes_behind():
    class Branchy(ConvDropBN):
        def forward(self, x):
            return self.bn(self.drop(self.conv(x))) if x.sum() > -1e9 else x

    model = Branchy()
    findings, subject = audit(model, img(2, 3, 4, 4))
    assert subject.facts.dataflow == "hooks"
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch._C._len_torch_function_stack() == 0


def test_torchscript_module_gets_the_static_rules():
    model = nn.Sequential(_block(0.3), nn.Flatten()).eval()
    with torch.no_grad():
        model[0][0].weight[0, 0, 0, 0] = float("nan")
    findings, subject = audit(torch.jit.script(model), img(1, 3, 5, 5), kind="torchscript")
    assert {(f.rule, f.location.module) for f in findings} == {
        ("EG205", "0.1"), ("EG206", "0.3"), ("EG207", "0.0")}
    assert subject.facts.dataflow == "unavailable"


def test_only_selected_rules_are_reported():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.3), nn.BatchNorm2d(4)).eval()
    findings, _ = audit(model, img(1, 3, 5, 5), rules={"EG204", "EG101"})
    assert {f.rule for f in findings} == {"EG204"}
    assert audit(model, rules={"EG101"})[0] == []
