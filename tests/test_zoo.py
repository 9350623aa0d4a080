"""The zoo: transformers families built from tiny configs (random weights, nothing downloaded),
each saved with ``save_pretrained`` and audited as a folder with no input flags. Every family
must audit (no exit 2) and give no warning or error: example inputs come from the model class
and config (``evalguard.loading.hf_inputs``), for text encoders, decoders, encoder-decoders,
vision, audio and multimodal models.

The ONNX export is left out of the sweep to keep CI fast (it is the slowest step, a few seconds
a family); the decoders whose export needs an attention mask are exported in their own test.
"""
from __future__ import annotations

import json
import time

import pytest

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel

TEXT = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 37, "max_position_embeddings": 64}
DECODER = {**TEXT, "num_key_value_heads": 1}   # grouped-query attention
SEQ2SEQ = {"vocab_size": 99, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
           "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 37,
           "decoder_ffn_dim": 37, "max_position_embeddings": 64}
VIT = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 37, "num_labels": 3}
CONV = {"hidden_sizes": [8, 16], "depths": [1, 1], "num_labels": 3}


def _c(name: str, **kwargs):
    return lambda: getattr(transformers, name)(**kwargs)


#: family -> (architecture class, config factory)
FAMILIES = {
    # text encoders
    "bert": ("BertForSequenceClassification", _c("BertConfig", **TEXT)),
    "roberta": ("RobertaModel", _c("RobertaConfig", **TEXT)),
    "xlm-roberta": ("XLMRobertaForMaskedLM", _c("XLMRobertaConfig", **TEXT)),
    "distilbert": ("DistilBertModel", _c("DistilBertConfig", vocab_size=99, dim=32, n_layers=2, n_heads=2,
                                         hidden_dim=37, max_position_embeddings=64)),
    "albert": ("AlbertModel", _c("AlbertConfig", embedding_size=16, **TEXT)),
    "electra": ("ElectraForSequenceClassification", _c("ElectraConfig", embedding_size=16, **TEXT)),
    "deberta-v2": ("DebertaV2Model", _c("DebertaV2Config", **TEXT)),
    "mpnet": ("MPNetModel", _c("MPNetConfig", **TEXT)),
    # decoders
    "gpt2": ("GPT2LMHeadModel", _c("GPT2Config", vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64)),
    "llama": ("LlamaForCausalLM", _c("LlamaConfig", **DECODER)),
    "mistral": ("MistralForCausalLM", _c("MistralConfig", **DECODER)),
    "qwen2": ("Qwen2ForCausalLM", _c("Qwen2Config", **DECODER)),
    "gemma": ("GemmaForCausalLM", _c("GemmaConfig", head_dim=16, **DECODER)),
    "phi": ("PhiForCausalLM", _c("PhiConfig", **TEXT)),
    "gpt-neox": ("GPTNeoXForCausalLM", _c("GPTNeoXConfig", **TEXT)),
    "opt": ("OPTForCausalLM", _c("OPTConfig", vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, ffn_dim=37, max_position_embeddings=64,
                                 word_embed_proj_dim=32)),
    "bloom": ("BloomForCausalLM", _c("BloomConfig", vocab_size=99, hidden_size=32, n_layer=2, n_head=2)),
    # encoder-decoders
    "t5": ("T5ForConditionalGeneration", _c("T5Config", vocab_size=99, d_model=32, d_kv=8, d_ff=37,
                                            num_layers=2, num_heads=2)),
    "bart": ("BartForConditionalGeneration", _c("BartConfig", **SEQ2SEQ)),
    "marian": ("MarianMTModel", _c("MarianConfig", decoder_start_token_id=3, pad_token_id=3, **SEQ2SEQ)),
    "pegasus": ("PegasusForConditionalGeneration", _c("PegasusConfig", **SEQ2SEQ)),
    # vision
    "vit": ("ViTForImageClassification", _c("ViTConfig", **VIT)),
    "deit": ("DeiTForImageClassification", _c("DeiTConfig", **VIT)),
    "beit": ("BeitForImageClassification", _c("BeitConfig", vocab_size=99, **VIT)),
    "dinov2": ("Dinov2Model", _c("Dinov2Config", **VIT)),
    "swin": ("SwinForImageClassification", _c("SwinConfig", image_size=32, patch_size=4, embed_dim=16,
                                             depths=[1, 1], num_heads=[2, 2], window_size=4, num_labels=3)),
    "convnext": ("ConvNextForImageClassification", _c("ConvNextConfig", num_stages=2, **CONV)),
    "resnet": ("ResNetForImageClassification", _c("ResNetConfig", embedding_size=8, **CONV)),
    "regnet": ("RegNetForImageClassification", _c("RegNetConfig", embedding_size=8, groups_width=8, **CONV)),
    "mobilenet-v2": ("MobileNetV2ForImageClassification", _c("MobileNetV2Config", image_size=32,
                                                             depth_multiplier=0.25, num_labels=3)),
    # audio
    "whisper": ("WhisperForConditionalGeneration", _c("WhisperConfig", vocab_size=99, d_model=32, encoder_layers=2,
                                                      decoder_layers=2, encoder_attention_heads=2,
                                                      decoder_attention_heads=2, encoder_ffn_dim=37,
                                                      decoder_ffn_dim=37, num_mel_bins=16,
                                                      max_source_positions=30, max_target_positions=32,
                                                      pad_token_id=1, bos_token_id=2, eos_token_id=2,
                                                      decoder_start_token_id=3, suppress_tokens=[],
                                                      begin_suppress_tokens=[])),
    "wav2vec2": ("Wav2Vec2ForCTC", _c("Wav2Vec2Config", vocab_size=32, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=37, conv_dim=(16, 16),
                                      conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2)),
    "hubert": ("HubertModel", _c("HubertConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=37, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)),
    # multimodal
    "clip": ("CLIPModel", _c("CLIPConfig", projection_dim=16,
                             text_config={"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2,
                                          "num_attention_heads": 2, "intermediate_size": 37,
                                          "max_position_embeddings": 64},
                             vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                                            "num_hidden_layers": 2, "num_attention_heads": 2,
                                            "intermediate_size": 37})),
    "siglip": ("SiglipModel", _c("SiglipConfig",
                                 text_config={"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2,
                                              "num_attention_heads": 2, "intermediate_size": 37,
                                              "max_position_embeddings": 64},
                                 vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                                                "num_hidden_layers": 2, "num_attention_heads": 2,
                                                "intermediate_size": 37})),
}


