"""EG301/EG302 from optimizer state saved by real torch optimizers (torch 2.13)."""
import copy
import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

from evalguard.checks.optimizer.check import run
from evalguard.checks.optimizer.names import param_role
from evalguard.checks.optimizer.state import family_from_hint
from evalguard.facts import LoadFacts, OptimizerFacts, OptimizerHint
from evalguard.subject import AuditOptions, AuditSubject

BOTH = frozenset({"EG301", "EG302"})
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "rules"


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


def stepped(model: nn.Module, optimizer, features: int = 4) -> dict:
    """One real optimizer step, then the state_dict as a checkpoint would hold it."""
    model(torch.randn(3, features)).square().mean().backward()
    optimizer.step()
    return optimizer.state_dict()


def audit(state, model=None, rules=BOTH, hint=None):
    """(findings, OptimizerFacts or None) of the optimizer check on a checkpoint holding ``state``."""
    load = LoadFacts(format="checkpoint", optimizer=hint)
    subject = AuditSubject(path="ckpt.pt", kind="checkpoint", model=model, optimizer_state=state, load=load)
    outcome = run(subject, AuditOptions(selected=rules))
    facts = [f for f in outcome.facts if isinstance(f, OptimizerFacts)]
    return list(outcome.findings), (facts[0] if facts else None)


def rules_of(findings):
    return sorted(f.rule for f in findings)


# -- EG301 ---------------------------------------------------------------------------------

def test_adam_with_weight_decay_is_reported_from_its_recorded_flag():
    model = tiny_model()
    state = stepped(model, torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01))
    assert state["param_groups"][0]["decoupled_weight_decay"] is False   # what torch 2.13 writes
    findings, facts = audit(state, rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    finding = findings[0]
    assert finding.severity is None and finding.location.path == "ckpt.pt"
    assert finding.evidence["optimizer"] == "Adam"
    assert finding.evidence["confidence"] == "high"
    assert finding.evidence["groups"] == [{"index": 0, "weight_decay": 0.01, "params": 6,
                                           "decoupled_weight_decay": False}]
    assert "weight_decay=0.01" in finding.message and "AdamW" in finding.message
    assert facts.optimizers[0].groups[0].optimizer == "Adam"


def test_adamw_is_not_reported():
    model = tiny_model()
    state = stepped(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01))
    assert state["param_groups"][0]["decoupled_weight_decay"] is True
    findings, facts = audit(state, rules=frozenset({"EG301"}))
    assert findings == []
    assert facts.optimizers[0].groups[0].optimizer == "AdamW"


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.Adam(p, weight_decay=0.0),
    lambda p: torch.optim.Adam(p, weight_decay=0.01, decoupled_weight_decay=True),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    lambda p: torch.optim.NAdam(p, weight_decay=0.01, decoupled_weight_decay=True),
    lambda p: torch.optim.RAdam(p, weight_decay=0.01, decoupled_weight_decay=True),
    lambda p: torch.optim.RMSprop(p, weight_decay=0.01),
], ids=["adam-no-decay", "adam-decoupled", "sgd-momentum", "nadam-decoupled", "radam-decoupled", "rmsprop"])
def test_decoupled_or_non_adam_optimizers_are_fine(make):
    model = tiny_model()
    findings, _ = audit(stepped(model, make(model.parameters())), rules=frozenset({"EG301"}))
    assert findings == []


@pytest.mark.parametrize("cls,family", [(torch.optim.NAdam, "NAdam"), (torch.optim.RAdam, "RAdam"),
                                        (torch.optim.Adamax, "Adamax")])
