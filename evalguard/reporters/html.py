"""The HTML audit report: one self-contained file an ML lead opens before approving a deploy.

This module only turns a Report into plain view data (strings, numbers, lists); all markup,
including the SVG pictures, lives in ``templates/report.html.j2`` (autoescaped, strict
undefined). Nothing in the page loads anything: no fonts, no scripts, no external links, and a
Content-Security-Policy meta tag makes the browser refuse any request that slips in.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any

from evalguard import catalogue as rule_catalogue
from evalguard.catalogue import Rule
from evalguard.facts import worst_abs_error
from evalguard.findings import Finding, Report, Severity, TargetResult
from evalguard.reporters._common import SEVERITIES, plural, verdict
from evalguard.reporters.json_report import jsonable

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

#: The mode table is folded by parent module, at the deepest level that gives at most this many groups.
MODE_GROUPS = 24
#: Layer types drawn in the model summary (the rest are counted together).
LAYER_TYPES_SHOWN = 8
LAYER_BAR = 160
EVIDENCE_VISIBLE = 8
#: A root-cause card lists its findings open up to this many; more fold behind the module list.
MEMBERS_OPEN = 8
LONG_VALUE = 100
_SEVERITY_LABELS = {Severity.ERROR: "Errors", Severity.WARNING: "Warnings", Severity.INFO: "Info"}
_VERSION_ORDER = ("evalguard", "torch", "onnx", "onnxruntime", "python")


# ---------------------------------------------------------------- formatting helpers

def num(value: Any) -> str:
    """Short, precise numbers: 0.41, 3.2e-06, 1200; strings ("nan") pass through."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def text_value(value: Any) -> str:
    value = jsonable(value)
    if isinstance(value, float):
        return num(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(_nested(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_nested(v)}" for k, v in value.items())
    return str(value)


def _nested(value: Any) -> str:
    """A value inside a list or mapping: nested lists keep brackets; a nested record reads as
    ``key value`` pairs (never raw ``{key: value}`` or JSON text)."""
    if isinstance(value, list):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    if isinstance(value, dict):
        return " ".join(f"{k} {_nested(v)}" for k, v in value.items())
    return text_value(value)


def percent(fraction: Any) -> str:
    """0.29 -> "29%", 1.0 -> "100%", 0.00012 -> "0.012%"; never "1e+02%"."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        return num(fraction)
    value = 100 * fraction
    if value == 0 or value >= 10:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%".replace(".0%", "%")
    return "<0.01%" if value < 0.01 else f"{value:.2g}%"


_FENCE = re.compile(r"```[\w-]*\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r"(`[^`]+`|(?<![\w*])\*[^*\s`][^*`]*(?<!\s)\*(?![\w*]))")


def _inline(text: str) -> list[dict]:
    """`code` and *emphasis* spans of one paragraph."""
    spans = []
    for part in _INLINE.split(" ".join(text.split())):
        if not part:
            continue
        code = len(part) > 2 and part[0] == part[-1] == "`"
        em = len(part) > 2 and part[0] == part[-1] == "*"
        spans.append({"code": code, "em": em, "block": False, "text": part[1:-1] if code or em else part})
    return spans


def segments(text: str) -> list[list[dict]]:
    """Paragraphs of text with `code` and *emphasis* spans marked; a fenced code block
    (```toml ... ```) is a paragraph of its own, kept line by line, without its language tag."""
    paragraphs = []
    position = 0
    stripped = text.strip()
    for fence in _FENCE.finditer(stripped):
        paragraphs.extend(_paragraphs(stripped[position:fence.start()]))
        paragraphs.append([{"code": True, "em": False, "block": True, "text": fence.group(1).rstrip("\n")}])
        position = fence.end()
    paragraphs.extend(_paragraphs(stripped[position:]))
    return paragraphs


def _paragraphs(text: str) -> list[list[dict]]:
    return [spans for block in re.split(r"\n\s*\n", text.strip()) if (spans := _inline(block))]


def display_class(name: str, target_path: str) -> str:
    """A class from a ``--model file.py:fn`` factory is named after the file, not after the
    module name evalguard imported it under (``_evalguard_factory_<hash>``)."""
    internal = re.match(r"_evalguard_factory_\d+\.(.+)", name)
    if internal is None:
        return name
    file = target_path.rsplit(":", 1)[0] if target_path.count(":") else target_path
    return f"{file}:{internal.group(1)}"


# ---------------------------------------------------------------- pictures (geometry only)

def histogram(buckets: list, atol: Any) -> dict | None:
    """Geometry of an error histogram with labelled axes: x = |PyTorch − ONNX| per element in
    decades, y = element count, log-scaled so a few large errors stay visible."""
    bars = []
    for bucket in buckets or []:
        if isinstance(bucket, dict) and "label" in bucket:          # {"label": ..., "count": ...}
            bars.append((str(bucket["label"]), int(bucket.get("count") or 0)))
        elif isinstance(bucket, (list, tuple)) and len(bucket) == 2:  # [label, count]
            bars.append((str(bucket[0]), int(bucket[1] or 0)))
    if not bars:
        return None
    left, plot_w, plot_h, gap = 24, 150, 40, 2
    bar_w = (plot_w - gap * (len(bars) - 1)) / len(bars)
    peak = max(count for _, count in bars)
    top = math.log1p(peak) or 1.0
    shapes = []
    for i, (label, count) in enumerate(bars):
        h = 0.0 if count == 0 else max(2.0, (plot_h - 2) * math.log1p(count) / top)
        shapes.append({"x": round(left + i * (bar_w + gap), 2), "y": round(4 + plot_h - h, 2), "w": round(bar_w, 2),
                       "h": round(h, 2), "label": label, "count": count,
                       "over": count > 0 and _beyond(label, atol)})
    return {"width": left + plot_w + 4, "height": plot_h + 34, "left": left, "plot_w": plot_w,
            "base": 4 + plot_h, "mid": left + plot_w / 2, "bars": shapes, "peak": peak,
            "first": bars[0][0], "last": bars[-1][0]}


#: Geometry of the per-output error chart: decades from 10^PARITY_LOW to at least 10^0.
PARITY_LOW = -10
PARITY_LABEL_W = 170
PARITY_PLOT_W = 440


def parity_chart(entries: list) -> dict | None:
    """Per-comparison max |PyTorch − ONNX| as horizontal bars on a log axis, with each
    comparison's atol marked: how far inside (or outside) its tolerance every output is."""
    rows = [e for e in entries or [] if isinstance(e, dict) and _finite(e.get("max_abs_diff"))]
    if not rows:
        return None
    high = max([0] + [math.ceil(math.log10(float(e["max_abs_diff"]))) for e in rows if float(e["max_abs_diff"]) > 0])
    span = high - PARITY_LOW

    def x(value: float) -> float:
        exponent = min(max(math.log10(value), PARITY_LOW), high) if value > 0 else PARITY_LOW
        return round(PARITY_LABEL_W + PARITY_PLOT_W * (exponent - PARITY_LOW) / span, 1)

    bars, row_h = [], 22
    for i, entry in enumerate(rows):
        worst = float(entry["max_abs_diff"])
        label = str(entry.get("output", "?"))
        if isinstance(entry.get("batch"), int):
            label += f" (batch {entry['batch']})"
        atol = entry.get("atol")
        bars.append({"label": label, "y": 8 + i * row_h, "w": round(x(worst) - PARITY_LABEL_W, 1),
                     "value": "0 (identical)" if worst == 0 else num(worst),
                     "atol_x": x(float(atol)) if _finite(atol) and float(atol) > 0 else None,
                     "atol": num(atol), "failed": entry.get("passed") is False})
    height = 8 + len(rows) * row_h
    ticks = [{"x": x(10.0 ** k), "label": "1" if k == 0 else f"1e{k}"} for k in range(PARITY_LOW, high + 1, 2)]
    return {"bars": bars, "ticks": ticks, "left": PARITY_LABEL_W, "right": PARITY_LABEL_W + PARITY_PLOT_W,
            "plot_h": height, "height": height + 40, "width": PARITY_LABEL_W + PARITY_PLOT_W + 90,
            "mid": PARITY_LABEL_W + PARITY_PLOT_W / 2}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _beyond(label: str, atol: Any) -> bool:
    """True when every error in the bucket exceeds atol ("1e-3..1e-2" with atol 1e-5)."""
    if "nan" in label.lower() or "inf" in label.lower():
        return True
    if not isinstance(atol, (int, float)) or label.lstrip().startswith(("<", "≤")):
        return False
    found = re.findall(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", label)
    return bool(found) and float(found[0]) >= atol


def severity_bar(sensitive: int, training: int) -> dict:
    width = 240
    train_w = 0 if not sensitive else round(width * training / sensitive, 1)
    return {"width": width, "height": 10, "train_w": train_w, "eval_w": round(width - train_w, 1)}


# ---------------------------------------------------------------- view data

def _tree_rows(rows: list[dict], present: set[str]) -> list[dict]:
    """Mode-table rows with their nearest ancestor that is in ``present`` as ``parent``."""
    out = []
    for row in rows:
        name = str(row.get("module") or "")
        if name not in present:
            continue
        parts = name.split(".") if name else []
        parent = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)
                       if ".".join(parts[:i]) in present), "")
        training = bool(row["training"]) if "training" in row else row.get("mode") == "train"
        differs, allowed = bool(row.get("behaviour_differs")), bool(row.get("allowed"))
        out.append({"module": name or "(model)", "parent": parent, "depth": len(parts),
                    "type": str(row.get("type", "")), "training": training, "differs": differs,
                    "allowed": allowed, "flagged": training and differs and not allowed,
                    "reason": str(row.get("reason") or "")})
    return out


