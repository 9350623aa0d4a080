"""``--executor ray``: every model target is a Ray task on a local Ray instance.

The tests that start Ray skip where it is not installed (it is the optional extra
``evalguard[ray]``, not part of the test extra); the flag errors run everywhere.
"""
import json
import sys

import pytest
from test_execution import COMMON, _findings, _target, models  # noqa: F401 - models is a fixture

from evalguard.errors import UsageError
from evalguard.execution import build_execution


def test_ray_flag_errors():
    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        build_execution(ray_address="ray://head:10001")
    with pytest.raises(UsageError, match="drop --no-isolate"):
        build_execution(isolate=False, executor="ray")
    assert build_execution(executor="ray").isolated(1) is True


def test_missing_ray_is_one_usage_error_line(run_cli, models, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    code, _, err = run_cli("check", "good.pt", *COMMON, "--executor", "ray")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "pip install 'evalguard[ray]'" in line


def test_ray_tasks_report_like_local_workers_and_contain_crashes(run_cli, models):  # noqa: F811
    pytest.importorskip("ray", reason="Ray is the optional extra evalguard[ray]; not installed here")
    code, out, _ = run_cli("check", "good.pt", *COMMON, "--no-isolate")
    alone = json.loads(out)
    assert code == 1 and _findings(alone, "good.pt")

    code, out, err = run_cli("check", "good.pt", "abort.pt", "hang.pt", *COMMON, "--executor", "ray",
                             "--timeout", "45")
    report = json.loads(out)             # stdout holds the report only: Ray's own messages go to stderr
    assert code == 2
    assert report["run"]["execution"] == {"isolated": True, "jobs": 1, "executor": "ray"}
    assert _findings(report, "good.pt") == _findings(alone, "good.pt")
    assert _target(report, "good.pt")["coverage"] == _target(alone, "good.pt")["coverage"]
    aborted = _target(report, "abort.pt")
    assert aborted["status"] == "error" and "the Ray task failed" in aborted["detail"]
    hung = _target(report, "hang.pt")
    assert hung["status"] == "error" and "timed out after 45s" in hung["detail"]
    assert {c["status"] for c in hung["coverage"].values()} == {"skipped"}
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert any("abort.pt" in line for line in errors) and any("hang.pt" in line for line in errors)


def test_each_task_asks_for_its_own_resources():
    from evalguard.execution.ray_tasks import RayExecutor
    from evalguard.subject import AuditOptions

    execution = build_execution(executor="ray", jobs=1, memory_limit="2G")
    resources = RayExecutor(AuditOptions(device="cuda"), {}, execution, progress=None)._resources()
    assert resources["memory"] == 2 << 30 and resources["num_gpus"] == 1 and resources["max_retries"] == 0
    assert resources["num_cpus"] >= 1
    assert "num_gpus" not in RayExecutor(AuditOptions(), {}, build_execution(executor="ray"), None)._resources()