def test_other_adam_variants_with_coupled_decay_are_reported(cls, family):
    model = tiny_model()
    findings, _ = audit(stepped(model, cls(model.parameters(), weight_decay=0.01)), rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    assert findings[0].evidence["optimizer"] == family


def test_only_decayed_groups_are_named():
    model = tiny_model()
    params = list(model.parameters())
    optimizer = torch.optim.Adam([{"params": params[:2], "weight_decay": 0.0},
                                  {"params": params[2:], "weight_decay": 0.05}], lr=1e-3)
    findings, _ = audit(stepped(model, optimizer), rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    assert [g["index"] for g in findings[0].evidence["groups"]] == [1]
    assert "param group 1 (4 parameters)" in findings[0].message


def _as_old_torch(state: dict) -> dict:
    """The state_dict torch < 2.7 wrote: no decoupled_weight_decay key (Adam and AdamW alike)."""
    old = copy.deepcopy(state)
    for group in old["param_groups"]:
        group.pop("decoupled_weight_decay", None)
    return old


def test_old_adam_and_adamw_states_are_indistinguishable_and_not_reported():
    model = tiny_model()
    adam = _as_old_torch(stepped(model, torch.optim.Adam(model.parameters(), weight_decay=0.01)))
    adamw = _as_old_torch(stepped(model, torch.optim.AdamW(model.parameters(), weight_decay=0.01)))
    assert adam["param_groups"][0].keys() == adamw["param_groups"][0].keys()
    assert adam["state"][0].keys() == adamw["state"][0].keys()
    for state in (adam, adamw):
        findings, facts = audit(state, rules=frozenset({"EG301"}))
        assert findings == []
        assert "cannot tell Adam" in facts.optimizers[0].note


def test_old_state_with_a_class_hint_is_reported_with_medium_confidence():
    model = tiny_model()
    old = _as_old_torch(stepped(model, torch.optim.Adam(model.parameters(), weight_decay=0.01)))
    findings, _ = audit({**old, "optimizer_name": "torch.optim.Adam"}, rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    assert findings[0].evidence["confidence"] == "medium"
    assert "confidence medium" in findings[0].message
    # the loader records a name found in the checkpoint in its OptimizerHint
    named = OptimizerHint("checkpoint['optimizer']", "Adam", "named in the checkpoint")
    findings, _ = audit(old, rules=frozenset({"EG301"}), hint=named)
    assert rules_of(findings) == ["EG301"]
    # ...but a class it only guessed from the param groups is no evidence
    guessed = OptimizerHint("checkpoint['optimizer']", "Adam", "inferred from param_groups")
    assert audit(old, rules=frozenset({"EG301"}), hint=guessed)[0] == []
    # a hint naming AdamW clears it
    findings, _ = audit({**old, "optimizer_name": "AdamW"}, rules=frozenset({"EG301"}))
    assert findings == []


@pytest.mark.parametrize("cls,confidence", [(torch.optim.NAdam, "high"), (torch.optim.Adamax, "high"),
                                            (torch.optim.RAdam, "medium")])
def test_old_variants_without_flag_only_had_coupled_decay(cls, confidence):
    model = tiny_model()
    old = _as_old_torch(stepped(model, cls(model.parameters(), weight_decay=0.01)))
    findings, _ = audit(old, rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    assert findings[0].evidence["optimizer"] == cls.__name__
    assert findings[0].evidence["confidence"] == confidence


@pytest.mark.parametrize("hint,expected", [
    ("torch.optim.Adam", ("Adam", False)), ("adamw_torch", ("AdamW", True)),
    ("torch.optim.adamw.AdamW", ("AdamW", True)), ("Adam8bit", ("Adam", False)),
    ("NAdam", ("NAdam", False)), ("FusedAdam", (None, None)), ("SGD", (None, None)),
])
def test_class_hints(hint, expected):
    assert family_from_hint(hint) == expected


def test_lightning_list_of_optimizer_states():
    model = tiny_model()
    adam = stepped(model, torch.optim.Adam(model.parameters(), weight_decay=0.01))
    sgd = stepped(model, torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01))
    findings, facts = audit([sgd, adam], rules=frozenset({"EG301"}))
    assert rules_of(findings) == ["EG301"]
    assert findings[0].message.startswith("optimizer 1:")
    assert len(facts.optimizers) == 2


def test_missing_or_malformed_state_yields_nothing():
    assert audit(None)[0] == []
    findings, facts = audit({"state": {}, "lr": 0.1})
    assert findings == []
    assert "not a torch optimizer state_dict" in facts.note


def test_unselected_rules_are_skipped():
    model = tiny_model()
    state = stepped(model, torch.optim.Adam(model.parameters(), weight_decay=0.01))
    assert audit(state, model, rules=frozenset({"EG101"}))[0] == []
    assert rules_of(audit(state, model, rules=frozenset({"EG302"}))[0]) == ["EG302"]


# -- EG302 ---------------------------------------------------------------------------------

def test_decay_on_everything_names_biases_and_layernorm():
    model = tiny_model()
    state = stepped(model, torch.optim.AdamW(model.parameters(), weight_decay=0.01))
    findings, _ = audit(state, model, rules=frozenset({"EG302"}))
    assert rules_of(findings) == ["EG302"]
    ev = findings[0].evidence
    assert ev["biases"] == ["0.bias", "3.bias"]
    assert ev["norm_params"] == ["1.weight", "1.bias"]
    assert (ev["bias_count"], ev["norm_count"]) == (2, 2)
    assert ev["names_from"] == "model order" and "named_parameters() order" in ev["assumption"]
    assert ev["confidence"] == "medium"          # every shape confirmed by the Adam state
    assert "2 biases and 2 normalisation parameters" in findings[0].message


def test_recorded_param_names_are_used_with_high_confidence():
    model = tiny_model()
    state = stepped(model, torch.optim.AdamW(model.named_parameters(), weight_decay=0.01))
    assert state["param_groups"][0]["param_names"][0] == "0.weight"      # torch 2.13 records them
    findings, _ = audit(state, model, rules=frozenset({"EG302"}))
    ev = findings[0].evidence
    assert ev["names_from"] == "param_names" and ev["confidence"] == "high"
    assert ev["norm_params"] == ["1.weight", "1.bias"] and ev["biases"] == ["0.bias", "3.bias"]
    # Without the model the names alone decide: "1.weight" does not say it is a LayerNorm.
    findings, _ = audit(state, None, rules=frozenset({"EG302"}))
    ev = findings[0].evidence
    assert ev["norm_params"] == [] and ev["biases"] == ["0.bias", "1.bias", "3.bias"]


def test_names_without_model_use_name_patterns():
    assert param_role("encoder.layer.0.output.LayerNorm.weight", None) == "norm"
    assert param_role("transformer.ln_f.weight", None) == "norm"
    assert param_role("layer1.0.bn1.weight", None) == "norm"
    assert param_role("h.0.ln_1.bias", None) == "norm"
    assert param_role("classifier.bias", None) == "bias"
    assert param_role("classifier.weight", None) is None
    assert param_role("1.weight", None) is None


def test_hf_style_no_decay_grouping_is_fine_with_and_without_names():
    model = tiny_model()
    named = list(model.named_parameters())
    no_decay = lambda n: n.endswith("bias") or n.startswith("1.")  # noqa: E731  (LayerNorm is "1")
    plain = torch.optim.AdamW([
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}], lr=1e-3)
    state = stepped(model, plain)
    # two groups in id order are not model order: the mapping is rejected by shape, the 1-D
    # fallback finds no vectors in the decayed group
    assert audit(state, model, rules=frozenset({"EG302"}))[0] == []
    assert audit(state, None, rules=frozenset({"EG302"}))[0] == []


def test_hf_grouping_that_forgot_layernorm_is_reported_by_shape_without_names():
    model = tiny_model()
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if not n.endswith("bias")], "weight_decay": 0.01},
        {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}], lr=1e-3)
    findings, _ = audit(stepped(model, optimizer), model, rules=frozenset({"EG302"}))
    assert rules_of(findings) == ["EG302"]
    ev = findings[0].evidence
    assert ev["names_from"] == "none" and ev["confidence"] == "low"
    assert ev["vector_count"] == 1                        # the LayerNorm weight, shape (8,)


