"""Zoo lane, int8: models made by ``torch.ao.quantization.quantize_dynamic`` (an MLP, an LSTM, a
tiny BERT), audited through the factory (``--model``), a quantized state_dict with a factory
that quantizes the same way, and the API. Clean ones give no warning or error: the paired passes
run, EG104 judges rows with the int8 budget (dynamic quantization takes each activation's scale
from the whole batch), ONNX parity is skipped with the reason (torch's exporters cannot export
dynamic quantization). A planted batch-statistics bug is still EG104 under that budget.

Full pickles (``torch.save(model)``) of quantized models load through the pickle allow-list's
torch.ao classes and are audited in an isolated worker.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.zoo
torch = pytest.importorskip("torch")


def quantize(model):
    return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)


def mlp():
    torch.manual_seed(0)
    return quantize(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)))


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def lstm():
    torch.manual_seed(0)
    return quantize(Tagger())


def bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=64)
    return quantize(transformers.BertForSequenceClassification(config))


def mlp_batch_statistics():
    """A planted bug: a BatchNorm without running statistics (it normalises with the batch's own
    statistics, also in eval mode) between quantized layers."""
    torch.manual_seed(0)
    return quantize(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32, track_running_stats=False),
                                        torch.nn.ReLU(), torch.nn.Linear(32, 4)))


def factory(name: str) -> str:
    return f"{__file__}:{name}"


def audit(run_cli, *args):
    code, out, err = run_cli("check", *args, "--format", "json")
    return code, (json.loads(out) if out.strip() else {}), err


def assert_clean(code, report, err):
    assert code == 0, err
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
    [target] = report["targets"]
    coverage = target["coverage"]
    assert coverage["EG103"]["status"] == coverage["EG104"]["status"] == "passed"
    assert "torch's ONNX exporters cannot export torch.ao dynamic quantization" in coverage["EG401"]["reason"]
    assert any("int8" in note for note in target["facts"]["eval_mode"]["paired"]["notes"])
    return target


@pytest.mark.parametrize("name, extra", [("mlp", ()), ("lstm", ("--input-shape", "3x5x8")), ("bert", ())])
def test_quantized_model_from_a_factory_audits_clean(name, extra, run_cli):
    assert_clean(*audit(run_cli, "--model", factory(name), *extra))


def test_quantized_state_dict_loads_into_a_factory_that_quantizes(run_cli, tmp_path):
    path = tmp_path / "int8.pt"
    torch.save(mlp().state_dict(), path)
    target = assert_clean(*audit(run_cli, path, "--model", factory("mlp")))
    weights = target["facts"]["load"]["weights"]
    assert weights["loaded"] == weights["expected"] == 8          # the packed-params keys load
    code, _, err = audit(run_cli, path)
    assert code == 2 and "is a state_dict; pass --model" in err    # recognised, not "a dict with no model"


def test_quantized_model_through_the_api():
    import evalguard

    report = evalguard.audit(mlp(), torch.randn(4, 16))
    assert [f for f in report.findings if f.severity.value in ("warning", "error")] == []


def test_batch_statistics_bug_in_a_quantized_model_is_still_eg104(run_cli):
    code, report, err = audit(run_cli, "--model", factory("mlp_batch_statistics"), "--no-onnx")
    assert code == 1, err
    [finding] = [f for f in report["findings"] if f["rule"] == "EG104"]
    assert finding["location"]["module"] == "1"


@pytest.mark.parametrize("name", ["mlp", "bert"])
def test_quantized_full_pickle_audits_clean(name, run_cli, tmp_path):
    path = tmp_path / f"{name}.pt"
    torch.save(globals()[name](), path)
    code, report, err = audit(run_cli, path, "--trust-module", "transformers") if name == "bert" \
        else audit(run_cli, path)
    assert code == 0, err
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
