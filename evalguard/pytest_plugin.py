"""pytest plugin (entry point ``pytest11``): the ``evalguard`` fixture.

    def test_model_ready(evalguard):
        evalguard.assert_safe(build_model(), torch.randn(2, 3, 32, 32))

Importing this module must stay cheap: pytest loads it in every project that has
evalguard installed, so torch is only imported when the fixture is used.
"""
from __future__ import annotations

import pytest


class EvalguardFixture:
    """Thin handle on the public API, with per-test defaults."""

    def __init__(self, **defaults):
        self.defaults = defaults

    def audit(self, model, example_inputs, **options):
        from evalguard.api import audit

        return audit(model, example_inputs, **{**self.defaults, **options})

    def assert_safe(self, model, example_inputs, **options):
        __tracebackhide__ = True   # a failing test shows the user's line, not evalguard's frames
        from evalguard.testing import assert_inference_safe

        return assert_inference_safe(model, example_inputs, **{**self.defaults, **options})


@pytest.fixture
def evalguard():
    """Audit live models from a test: ``evalguard.assert_safe(model, inputs)``."""
    return EvalguardFixture()
