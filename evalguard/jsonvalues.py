"""Plain JSON values from evalguard's typed results: the one place that decides how a value
JSON cannot hold is written (a non-finite float becomes "nan", "inf" or "-inf"; tuples become
lists; anything else its str()). Imports nothing of evalguard, so facts and reporters can share it.
"""
from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON values only: non-finite floats become strings, tuples lists, others str()."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)
