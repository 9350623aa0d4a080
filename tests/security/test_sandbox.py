"""evalguard.sandbox: a crash, hang or memory bomb in the child is a SandboxError, never a crash here.

Every test runs with both kinds of child: a fork of this process (Linux's default) and a fresh
interpreter (EVALGUARD_SANDBOX_SPAWN=1, the default elsewhere)."""
import platform

import pytest

from evalguard.sandbox import (
    Limits,
    SandboxError,
    forks,
    landlock_abi,
    landlock_status,
    run_isolated,
)


@pytest.fixture(autouse=True, params=["fork", "spawn"])
def child_kind(request, monkeypatch):
    if request.param == "fork" and platform.system() != "Linux":
        pytest.skip("the sandbox forks only on Linux")
    monkeypatch.setenv("EVALGUARD_SANDBOX_SPAWN", "1" if request.param == "spawn" else "0")
    assert forks() == (request.param == "fork")
    return request.param


def test_the_child_inherits_none_of_the_parents_files(tmp_path):
    """A forked child must not be able to write to what the audit has open (reports, pipes)."""
    with open(tmp_path / "report.json", "w") as handle:
        fds = run_isolated("sandbox_targets:open_fds")
        assert handle.fileno() not in fds
    extra = set(fds) - {0, 1, 2}
    assert 1 <= len(extra) <= 2   # listdir's own descriptor, and the result pipe of a forked child


def test_result_comes_back_as_json():
    assert run_isolated("sandbox_targets:double", 21) == 42


def test_segfault_is_a_clean_error():
    with pytest.raises(SandboxError) as info:
        run_isolated("sandbox_targets:crash")
    assert info.value.reason == "signal" and "segmentation fault" in str(info.value)


def test_hang_is_killed_at_the_wall_clock_limit():
    with pytest.raises(SandboxError) as info:
        run_isolated("sandbox_targets:hang", limits=Limits(wall_seconds=2))
    assert info.value.reason == "timeout"


def test_memory_bomb_hits_the_address_space_limit():
    with pytest.raises(SandboxError) as info:
        run_isolated("sandbox_targets:allocate", limits=Limits(memory_bytes=2 << 30))
    assert info.value.reason == "memory"


def test_writes_outside_the_scratch_folder_are_blocked_where_landlock_exists(tmp_path):
    if landlock_abi() <= 0:
        pytest.skip(landlock_status())
    target = tmp_path / "marker"
    with pytest.raises(SandboxError) as info:
        run_isolated("sandbox_targets:write", str(target))
    assert "Permission" in str(info.value)
    assert not target.exists()


def test_landlock_status_is_reported():
    assert "Landlock" in landlock_status() or "unavailable" in landlock_status()
