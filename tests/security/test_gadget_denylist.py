"""One test per deny-list entry: trusting the package never admits the gadget."""
import importlib

import pytest

from evalguard.loading.allowlist import UNSAFE, AllowList
from evalguard.loading.gadgets import DENIED
from evalguard.loading.pickle_scan import GlobalRef


@pytest.mark.parametrize("full", sorted(DENIED))
def test_denied_even_when_its_package_is_trusted(full):
    module, _, name = full.rpartition(".")
    root = module.split(".")[0]
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        pytest.skip(f"{full} is not importable here")
    decision = AllowList((root,)).decide(GlobalRef(module, name))
    assert decision.status == UNSAFE, decision
    assert "never allowed" in decision.reason or "not a class" in decision.reason
