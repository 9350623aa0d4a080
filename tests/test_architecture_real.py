"""EG201-EG207 stay quiet on clean real architectures (transformers, tiny configs, eval mode).

BERT, GPT-2 and ViT put Dropout before a residual add and LayerNorm (not EG201); ResNet has
BatchNorm everywhere; ConvNeXt uses LayerNorm and stochastic depth. None of them may raise a
rule whose catalogue severity is warning or error. BERT's sequence-classification head
(`dropout -> classifier`) is the one expected info finding (EG203).
"""
from __future__ import annotations

import copy

import pytest
import torch
from test_architecture import Audited

from evalguard.catalogue import load_catalogue
from evalguard.checks.architecture import check as architecture
from evalguard.findings import Severity
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel

IDS = torch.randint(0, 60, (2, 8), generator=torch.Generator().manual_seed(0))
PIXELS = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _bert_config():
    return transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=32)


def _vision(kind):
    if kind == "vit":
        return transformers.ViTForImageClassification(transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=3))
    if kind == "resnet":
        return transformers.ResNetForImageClassification(transformers.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=3))
    return transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3, drop_path_rate=0.1))


BUILDERS = {
    "bert": (lambda: transformers.BertModel(_bert_config()), IDS, set()),
    "bert-classifier": (lambda: transformers.BertForSequenceClassification(_bert_config()), IDS, {"EG203"}),
    "gpt2": (lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32)), IDS, set()),
    "vit": (lambda: _vision("vit"), PIXELS, set()),
    "resnet": (lambda: _vision("resnet"), PIXELS, set()),
    "convnext": (lambda: _vision("convnext"), PIXELS, set()),
}


def _audit(model, x, kind="factory"):
    subject = AuditSubject(path="m", kind=kind, model=model, inputs_resolver=lambda: ExampleInputs(args=(x,)))
    outcome = architecture.run(subject, AuditOptions(selected=frozenset(architecture.RULES)))
    return list(outcome.findings), Audited(outcome)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_clean_architecture_raises_nothing_at_warning_or_above(name):
    build, x, expected = BUILDERS[name]
    torch.manual_seed(0)
    findings, subject = _audit(build().eval(), x)
    catalogue = load_catalogue()
    assert {f.rule for f in findings} == expected, [f.message for f in findings]
    assert all(catalogue[f.rule].severity < Severity.WARNING for f in findings)
    # The dataflow rules really looked at the model (HF models do not fx-trace: the hooks view).
    assert subject.facts.dataflow in ("fx", "hooks")


def test_bert_classifier_head_is_found_on_the_real_dataflow():
    torch.manual_seed(0)
    findings, _ = _audit(transformers.BertForSequenceClassification(_bert_config()).eval(), IDS)
    [finding] = findings
    assert (finding.location.module, finding.evidence["final_layer"]) == ("dropout", "classifier")
    assert finding.evidence["view"] == "hooks"


def test_trained_resnet_checkpoint_has_no_stale_statistics():
    """BatchNorm statistics updated by training, loaded from a file: EG205 must stay silent,
    and must fire for the BatchNorm a partial load left at its initial values."""
    torch.manual_seed(0)
    model = _vision("resnet")
    model.train()
    with torch.no_grad():
        model(PIXELS * 2 + 0.5)
    model.eval()
    assert _audit(model, PIXELS, kind="hf-folder")[0] == []

    broken = copy.deepcopy(model)
    stale = next(name for name, m in broken.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    broken.get_submodule(stale).reset_running_stats()
    findings, _ = _audit(broken, PIXELS, kind="hf-folder")
    assert [(f.rule, f.location.module) for f in findings] == [("EG205", stale)]
