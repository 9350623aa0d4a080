"""EG103 finds randomness where real attention code hides it, even when its effect at the output
is far below the tolerance: decided bitwise per module on identical inputs, located at the
strict tolerance. Real transformers families built from tiny configs (random weights)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evalguard.checks.eval_mode import check as eval_mode
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel

ALL = frozenset({"EG101", "EG102", "EG103", "EG104", "EG107"})
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 100, "max_position_embeddings": 32}
#: Scale of the leaky layer's output projection: the dropout's effect at the model's output
#: stays around 1e-5 or below, under the strict tolerance (atol 1e-6 *and* rtol 1e-5 on O(1) values).
QUIET = 1e-4


def tokens():
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones(2, 8, dtype=torch.long)}


def audit(model, inputs, select=ALL):
    subject = AuditSubject(path="m", kind="factory", model=model,
                           inputs_resolver=lambda: ExampleInputs(kwargs=inputs, source="test"))
    outcome = eval_mode.run(subject, AuditOptions(selected=frozenset(select)))
    assert not outcome.target_errors
    return list(outcome.findings), outcome


def output_effect(model, inputs) -> float:
    """Largest difference of the main output between two eval passes on the same input."""
    with torch.no_grad():
        a, b = model(**inputs)[0], model(**inputs)[0]
    return float((a - b).abs().max())


def quiet(linear: nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.mul_(QUIET)
        linear.bias.mul_(QUIET)


def eg103(findings):
    [finding] = [f for f in findings if f.rule == "EG103"]
    assert [f.rule for f in findings] == ["EG103"]
    return finding


# --- SDPA with a hard-coded dropout_p, in ALBERT- and ELECTRA-style attention ------------------

from transformers.models.albert.modeling_albert import AlbertAttention  # noqa: E402 - after importorskip
from transformers.models.electra.modeling_electra import ElectraSelfAttention  # noqa: E402 - after importorskip


class HardCodedAlbertAttention(AlbertAttention):
    """ALBERT's attention with the SDPA call written out and its dropout_p hard-coded."""

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q, k, v = (layer(hidden_states).view(shape).transpose(1, 2) for layer in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
        out = self.dense(out.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1))
        return self.LayerNorm(hidden_states + self.output_dropout(out)), None


class HardCodedElectraSelfAttention(ElectraSelfAttention):
    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q, k, v = (layer(hidden_states).view(shape).transpose(1, 2) for layer in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
        return out.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1), None


def albert_with_hard_coded_sdpa():
    torch.manual_seed(0)
    config = transformers.AlbertConfig(embedding_size=16, **SMALL)
    model = transformers.AlbertModel(config)
    layer = model.encoder.albert_layer_groups[0].albert_layers[0]
    leaky = HardCodedAlbertAttention(config)
    leaky.load_state_dict(layer.attention.state_dict())
    quiet(leaky.dense)
    layer.attention = leaky
    return model.eval()


def electra_with_hard_coded_sdpa():
    torch.manual_seed(0)
    config = transformers.ElectraConfig(embedding_size=16, **SMALL)
    model = transformers.ElectraModel(config)
    attention = model.encoder.layer[1].attention
    leaky = HardCodedElectraSelfAttention(config)
    leaky.load_state_dict(attention.self.state_dict())
    attention.self = leaky
    quiet(attention.output.dense)
    return model.eval()


@pytest.mark.parametrize("build, module, type_name", [
    (albert_with_hard_coded_sdpa, "encoder.albert_layer_groups.0.albert_layers.0.attention",
     "HardCodedAlbertAttention"),
    (electra_with_hard_coded_sdpa, "encoder.layer.1.attention.self", "HardCodedElectraSelfAttention"),
])
def test_hard_coded_sdpa_dropout_is_found_below_the_output_tolerance(build, module, type_name):
    model = build()
    effect = output_effect(model, tokens())
    assert 0 < effect < 1e-4   # below what a batch-tolerance comparison (atol 1e-4) could see
    findings, outcome = audit(model, tokens())
    finding = eg103(findings)
    assert finding.location.module == module
    assert finding.evidence["module_type"] == type_name
    assert "scaled_dot_product_attention(dropout_p=0.1)" in finding.message
    assert finding.evidence["outputs_within_tolerance"] is True
    assert outcome.coverage["EG104"].status == "skipped"   # random: batch dependence cannot be judged