def _mode_view(rows: list, omitted: Any = 0) -> dict | None:
    """The mode table folded by parent module: one line per parent (open when it holds a
    module left in training mode), its layers inside."""
    clean = [r for r in rows or [] if isinstance(r, dict) and "module" in r]
    if not clean:
        return None
    names = {str(r.get("module") or "") for r in clean}
    view_rows = _tree_rows(clean, names)
    types = {r["module"] if r["module"] != "(model)" else "": r["type"] for r in view_rows}
    parents = {r["parent"] for r in view_rows if r["depth"]}
    leaves = [r for r in view_rows if r["module"] not in parents and not (r["module"] == "(model)" and parents)]
    depth = _group_depth(leaves)
    groups: dict[str, list[dict]] = {}
    for row in leaves:
        key = ".".join(row["parent"].split(".")[:depth]) if row["parent"] else ""
        row["name"] = row["module"][len(key) + 1:] if key else row["module"]
        groups.setdefault(key, []).append(row)
    view = []
    for key, members in groups.items():
        flagged = sum(r["flagged"] for r in members)
        view.append({"name": key or "(model)", "type": types.get(key, ""), "rows": members,
                     "count": len(members), "training": sum(r["training"] for r in members),
                     "sensitive": sum(r["differs"] for r in members), "flagged": flagged,
                     "open": bool(flagged) or len(groups) == 1})
    sensitive = sum(r["differs"] for r in view_rows)
    flagged = sum(r["flagged"] for r in view_rows)
    omitted = omitted if isinstance(omitted, int) and not isinstance(omitted, bool) else 0
    return {"groups": view, "total": len(view_rows) + omitted, "omitted": omitted,
            "containers": len(view_rows) - len(leaves),
            "sensitive": sensitive, "flagged": flagged, "bar": severity_bar(sensitive, flagged)}