def test_without_model_or_names_one_dimensional_parameters_are_counted():
    model = tiny_model()
    state = stepped(model, torch.optim.AdamW(model.parameters(), weight_decay=0.01))
    findings, _ = audit(state, None, rules=frozenset({"EG302"}))
    assert findings[0].evidence["vector_count"] == 4
    assert "pass --model" in findings[0].message


def test_norm_types_and_frozen_parameters():
    class ScaleNorm(nn.Module):              # a custom norm, recognised by its class name
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(8))

        def forward(self, x):
            return self.gain * x / x.norm(dim=-1, keepdim=True)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.Flatten(), nn.Linear(8, 8),
                          nn.RMSNorm(8), ScaleNorm(), nn.GroupNorm(2, 8))
    model[0].requires_grad_(False)           # frozen: not in the optimizer
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], weight_decay=0.1)
    model(torch.randn(4, 2, 3)).square().mean().backward()
    optimizer.step()
    findings, _ = audit(optimizer.state_dict(), model, rules=frozenset({"EG302"}))
    ev = findings[0].evidence
    assert "trainable parameters" in ev["assumption"]
    assert ev["norm_params"] == ["1.weight", "1.bias", "4.weight", "5.gain", "6.weight", "6.bias"]
    assert ev["biases"] == ["3.bias"]


