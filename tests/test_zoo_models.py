"""Zoo lane, the remaining families: full pickles of current transformers decoders, a diffusers
UNet2D, PEFT LoRA (merged and unmerged), LSTM/GRU taggers, and planted bugs (forgotten eval,
hard-coded dropout, NaN weight, Dropout -> BatchNorm) found with the module named.

Full pickles of Llama/Mistral/Qwen2/Phi saved with transformers 5.x reference the ``kernels``
package's rebuild helper (transformers requires ``kernels``), which imports a module named in
the file: they are refused, and the message names the routes that work, which are tested too.
A diffusers UNet's full pickle holds a FrozenDict (a dict subclass) that torch's weights-only
loader cannot fill; its message is torch's reason and the route (state_dict + ``--model``).
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.zoo
torch = pytest.importorskip("torch")
nn = torch.nn

DECODER = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 37, "max_position_embeddings": 64}
DECODERS = {"llama": ("LlamaForCausalLM", "LlamaConfig", {"num_key_value_heads": 1}),
            "mistral": ("MistralForCausalLM", "MistralConfig", {"num_key_value_heads": 1}),
            "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {"num_key_value_heads": 1}),
            "phi": ("PhiForCausalLM", "PhiConfig", {})}


def _need(name: str):
    return pytest.importorskip(name, reason=f"{name} is not installed: the zoo lane (.ci/zoo-lane) installs it")


def decoder(family: str):
    transformers = _need("transformers")
    model_class, config_class, extra = DECODERS[family]
    torch.manual_seed(0)
    return getattr(transformers, model_class)(getattr(transformers, config_class)(**DECODER, **extra)).eval()


def llama():
    return decoder("llama")


def unet():
    diffusers = _need("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


def lora(merged: bool):
    peft = _need("peft")
    model = peft.get_peft_model(decoder("llama"), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  lora_dropout=0.1))
    return (model.merge_and_unload() if merged else model).eval()


def lora_merged():
    return lora(True)


def lora_unmerged():
    return lora(False)


def lora_forgot_eval():
    model = lora(False)
    model.train()   # LoRA's dropout stays active
    return model


class Tagger(nn.Module):
    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def lstm():
    torch.manual_seed(0)
    return Tagger(nn.LSTM).eval()


def gru():
    torch.manual_seed(0)
    return Tagger(nn.GRU).eval()


class HardDropout(nn.Module):
    """A planted bug: dropout hard-coded on, whatever the mode."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(16, 32)
        self.noisy = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        hidden = nn.functional.dropout(self.noisy(self.body(x)), p=0.2, training=True)
        return self.head(hidden)


def hard_dropout():
    torch.manual_seed(0)
    return HardDropout().eval()


def nan_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    return model


def dropout_before_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Dropout(0.3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 16, 16))
    return model.eval()


# --- helpers -------------------------------------------------------------------------------------

def factory(name: str) -> str:
    return f"{__file__}:{name}"


def audit(run_cli, *args):
    code, out, err = run_cli("check", *args, "--format", "json")
    return code, (json.loads(out) if out.strip() else {}), err


def assert_clean(code, report, err):
    assert code == 0, err
    assert [f"{f['rule']} {f['message'][:150]}" for f in report["findings"]
            if f["severity"] in ("warning", "error")] == []


# --- pickled decoders ------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(DECODERS))
def test_pickled_decoder_is_refused_with_the_routes_that_work(family, run_cli, tmp_path):
    path = tmp_path / f"{family}.pt"
    torch.save(decoder(family), path)
    code, report, err = audit(run_cli, path, "--trust-module", "transformers")
    assert code == 2
    if "kernels._internals" not in err:
        pytest.skip("this transformers build pickles no kernels helper; the pickle route is the allow-list's")
    assert "save_pretrained(folder)" in err and "--model MODULE:CALLABLE" in err
    assert "Traceback" not in err


def test_pickled_decoder_route_state_dict_and_factory_audits_clean(run_cli, tmp_path):
    path = tmp_path / "llama_state.pt"
    torch.save(decoder("llama").state_dict(), path)
    assert_clean(*audit(run_cli, path, "--model", factory("llama"), "--no-onnx"))


# --- diffusers -------------------------------------------------------------------------------------

def test_unet_full_pickle_message_is_whole_and_names_the_route(run_cli, tmp_path):
    path = tmp_path / "unet.pt"
    torch.save(unet(), path)
    code, _, err = audit(run_cli, path, "--trust-module", "diffusers")
    assert code == 2
    assert "FrozenDict" in err and "--model MODULE:CALLABLE" in err      # torch's reason, then the route
    assert "In PyTorch 2.6" not in err                                   # not torch's preamble


def test_unet_state_dict_with_its_factory_audits_clean(run_cli, tmp_path):
    path = tmp_path / "unet_state.pt"
    torch.save(unet().state_dict(), path)
    code, report, err = audit(run_cli, path, "--model", factory("unet"))
    assert_clean(code, report, err)
    [target] = report["targets"]
    assert "timestep" in target["facts"]["inputs"]["source"]
    assert target["coverage"]["EG401"]["status"] == target["coverage"]["EG104"]["status"] == "passed"


# --- PEFT ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lora_merged", "lora_unmerged"])
def test_lora_model_audits_clean(name, run_cli):
    assert_clean(*audit(run_cli, "--model", factory(name), "--no-onnx"))


def test_lora_left_in_training_mode_names_the_lora_dropout(run_cli):
    code, report, err = audit(run_cli, "--model", factory("lora_forgot_eval"), "--no-onnx")
    assert code == 1, err
    eg101 = [f for f in report["findings"] if f["rule"] == "EG101"]
    assert eg101 and "lora_dropout" in json.dumps(eg101[0]["evidence"])


# --- RNNs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_batch_first_rnn_audits_clean(name, run_cli):
    code, report, err = audit(run_cli, "--model", factory(name), "--input-shape", "3x5x8")
    assert_clean(code, report, err)
    [target] = report["targets"]
    assert target["coverage"]["EG104"]["status"] == target["coverage"]["EG401"]["status"] == "passed"


# --- planted bugs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, rule, module", [
    ("hard_dropout", "EG103", "(root)"),
    ("nan_weight", "EG207", "2"),
    ("dropout_before_batchnorm", "EG201", "1"),
])
def test_planted_bug_is_found_with_its_module(name, rule, module, run_cli):
    code, report, err = audit(run_cli, "--model", factory(name), "--input-shape",
                              "2x3x16x16" if name == "dropout_before_batchnorm" else "4x16", "--no-onnx")
    assert code == (0 if rule == "EG201" else 1), err     # EG201 is a warning: it does not fail the run
    found = [f for f in report["findings"] if f["rule"] == rule]
    assert found, [f["rule"] for f in report["findings"]]
    location = found[0]["location"]["module"] or "(root)"
    evidence = json.dumps(found[0]["evidence"])
    assert location == module or f'"{module}"' in evidence