def _group_depth(leaves: list[dict]) -> int:
    """The deepest parent level that folds the leaves into at most MODE_GROUPS groups."""
    deepest = max((len(r["parent"].split(".")) for r in leaves if r["parent"]), default=1)
    for depth in range(deepest, 0, -1):
        keys = {".".join(r["parent"].split(".")[:depth]) if r["parent"] else "" for r in leaves}
        if len(keys) <= MODE_GROUPS:
            return depth
    return 1


def _parity_view(entries: list) -> list[dict]:
    view = []
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        mismatched = entry.get("mismatched_fraction")
        onnx_name = entry.get("onnx_output")
        shape = entry.get("shape")
        detail = []
        if isinstance(shape, list):
            detail.append(f"{entry.get('dtype', '')}[{', '.join(map(str, shape))}]")
        if isinstance(entry.get("batch"), int):
            detail.append(f"batch {entry['batch']}")
        if entry.get("comparison"):
            detail.append(str(entry["comparison"]))
        if onnx_name and onnx_name != entry.get("output"):
            detail.append(f"ONNX: {onnx_name}")
        if entry.get("shape_mismatch"):
            detail.append(f"shape mismatch, ONNX gives {entry.get('onnx_shape')}")
        view.append({
            "output": str(entry.get("output", "?")), "detail": " · ".join(detail),
            "passing_atol": num(entry.get("min_passing_atol")) if entry.get("passed") is False else "",
            "max_abs": num(entry.get("max_abs_diff")), "max_rel": num(entry.get("max_rel_diff")),
            "mismatched": percent(mismatched),
            "atol": num(entry.get("atol")), "rtol": num(entry.get("rtol")),
            "passed": entry.get("passed"),
            "histogram": histogram(entry.get("histogram"), entry.get("atol")),
        })
    return view


