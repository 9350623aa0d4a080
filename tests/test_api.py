"""The public Python API and the pytest plugin, used only through their public names."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import evalguard
from evalguard.testing import assert_inference_safe


def served_without_eval():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(16, 4))
    return model  # nn.Module starts in training mode


def snapshot(model):
    return model.training, [m.training for m in model.modules()], {k: v.clone() for k, v in model.state_dict().items()}


def test_audit_catches_a_training_mode_model_and_leaves_it_untouched():
    model = served_without_eval()
    before = snapshot(model)
    report = evalguard.audit(model, torch.randn(4, 8))
    rules = {f.rule for f in report.findings}
    assert {"EG101", "EG102"} <= rules
    assert not report.ok()
    after = snapshot(model)
    assert before[0] == after[0] and before[1] == after[1]
    assert before[2].keys() == after[2].keys()
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])  # BN running stats included


def test_audit_passes_an_eval_mode_model():
    report = evalguard.audit(served_without_eval().eval(), torch.randn(4, 8))
    assert report.ok(), [(f.rule, f.message) for f in report.findings]
    assert [t.status for t in report.targets] == ["audited"]


def test_findings_expose_rule_severity_message_location_evidence():
    report = evalguard.audit(served_without_eval(), (torch.randn(4, 8),), select=["EG101"])
    [finding] = report.findings
    assert finding.rule == "EG101" and finding.severity is evalguard.Severity.ERROR
    assert finding.message and finding.location.path == "Sequential" and isinstance(finding.evidence, dict)


def test_report_renders_json():
    import json

    data = json.loads(evalguard.audit(served_without_eval(), torch.randn(4, 8), select=["EG101"]).to_json())
    assert [f["rule"] for f in data["findings"]] == ["EG101"]


def test_assert_inference_safe_lists_findings():
    with pytest.raises(AssertionError) as info:
        assert_inference_safe(served_without_eval(), torch.randn(4, 8))
    text = str(info.value)
    assert "EG101" in text and "model-in-training-mode" in text
    assert_inference_safe(served_without_eval().eval(), torch.randn(4, 8))


def test_bad_example_inputs_type():
    with pytest.raises(TypeError, match="example_inputs"):
        evalguard.audit(served_without_eval(), "not a tensor")


def test_pytest_plugin_fixture(tmp_path):
    test_file = tmp_path / "test_user_model.py"
    test_file.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build(eval_mode):
            model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
            return model.eval() if eval_mode else model

        def test_ready(evalguard):
            evalguard.assert_safe(build(True), torch.randn(2, 8))

        def test_forgot_eval(evalguard):
            evalguard.assert_safe(build(False), torch.randn(2, 8))
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout[-3000:]
    assert "EG101" in proc.stdout
    # the failure points at the user's assert_safe call; evalguard's own frames are hidden
    assert "evalguard.assert_safe(build(False)" in proc.stdout
    assert "evalguard/testing.py" not in proc.stdout and "evalguard/pytest_plugin.py" not in proc.stdout


@pytest.mark.parametrize("select", [["EG101"], ["EG10"], ["EG1"], ["model-in-training-mode"], "EG101"])
def test_audit_select_takes_what_the_cli_takes(select):
    report = evalguard.audit(served_without_eval(), torch.randn(4, 8), select=select, ignore=["EG102", "EG103",
                                                                                            "EG104", "EG107"])
    assert {f.rule for f in report.findings} == {"EG101"}


def test_audit_severity_takes_rule_names_like_the_config():
    report = evalguard.audit(served_without_eval(), torch.randn(4, 8), select=["EG101"],
                             severity={"model-in-training-mode": "info"})
    assert [f.severity for f in report.findings] == [evalguard.Severity.INFO]


@pytest.mark.parametrize("kwargs, named", [
    ({"select": ["EG1O1"]}, "EG1O1"),                       # a typo: letter O for zero
    ({"ignore": ["model-in-trainig-mode"]}, "model-in-trainig-mode"),
    ({"severity": {"EG1011": "info"}}, "EG1011"),
    ({"severity": {"model-in-training-mode": "loud"}}, "loud"),
])
def test_audit_rejects_typos_with_a_clear_error(kwargs, named):
    from evalguard.errors import UsageError

    with pytest.raises(UsageError, match=named):
        evalguard.audit(served_without_eval(), torch.randn(4, 8), **kwargs)