# --- a custom attention function registered with transformers' AttentionInterface --------------

def leaky_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Registered like a transformers attention implementation, but ignores ``module.training``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.1, scaling=scaling, **kwargs)


@pytest.fixture
def registered_leaky_attention():
    from transformers import AttentionInterface

    AttentionInterface.register("evalguard_test_leaky", leaky_attention)
    yield "evalguard_test_leaky"
    AttentionInterface._global_mapping.pop("evalguard_test_leaky", None)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_registered_attention_function_ignoring_training_is_found(registered_leaky_attention, family):
    torch.manual_seed(0)
    if family == "llama":
        config = transformers.LlamaConfig(num_key_value_heads=1, **SMALL)
        model = transformers.LlamaModel(config)
        expected = "layers.{}.self_attn"
    else:
        config = transformers.BertConfig(**SMALL)
        model = transformers.BertModel(config)
        expected = "encoder.layer.{}.attention.self"
    model.set_attn_implementation(registered_leaky_attention)
    model.eval()
    findings, _ = audit(model, tokens())
    finding = eg103(findings)
    assert finding.location.module == expected.format(0)   # the first layer's attention is random
    assert "scaled_dot_product_attention(dropout_p=0.1)" in finding.message
    modules = [s["module"] for s in finding.evidence["sources"]]
    assert modules == [expected.format(0), expected.format(1)]   # every random layer, not just the first


def test_registered_attention_with_tiny_effect(registered_leaky_attention):
    """Only the last layer is random and its output projection is scaled down: ~1e-5 at the output."""
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**SMALL))
    model.set_attn_implementation(registered_leaky_attention)
    last = model.encoder.layer[1].attention
    # layer 0 keeps plain sdpa through its own config
    model.encoder.layer[0].attention.self.config = transformers.BertConfig(**SMALL, attn_implementation="sdpa")
    quiet(last.output.dense)
    model.eval()
    assert 0 < output_effect(model, tokens()) < 1e-4
    finding = eg103(audit(model, tokens())[0])
    assert finding.location.module == "encoder.layer.1.attention.self"
    assert [s["module"] for s in finding.evidence["sources"]] == ["encoder.layer.1.attention.self"]


# --- F.multi_head_attention_forward with dropout_p ---------------------------------------------

class FunctionalMHA(nn.Module):
    """Batch-first self-attention through F.multi_head_attention_forward with training hard-coded."""

    def __init__(self, dim=32, heads=2, dropout=0.1):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        seq_first = x.transpose(0, 1)
        out, _ = F.multi_head_attention_forward(
            seq_first, seq_first, seq_first, x.shape[-1], self.heads, self.in_proj.weight, self.in_proj.bias,
            None, None, False, self.dropout, self.out_proj.weight, self.out_proj.bias, training=True, need_weights=False)
        return out.transpose(0, 1)


class Block(nn.Module):
    def __init__(self, dim=32, dropout=0.0):
        super().__init__()
        self.attn = FunctionalMHA(dim, dropout=dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x + self.attn(x))


def test_multi_head_attention_forward_with_dropout_is_found_even_when_tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), Block(), Block(dropout=0.1), nn.Linear(32, 4))
    quiet(model[2].attn.out_proj)
    model.eval()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert 0 < float((model(x) - model(x)).abs().max()) < 1e-4
    subject = AuditSubject(path="m", kind="factory", model=model,
                           inputs_resolver=lambda: ExampleInputs(args=(x,), source="test"))
    outcome = eval_mode.run(subject, AuditOptions(selected=ALL))
    finding = eg103(outcome.findings)
    assert finding.location.module == "2.attn"
    assert [s["module"] for s in finding.evidence["sources"]] == ["2.attn"]
    assert "multi_head_attention_forward(dropout_p=0.1, training=True)" in finding.message


# --- an nn.Dropout subclass that ignores self.training -------------------------------------------

