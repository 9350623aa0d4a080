"""evalguard: audit a PyTorch model for the bugs that make inference silently wrong.

Public API (imported lazily so `import evalguard` stays cheap)::

    report = evalguard.audit(model, example_inputs)
    report.ok(), report.findings, report.to_json(), report.to_html("report.html")
    evalguard.testing.assert_inference_safe(model, example_inputs)
"""

from evalguard._version import __version__

__all__ = ["audit", "Report", "Finding", "Severity", "Location", "__version__"]


def __getattr__(name):
    if name == "audit":
        from evalguard.api import audit

        return audit
    if name in ("Report", "Finding", "Severity", "Location"):
        from evalguard import findings

        return getattr(findings, name)
    raise AttributeError(f"module 'evalguard' has no attribute {name!r}")
