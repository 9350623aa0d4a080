"""Real architectures nobody here wrote, built by `transformers` from tiny configs (random
weights, no download). Eval mode: no error findings and ONNX parity. Training mode (as the
constructors return them): EG101 + EG102 naming a dropout module.
"""
import pytest
import torch

import evalguard
from evalguard.findings import Severity

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel

BERT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 vocab_size=100, max_position_embeddings=64)


def ids(batch=2, length=8, vocab=100):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def bert():
    return transformers.BertModel(transformers.BertConfig(**BERT_LIKE)), {"input_ids": ids()}


def gpt2():
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64,
                                     use_cache=False)
    return transformers.GPT2Model(config), {"input_ids": ids()}


def vit():
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8,
                                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return transformers.ViTModel(config, add_pooling_layer=False), {"pixel_values": torch.randn(2, 3, 32, 32)}


def resnet():
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                       layer_type="basic")
    return transformers.ResNetModel(config), {"pixel_values": torch.randn(2, 3, 32, 32)}


def convnext():
    config = transformers.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)
    return transformers.ConvNextModel(config), {"pixel_values": torch.randn(2, 3, 32, 32)}


def whisper_encoder():
    config = transformers.WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                        num_mel_bins=16, max_source_positions=16, dropout=0.1)
    return transformers.WhisperModel(config).encoder, {"input_features": torch.randn(2, 16, 32)}


MODELS = {"bert": bert, "gpt2": gpt2, "vit": vit, "resnet": resnet, "convnext": convnext,
          "whisper-encoder": whisper_encoder}
WITH_DROPOUT = ("bert", "gpt2", "vit", "whisper-encoder")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_clean_eval_model_has_no_errors_and_onnx_parity(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    report = evalguard.audit(model.eval(), inputs, onnx=True)
    assert [t.status for t in report.targets] == ["audited"]
    errors = [(f.rule, f.location.module, f.message) for f in report.findings if f.severity >= Severity.ERROR]
    assert errors == []
    assert not [f for f in report.findings if f.rule.startswith("EG4")], report.findings
    parity = report.targets[0].facts["onnx"].parity
    assert parity and all(row["passed"] for row in parity)


@pytest.mark.parametrize("name", WITH_DROPOUT)
def test_training_mode_model_gives_eg101_and_eg102_naming_dropout(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    assert model.training  # as the transformers constructors return them
    report = evalguard.audit(model, inputs, select=["EG1"])
    by_rule = {f.rule: f for f in report.findings}
    assert {"EG101", "EG102"} <= set(by_rule)
    assert responsible_is_dropout(by_rule["EG102"]), by_rule["EG102"]


def responsible_is_dropout(finding) -> bool:
    """The module named is a Dropout (GPT-2 calls it `drop`), or the named module's own forward
    calls a dropout function (Whisper's encoder layers use F.dropout)."""
    evidence = finding.evidence
    if "Dropout" in (evidence.get("module_type") or ""):
        return True
    first = (evidence.get("sources") or [{}])[0]
    return any("dropout" in call for call in first.get("random_calls", []))