def test_sgd_without_state_relies_on_the_order_assumption():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-4)   # keeps no state
    findings, _ = audit(stepped(model, optimizer), model, rules=frozenset({"EG302"}))
    ev = findings[0].evidence
    assert ev["confidence"] == "low" and "shapes confirmed for 0" in ev["assumption"]
    assert ev["bias_count"] == 2


def test_checkpoint_round_trip_through_torch_save(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), weight_decay=0.01)
    stepped(model, optimizer)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)
    findings, _ = audit(loaded["optimizer"], tiny_model())
    assert rules_of(findings) == ["EG301", "EG302"]


@pytest.mark.parametrize("name", ["bad", "good"])
def test_checkpoint_examples(tmp_path, name):
    example = runpy.run_path(str(EXAMPLES / "EG302" / f"{name}.py"))
    assert example["AUDIT"] == "checkpoint"
    path = tmp_path / "ckpt.pt"
    example["build_checkpoint"](path)
    loaded = torch.load(path, weights_only=True)
    findings, _ = audit(loaded["optimizer"], example["build_model"]())
    assert rules_of(findings) == sorted(example["EXPECTED_RULES"])


# -- through the loader and the CLI --------------------------------------------------------

def _cli_rules(run_cli, *args):
    import json

    code, out, err = run_cli("check", *args, "--no-onnx", "--format", "json")
    assert code in (0, 1), err
    report = json.loads(out)
    assert [t["status"] for t in report["targets"]] == ["audited"]
    return report["findings"]


@pytest.mark.parametrize("name", ["bad", "good"])
def test_checkpoint_examples_through_the_cli(tmp_path, run_cli, name):
    example = EXAMPLES / "EG302" / f"{name}.py"
    path = tmp_path / "ckpt.pt"
    runpy.run_path(str(example))["build_checkpoint"](path)
    findings = _cli_rules(run_cli, path, "--model", f"{example}:build_model")
    expected = runpy.run_path(str(example))["EXPECTED_RULES"]
    assert sorted(f["rule"] for f in findings) == sorted(expected)


def test_old_checkpoint_naming_its_optimizer_through_the_cli(tmp_path, run_cli):
    example = EXAMPLES / "EG302" / "good.py"
    model = runpy.run_path(str(example))["build_model"]()
    optimizer = torch.optim.Adam(model.parameters(), weight_decay=0.01)
    state = _as_old_torch(stepped(model, optimizer, features=8))
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "optimizer": state}, path)
    assert _cli_rules(run_cli, path, "--model", f"{example}:build_model", "--select", "EG301") == []
    torch.save({"model": model.state_dict(), "optimizer": state, "optimizer_name": "Adam"}, path)
    (finding,) = _cli_rules(run_cli, path, "--model", f"{example}:build_model", "--select", "EG301")
    assert finding["rule"] == "EG301" and finding["evidence"]["confidence"] == "medium"
