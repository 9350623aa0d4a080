"""The paired-forward checks on real architectures built by transformers from tiny configs
(random weights, nothing downloaded)."""
from __future__ import annotations

import pytest
import torch
from test_eval_mode import _check

from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel

ALL = frozenset({"EG101", "EG102", "EG103", "EG104", "EG107"})


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def token_inputs():
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0  # padding in the second sample
    return {"input_ids": ids, "attention_mask": mask}


def pixels():
    return {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


def bert():
    return transformers.BertModel(transformers.BertConfig(vocab_size=100, max_position_embeddings=32, **SMALL))


def audit(model, inputs):
    subject = AuditSubject(path="m", kind="factory", model=model,
                           inputs_resolver=lambda: ExampleInputs(kwargs=inputs, source="test"))
    return _check(subject, AuditOptions(selected=ALL))


def test_bert_from_config_is_in_training_mode_and_nondeterministic():
    torch.manual_seed(0)
    model = bert()
    assert model.training  # the constructor, unlike from_pretrained, does not call eval()
    findings, subject = audit(model, token_inputs())
    assert sorted(f.rule for f in findings) == ["EG101", "EG102"]
    eg101 = next(f for f in findings if f.rule == "EG101")
    assert "Dropout" in eg101.evidence["types"]
    eg102 = next(f for f in findings if f.rule == "EG102")
    assert eg102.location.module == "embeddings.dropout"
    assert eg102.evidence["module_type"] == "Dropout"
    assert eg102.evidence["output"].startswith("output.")
    assert model.training  # the audit worked on a copy


def test_bert_after_eval_is_clean():
    torch.manual_seed(0)
    findings, subject = audit(bert().eval(), token_inputs())
    assert findings == []
    assert subject.paired.passes == 3  # served == eval: pass, same-input pass, batch probe


@pytest.mark.parametrize("name", ["gpt2", "vit", "resnet"])
def test_other_architectures_in_eval_mode_are_clean(name):
    torch.manual_seed(0)
    if name == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=32)
        model, inputs = transformers.GPT2Model(config), token_inputs()
    elif name == "vit":
        config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_dropout_prob=0.1,
                                        attention_probs_dropout_prob=0.1, **SMALL)
        model, inputs = transformers.ViTModel(config), pixels()
    else:
        config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                           layer_type="basic")
        model, inputs = transformers.ResNetModel(config), pixels()
    findings, subject = audit(model.eval(), inputs)
    assert findings == []
    assert subject.facts.behaviour_differs > 0  # it has Dropout/BatchNorm, all in eval
    assert subject.paired.batch_probe is not None  # EG104 really ran