def _mode_lines(kind: str, load) -> list[tuple[str, str]]:
    """Where the train/eval mode came from: only a pickled module carries one; weights loaded
    into a --model architecture take the mode the factory returns."""
    value = "yes" if load.saved_training else "no"
    if kind == "factory":
        return [("Returned in training mode", value)]
    if load.mode_source == "--model factory":
        return [("Mode saved in the file", "none (weights only)"),
                ("Factory returns it in training mode", value)]
    if load.mode_source in ("file", None):
        return [("Saved in training mode", value)]
    return [("Loaded in training mode", value)]


def _display_kind(target: TargetResult) -> str:
    """What a target is when the loader could not say (a folder with nothing to audit)."""
    if target.kind != "unknown":
        return target.kind
    from pathlib import Path

    path = Path(target.path)
    if path.is_dir():
        return "folder"
    return "file (unknown format)" if path.is_file() else "unknown"


def _reason(target: TargetResult, reason: str) -> str:
    """Reasons name command-line flags; a report made with the Python API names its arguments."""
    if target.kind == "live-module":
        return reason.replace("(--no-onnx)", "(audit(onnx=False); pass onnx=True to run them)")
    return reason


def _not_run_groups(target: TargetResult) -> list[dict]:
    """Rules that did not run, one line per reason (the same reason is said once)."""
    groups: dict[str, list[str]] = {}
    for rule, coverage in target.not_run().items():
        groups.setdefault(_reason(target, coverage.reason or ""), []).append(rule)
    return [{"rules": rules, "rule": ", ".join(rules), "reason": reason} for reason, rules in groups.items()]


def _target_view(index: int, target: TargetResult, findings: list[Finding], metadata: dict) -> dict:
    facts_by = dict(target.facts or {})
    load, inputs = facts_by.get("load"), facts_by.get("inputs")
    mode, arch, onnx_facts = facts_by.get("eval_mode"), facts_by.get("architecture"), facts_by.get("onnx")
    # "What was audited": the few lines an ML lead reads first.
    audited: list[tuple[str, str]] = []
    facts = [("Kind", _display_kind(target))]
    other: list[tuple[str, str]] = []
    if load is not None:
        if load.format and load.format != target.kind:
            facts.insert(0, ("Format", load.format))
        if load.model_class:
            audited.append(("Model", display_class(load.model_class, target.path)))
        if load.saved_training is not None:
            audited.extend(_mode_lines(target.kind, load))
        if load.mode_source:
            facts.append(("Mode taken from", load.mode_source))
        if load.file_size is not None:
            facts.append(("File size", _size(load.file_size)))
        audited.extend(_weights_line(target, load))
        other.extend(load.details)
    if arch is not None and arch.dataflow != "not needed":
        facts.append(("Dataflow view", arch.dataflow))
        other.extend(("Dataflow note", note) for note in arch.notes)
    onnx = []
    if onnx_facts is not None:
        if onnx_facts.exporter:
            onnx.append(("ONNX exporter", onnx_facts.exporter))
        if onnx_facts.opset:
            onnx.append(("ONNX opset", ", ".join(f"{domain} {version}" for domain, version in onnx_facts.opset.items())))
        if onnx_facts.providers:
            onnx.append(("ORT providers", ", ".join(onnx_facts.providers)))
        other.extend(("ONNX note", note) for note in onnx_facts.notes)
    if mode is not None and mode.paired is not None:
        other.extend(("Paired passes", note) for note in mode.paired.notes)
    if target.usage is not None:
        peak = target.usage.peak_rss_bytes
        facts.append(("Audit time", f"{target.usage.seconds:.1f} s" + (f", peak RSS {_size(peak)}" if peak else "")))
    counts = {str(s): 0 for s in SEVERITIES}
    for finding in findings:
        counts[str(finding.severity)] += 1
    rows = [dataclasses.asdict(r) for r in mode.rows] if mode is not None else []
    parity = [dict(r) for r in onnx_facts.parity] if onnx_facts is not None else []
    not_run = [{"rule": rule, "reason": _reason(target, c.reason or "")} for rule, c in target.not_run().items()]
    decided = verdict(Report((target,), tuple(findings), metadata))
    return {
        "index": index, "anchor": f"target-{index}",
        "path": target.path, "kind": _display_kind(target), "status": target.status, "detail": target.detail,
        "name": target.path.rstrip("/").rsplit("/", 1)[-1] or target.path,
        "verdict": {"tone": decided.tone, "headline": decided.headline},
        "audited": audited, "facts": facts, "onnx": onnx,
        "onnx_line": _onnx_line(onnx_facts, not_run),
        "backends_line": _backends_line(onnx_facts.backends) if onnx_facts is not None else "",
        "saved_training": load.saved_training if load is not None else None,
        "inputs": list(inputs.inputs) if inputs is not None else [],
        "inputs_source": inputs.source if inputs is not None else "",
        "summary": _model_summary(mode, rows, load),
        "mode": _mode_view(rows, mode.omitted if mode is not None else 0),
        "parity": _parity_view(parity),
        "parity_chart": parity_chart(parity),
        "localisation": _localisation_view(onnx_facts.localisation) if onnx_facts is not None else None,
        "backends": _backends_view(onnx_facts.backends) if onnx_facts is not None else None,
        "other": [{"key": k, "value": v, "long": len(v) > 60} for k, v in other if v],
        "not_run": not_run,
        "not_run_groups": _not_run_groups(target),
        "coverage": _coverage_counts(target, findings),
        "counts": counts,
    }