def save_family(family: str, folder):
    """Build the family with random weights and save it as a trained model would be: BatchNorm
    statistics estimated by a few training-mode passes (else EG205 rightly says they are initial)."""
    import torch

    from evalguard.loading.hf_inputs import transformers_inputs

    architecture, config = FAMILIES[family]
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config())
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model.train()
        with torch.no_grad():
            for seed in range(3):
                model(**transformers_inputs(model, seed=100 + seed).kwargs)
    model.eval()
    model.save_pretrained(folder)
    return model


def audit_folder(run_cli, folder, *extra) -> tuple[int, dict, str]:
    code, out, err = run_cli("check", folder, "--format", "json", *extra)
    return code, (json.loads(out) if out.strip() else {}), err


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_audits_clean_with_no_input_flags(family, tmp_path, run_cli):
    folder = tmp_path / family
    save_family(family, folder)
    started = time.perf_counter()
    code, report, err = audit_folder(run_cli, folder, "--no-onnx")
    elapsed = time.perf_counter() - started
    assert code != 2, err
    [target] = report["targets"]
    assert target["status"] == "audited", target
    loud = [f"{f['rule']} {f['severity']}: {f['message']}" for f in report["findings"]
            if f["severity"] in ("warning", "error")]
    assert loud == []
    assert "forward signature and config" in target["facts"]["inputs"]["source"]   # not guessed from a layer
    TIMES[family] = elapsed


#: family -> seconds for the audit (printed at the end with -s; bench/RESULTS.md keeps a copy)
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_times():
    yield
    if TIMES:
        print("\nzoo audit times (s, --no-onnx):", ", ".join(f"{k} {v:.2f}" for k, v in sorted(TIMES.items())))


def test_zoo_covers_every_kind_of_family():
    architectures = {name: arch for name, (arch, _) in FAMILIES.items()}
    assert len(architectures) >= 25
    assert {"t5", "bart", "whisper"} <= set(architectures)           # encoder-decoders
    assert {"wav2vec2", "hubert", "whisper"} <= set(architectures)   # audio
    assert {"clip", "siglip"} <= set(architectures)                  # text + pixels


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_gqa_decoder_exports_with_an_attention_mask(family, tmp_path, run_cli):
    folder = tmp_path / family
    save_family(family, folder)
    code, report, err = audit_folder(run_cli, folder, "--select", "EG4")
    assert code != 2, err
    [target] = report["targets"]
    assert target["status"] == "audited", target
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
    assert any(line.startswith("attention_mask:") for line in target["facts"]["inputs"]["inputs"])
    onnx = target["facts"]["onnx"]
    # The first exporter succeeds: no fallback to the slow one for want of an attention mask.
    assert [tried["error"] for tried in onnx["exporters_tried"]] == [None]
    assert onnx["parity"] and all(entry["passed"] for entry in onnx["parity"])