class AlwaysDropout(nn.Dropout):
    def forward(self, x):
        return F.dropout(x, self.p, training=True)


def test_dropout_subclass_ignoring_training_is_found_in_bert_with_a_tiny_effect():
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**SMALL))
    layer = model.encoder.layer[1].output
    layer.dropout = AlwaysDropout(0.1)
    quiet(layer.dense)
    model.eval()
    assert 0 < output_effect(model, tokens()) < 1e-4
    findings, _outcome = audit(model, tokens())
    finding = eg103(findings)
    assert finding.location.module == "encoder.layer.1.output.dropout"
    assert finding.evidence["module_type"] == "AlwaysDropout"
    assert "torch.nn.functional.dropout(p=0.1, training=True)" in finding.message


# --- the clean path ------------------------------------------------------------------------------

def test_clean_eval_model_costs_three_passes_and_says_modules_were_bit_identical():
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**SMALL)).eval()
    findings, outcome = audit(model, tokens())
    assert findings == []
    [facts] = [f for f in outcome.facts if type(f).__name__ == "ModeFacts"]
    assert facts.paired.passes == 3     # reference, same-input pass, batch probe
    assert any("bit-identical" in note for note in facts.paired.notes)
    assert outcome.coverage["EG103"].status == "ran"
    assert outcome.coverage["EG104"].status == "ran"


def test_bit_noise_within_the_tolerance_is_not_randomness():
    """A kernel that is nondeterministic in the last bits (as some GPU kernels are) is not EG103."""

    class LastBitNoise(nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x) * 1e-9

    model = nn.Sequential(nn.Linear(8, 8), LastBitNoise(), nn.Linear(8, 2)).eval()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    subject = AuditSubject(path="m", kind="factory", model=model,
                           inputs_resolver=lambda: ExampleInputs(args=(x,), source="test"))
    outcome = eval_mode.run(subject, AuditOptions(selected=ALL))
    assert list(outcome.findings) == []
    [facts] = [f for f in outcome.facts if type(f).__name__ == "ModeFacts"]
    assert any("nondeterministic kernels" in note for note in facts.paired.notes)


def test_fingerprints_survive_outputs_they_cannot_reduce():
    """A module returning a quantized tensor (no float sum) must not make the forward fail."""

    class Inner(nn.Module):
        def forward(self, x):
            return torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.inner = nn.Linear(8, 8), Inner()

        def forward(self, x):
            return self.inner(self.linear(x)).dequantize()

    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    subject = AuditSubject(path="m", kind="factory", model=Model().eval(),
                           inputs_resolver=lambda: ExampleInputs(args=(x,), source="test"))
    outcome = eval_mode.run(subject, AuditOptions(selected=ALL))
    assert not outcome.target_errors
    assert list(outcome.findings) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_a_fingerprint_changes_with_any_one_element_and_nan_equals_nan(dtype):
    """EG103's per-module print: one word per tensor that changes when any single element
    changes (by one unit in the last place, or its sign of zero), and equal prints for equal
    tensors even when they hold NaN."""
    from evalguard.checks.eval_mode.fingerprint import _leaf_print

    base = (torch.randn(64, 33, generator=torch.Generator().manual_seed(1)) * 100).to(dtype)
    if dtype.is_floating_point:
        base[3, 4] = float("nan")
        base[5, 6] = 0.0
    same = base.clone()
    assert torch.equal(_leaf_print(base), _leaf_print(same))
    for index in [(0, 0), (10, 20), (63, 32)]:
        changed = base.clone()
        if dtype.is_floating_point:
            changed[index] = torch.nextafter(changed[index].float(), torch.tensor(float("inf"))).to(dtype)
            if changed[index] == base[index]:   # below the dtype's resolution in float32: step in its own
                changed.view(torch.int16)[index] += 1
        else:
            changed[index] += 1
        assert not torch.equal(_leaf_print(changed), _leaf_print(base)), index
    if dtype.is_floating_point:
        signed = base.clone()
        signed[5, 6] = -0.0
        assert not torch.equal(_leaf_print(signed), _leaf_print(base))
