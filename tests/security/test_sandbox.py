"""evalguard.sandbox: a crash, hang or memory bomb in the child is a SandboxError, never a crash here."""
import pytest

from evalguard.sandbox import (
    Limits,
    SandboxError,
    landlock_abi,
    landlock_status,
    run_isolated,
)


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