def _weights_line(target: TargetResult, load) -> list[tuple[str, str]]:
    w = load.weights
    if w is None:
        if target.kind == "factory":
            return [("Weights", "as the factory built them (no weights file loaded)")]
        return []
    text = f"{w.loaded} of {w.expected} tensors loaded"
    if w.missing_count or w.unexpected_count:
        text += f" ({w.missing_count} missing, {w.unexpected_count} unexpected)"
    if w.architecture:
        text += f" into {w.architecture}"
    return [("Weights", text)]


def _numbers(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def _onnx_line(onnx_facts, not_run: list[dict]) -> str:
    """One line: did ONNX run, did it match, and the worst error."""
    skipped = [item for item in not_run if item["rule"] in ("EG401", "EG402", "EG403", "EG404")]
    if onnx_facts is None or not onnx_facts.parity:
        if skipped:
            return f"did not run ({skipped[0]['reason'] or 'skipped'})"
        return ""
    rows = [dict(r) for r in onnx_facts.parity]
    failed = sum(1 for r in rows if r.get("passed") is False)
    worst = worst_abs_error(rows)
    atol = min(_numbers(rows, "atol"), default=None)
    where = f"ONNX Runtime ({', '.join(onnx_facts.providers)})" if onnx_facts.providers else "ONNX Runtime"
    result = (f"differs in {failed} of {plural(len(rows), 'comparison')}" if failed
              else f"matches in {plural(len(rows), 'comparison')}")
    text = f"{where} {result}"
    if worst is not None:
        text += f"; worst |error| {num(worst)}" + (f" (atol {num(atol)})" if atol is not None else "")
    return text


def _backends_line(backends) -> str:
    parts = []
    for b in backends or ():
        parts.append(f"{_backend_label(b.backend, b.device)} ({b.status})")
    return ", ".join(parts)


def _model_summary(mode, rows: list[dict], load=None) -> dict | None:
    """Module counts, parameter count and size, and the layer types (leaf modules only:
    containers are not layers)."""
    if mode is None or not rows:
        return None
    names = [str(r.get("module") or "") for r in rows]
    containers = {n.rsplit(".", 1)[0] if "." in n else "" for n in names if n}
    types: dict[str, int] = {}
    for name, row in zip(names, rows):
        if name not in containers or (not name and len(rows) == 1):
            types[str(row.get("type", "?"))] = types.get(str(row.get("type", "?")), 0) + 1
    ranked = sorted(types.items(), key=lambda item: (-item[1], item[0]))
    shown, rest = ranked[:LAYER_TYPES_SHOWN], ranked[LAYER_TYPES_SHOWN:]
    top = max((n for _, n in shown), default=1)
    bars = [{"type": t, "count": n, "w": max(2, round(LAYER_BAR * n / top))} for t, n in shown]
    return {"modules": mode.modules, "in_training": mode.in_training, "sensitive": mode.behaviour_differs,
            "flagged": mode.behaviour_differs_in_training, "layers": sum(types.values()),
            "bars": bars, "bar": LAYER_BAR, "other_types": len(rest), "other_count": sum(n for _, n in rest),
            "partial": bool(mode.omitted),
            "parameters": _count_text(load.parameters) if load is not None and load.parameters is not None else "",
            "size": _size(load.parameter_bytes) if load is not None and load.parameter_bytes is not None else ""}


def _count_text(count: int) -> str:
    """1234567 -> "1.2M": parameter counts as people quote them."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def _coverage_counts(target: TargetResult, findings: list[Finding] = ()) -> dict:
    """Rule outcomes on one target; a rule whose findings are all info is "noted", not failed."""
    worst: dict[str, Severity] = {}
    for finding in findings:
        if finding.severity is not None:
            worst[finding.rule] = max(worst.get(finding.rule, finding.severity), finding.severity)
    counts = {"passed": 0, "failed": 0, "noted": 0, "skipped": 0, "not-applicable": 0}
    for rule, c in target.coverage.items():
        status = "noted" if c.status == "failed" and worst.get(rule) == Severity.INFO else c.status
        counts[status] = counts.get(status, 0) + 1
    return counts


def _size(value: Any) -> str:
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _chain_view(evidence: dict, types: dict[str, str]) -> dict | None:
    path = evidence.get("path")
    if not isinstance(path, (list, tuple)) or len(path) < 2 or not all(isinstance(p, str) for p in path):
        return None
    nodes = []
    for i, name in enumerate(path):
        role = "start" if i == 0 else "end" if i == len(path) - 1 else "between"
        nodes.append({"name": name, "type": types.get(name, ""), "role": role})
    view = evidence.get("view")
    caption = {"fx": "traced with torch.fx", "hooks": "observed with forward hooks"}.get(view, str(view or ""))
    return {"nodes": nodes, "caption": caption}


#: Width in pixels of the longest latency bar in the backend table.
LATENCY_BAR = 120


def _backend_label(backend: str, device: str | None) -> str:
    """``torch-compile`` on the CPU, ``torch-compile (cuda)`` for a CUDA variant."""
    return backend if device in (None, "cpu") else f"{backend} ({device})"


def _backends_view(backends) -> dict | None:
    """The backend matrix: one row per backend, a latency column per batch size with a bar
    scaled to the slowest backend at that size."""
    rows = [dataclasses.asdict(b) if dataclasses.is_dataclass(b) else dict(b) for b in backends or ()]
    if not rows:
        return None
    batches = list(dict.fromkeys(k for r in rows for k in (r.get("latency_ms") or {})))
    slowest = {b: max((float(r["latency_ms"][b]) for r in rows if b in (r.get("latency_ms") or {})), default=0.0)
               for b in batches}
    view = []
    for r in rows:
        latency = r.get("latency_ms") or {}
        cells = []
        for b in batches:
            value = latency.get(b)
            width = 0 if value is None or not slowest[b] else max(1, round(LATENCY_BAR * float(value) / slowest[b]))
            cells.append({"text": f"{num(value)} ms" if value is not None else "—", "width": width})
        status = str(r.get("status", ""))
        view.append({"backend": _backend_label(str(r.get("backend", "?")), r.get("device")), "status": status,
                     "ok": status in ("matches", "reference"),
                     "max_abs": num(r.get("max_abs_diff")) if r.get("max_abs_diff") is not None else "—",
                     "build": f"{num(r.get('build_seconds'))} s" if r.get("build_seconds") is not None else "—",
                     "latency": cells,
                     "detail": r.get("error") or r.get("skip_reason") or "; ".join(r.get("notes") or ())})
    return {"batches": batches, "rows": view, "bar": LATENCY_BAR}


def _localisation_view(located: Any) -> dict | None:
    """EG401's localisation as a chain: the model, the modules on the way, the first divergent
    one (evidence ``localisation`` or ``OnnxFacts.localisation``)."""
    if dataclasses.is_dataclass(located) and not isinstance(located, type):
        located = dataclasses.asdict(located)
    if not isinstance(located, dict):
        return None
    module = located.get("first_divergent_module")
    nodes = [{"name": "(model)", "type": "", "role": "start" if module else "end"}]
    for step in located.get("path") or ():
        if isinstance(step, dict) and step.get("module"):
            name = str(step["module"])
            detail = " · ".join(str(x) for x in (step.get("type"), step.get("status")) if x)
            nodes.append({"name": name, "type": detail, "role": "end" if name == module else "between"})
    if module:
        caption = (f"First divergent module {module}: output off by up to "
                   f"{num(located.get('output_max_abs_error'))}")
        if located.get("inputs_match"):
            caption += f" while its inputs match ({num(located.get('input_max_abs_error'))})"
    else:
        caption = f"No divergent module: {located.get('first_divergent_module_reason') or 'not localised'}"
    ops = [f"{n.get('op_type')} {n.get('name')}" for n in located.get("onnx_nodes") or () if isinstance(n, dict)]
    if ops:
        more = (located.get("onnx_node_count") or 0) - len(ops)
        caption += "; ONNX nodes: " + ", ".join(ops) + (f" (+{more} more)" if more > 0 else "")
    if located.get("folded"):
        caption += f"; folded into the same nodes: {', '.join(map(str, located['folded']))}"
    if located.get("note"):
        caption += f". {located['note']}"
    return {"nodes": nodes, "caption": caption}


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, tuple, dict)) and not value)


def _is_parity_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and "max_abs_diff" in v for v in value)


def _evidence_rows(evidence: dict, skip: set[str]) -> list[dict]:
    """Evidence as key/value rows a person reads: a mapping becomes a small key/value list, a
    list of records a small table, anything else one line (long text folds). Empty values are
    left out rather than shown as empty rows."""
    rows = []
    for key, raw in evidence.items():
        value = jsonable(raw)
        if key in skip or _empty(value):
            continue
        row = {"key": str(key), "pairs": None, "table": None, "parity": None, "long": False, "value": "",
               "preview": ""}
        if _is_parity_rows(value):          # EG401/EG404 outputs: the same table and charts as the ONNX section
            row["parity"] = _parity_view(value)
        elif isinstance(value, dict) and all(not isinstance(v, dict) for v in value.values()):
            row["pairs"] = [(str(k), text_value(v)) for k, v in value.items()]
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for record in value for k in record))
            row["table"] = {"columns": columns,
                            "rows": [[text_value(record[c]) if c in record else "" for c in columns]
                                     for record in value]}
        else:
            text = text_value(value)
            row.update(value=text, long=len(text) > LONG_VALUE,
                       preview=text[:60].rstrip() + "…" if len(text) > LONG_VALUE else text)
        rows.append(row)
    return rows


def _finding_view(index: int, finding: Finding, rule: Rule | None, types: dict[str, str]) -> dict:
    evidence = dict(finding.evidence or {})
    chain = _chain_view(evidence, types)
    rows = _evidence_rows(evidence, {"path", "view"} if chain else set())
    located = _localisation_view(evidence.get("localisation"))
    if located is not None:   # shown as the path to the module, not as a JSON blob
        chain = chain or located
        rows = [row for row in rows if row["key"] != "localisation"]
    # Output comparisons get the ONNX section's table, full width below the key/value evidence.
    parity = [{"key": row["key"], "rows": row["parity"]} for row in rows if row["parity"]]
    rows = [row for row in rows if not row["parity"]]
    loc = finding.location
    where = loc.display(with_module=False)   # the module is shown on its own
    examples = None
    if rule and isinstance(rule.examples, dict) and (rule.examples.get("bad") or rule.examples.get("good")):
        examples = {"bad": str(rule.examples.get("bad", "")).strip("\n"),
                    "good": str(rule.examples.get("good", "")).strip("\n")}
    return {
        "code": _code_lines(finding),
        "anchor": f"finding-{index}", "rule": finding.rule,
        "name": finding.name or (rule.name if rule else ""),
        "title": rule.title if rule else "", "severity": str(finding.severity),
        "message": finding.message, "message_spans": _inline(finding.message), "where": where, "module": loc.module or "",
        "evidence": rows[:EVIDENCE_VISIBLE], "evidence_more": rows[EVIDENCE_VISIBLE:], "parity": parity,
        "chain": chain,
        "why": segments(rule.why) if rule else [], "fix": segments(rule.fix) if rule else [],
        "examples": examples,
    }


def _code_lines(finding: Finding) -> str:
    """The source line a finding points at, with a caret under it (as the text report shows it)."""
    from evalguard.reporters.text import SourceLines, snippet

    return "\n".join(snippet(finding, SourceLines()))


def _card_view(path: str, members: list[dict]) -> dict:
    """One card per root cause: every finding of one rule on one target. The rule's fix and
    why are shown once; each finding becomes a row naming its module or line."""
    first = members[0]
    card = {key: first[key] for key in ("anchor", "rule", "name", "title", "severity", "why", "fix", "examples")}
    card.update(single=first if len(members) == 1 else None, count=len(members), path=path,
                open=len(members) <= MEMBERS_OPEN,
                modules=[m["module"] for m in members if m["module"]], members=members)
    if len(members) > 1:
        where = plural(len(card["modules"]), "module") if len(card["modules"]) == len(members) \
            else plural(len(members), "place")
        card["headline"] = f"{plural(len(members), 'finding')} of {first['rule']} in {path}: {where}"
    return card


def _run_facts(metadata: dict, targets=()) -> list[tuple[str, str]]:
    facts = []
    for key, label in (("seed", "Seed"), ("device", "Device"), ("fail_on", "Fail on")):
        if metadata.get(key) is not None:
            facts.append((label, text_value(metadata[key])))
    selected = metadata.get("selected")
    if selected:
        facts.append(("Rules selected", plural(len(selected), "rule")))
    checked = {rule for t in targets for rule, c in t.coverage.items() if c.status in ("passed", "failed")}
    if selected and targets:
        where = "" if len(targets) == 1 else " on at least one target"
        facts.append(("Rules checked", plural(len(checked), "rule") + where))
    return facts


def _versions(metadata: dict) -> list[tuple[str, str]]:
    versions = metadata.get("versions")
    if not isinstance(versions, dict):
        return []
    ordered = [k for k in _VERSION_ORDER if k in versions] + sorted(set(versions) - set(_VERSION_ORDER))
    return [(k, text_value(versions[k]) if versions[k] is not None else "not installed") for k in ordered]


def view_model(report: Report) -> dict:
    from evalguard._version import __version__

    catalogue = rule_catalogue.load_catalogue()
    metadata = dict(report.metadata)
    decided = verdict(report)
    findings_for: dict[str, list[Finding]] = {}
    for finding in report.findings:
        findings_for.setdefault(finding.location.path, []).append(finding)
    types: dict[str, dict[str, str]] = {}
    for target in report.targets:
        mode = (target.facts or {}).get("eval_mode")
        types[target.path] = {row.module: row.type for row in mode.rows} if mode is not None else {}

    groups, index = [], 0
    for severity in SEVERITIES:
        cards: dict[tuple[str, str], list[dict]] = {}
        for finding in report.findings:
            if finding.severity == severity:
                index += 1
                view = _finding_view(index, finding, catalogue.get(finding.rule),
                                     types.get(finding.location.path, {}))
                cards.setdefault((finding.location.path, finding.rule), []).append(view)
        if cards:
            groups.append({"severity": str(severity), "label": _SEVERITY_LABELS[severity],
                           "blocking": severity >= decided.threshold,
                           "count": sum(len(members) for members in cards.values()),
                           "cards": [_card_view(path, members) for (path, _), members in cards.items()]})
    counts = report.summary
    command = metadata.get("command")
    if isinstance(command, (list, tuple)):
        command = " ".join(map(str, command))
    baseline = metadata.get("baseline") if isinstance(metadata.get("baseline"), dict) else None
    first = report.targets[0].path if report.targets else "no targets"
    title = first if len(report.targets) <= 1 else f"{first} and {plural(len(report.targets) - 1, 'more target')}"
    return {
        "csp": CSP, "title": f"evalguard: {title}", "subject": title, "tool_version": __version__,
        "verdict": {"blocked": decided.blocked, "tone": decided.tone, "headline": decided.headline,
                    "detail": decided.detail,
                    "threshold": str(decided.threshold)},
        "counts": [{"severity": str(s), "label": _SEVERITY_LABELS[s], "count": counts[str(s)],
                    "blocking": s >= decided.threshold} for s in SEVERITIES],
        "run": _run_facts(metadata, report.targets), "versions": _versions(metadata),
        "selected": sorted(metadata.get("selected") or []), "command": str(command or ""),
        "baseline": {"suppressed": int(baseline.get("suppressed", 0)), "fixed": int(baseline.get("fixed", 0)),
                     "path": str(baseline.get("path", ""))} if baseline else None,
        "targets": [_target_view(i, t, findings_for.get(t.path, []), metadata)
                    for i, t in enumerate(report.targets, 1)],
        "groups": groups, "total": len(report.findings),
    }


@functools.lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("evalguard.reporters", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    return env


def render(report: Report, *, color: bool = False) -> str:
    return _environment().get_template("report.html.j2").render(page=view_model(report))
