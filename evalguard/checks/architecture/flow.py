"""EG201-EG204: rules that read the dataflow graph (where a Dropout's output actually goes).

Every finding names the view that found it ("fx" or "hooks") and the path it followed.
A Dropout module called several times is reported once, from its first call that matches.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from evalguard.checks.architecture import ops
from evalguard.checks.architecture.dataflow import Dataflow, Node
from evalguard.findings import Finding, Location

FLOW_RULES = ("EG201", "EG202", "EG203", "EG204")
_INF = float("inf")
#: What may sit between a Dropout and the output for EG203 ("the output" still means its value).
_TAIL = ops.LAYOUT | {ops.ACTIVATION, ops.SOFTMAX}


def findings(flow: Dataflow, selected: frozenset[str], path: str) -> list[Finding]:
    dropouts = [n for n in flow.nodes if n.category == ops.DROPOUT and (n.dropout_p or 0.0) > 0.0]
    if not dropouts:
        return []
    checks = {"EG201": _eg201, "EG202": _eg202, "EG203": _eg203, "EG204": _eg204}
    found: list[Finding] = []
    for rule, check in checks.items():
        if rule in selected:
            found.extend(_once_per_dropout(check(flow, dropouts, path)))
    return found


def _once_per_dropout(found: Iterable[Finding]) -> Iterator[Finding]:
    seen = set()
    for finding in found:
        key = (finding.location.module, finding.evidence.get("dropout"))
        if key not in seen:
            seen.add(key)
            yield finding


def _finding(rule: str, dropout: Node, flow: Dataflow, target: str, message: str, **evidence) -> Finding:
    evidence = {"view": flow.view, "dropout": dropout.label, "p": dropout.dropout_p, **evidence}
    return Finding(rule=rule, message=message, location=Location(path=target, module=dropout.module or None),
                   evidence=evidence)


def _describe(node: Node) -> str:
    if node.is_module:
        return f"{node.kind} `{node.label}`"
    return f"functional `{node.kind}` in `{node.module or '<root>'}`"


def _walk(flow: Dataflow, start: int, through: frozenset[str]) -> Iterator[tuple[Node, list[int]]]:
    """Users reachable from ``start`` through nodes of the ``through`` categories, with their paths."""
    stack, seen = [(start, [start])], {start}
    while stack:
        index, trail = stack.pop()
        for user in flow.users[index]:
            if user in seen:
                continue
            seen.add(user)
            node = flow.nodes[user]
            yield node, trail + [user]
            if node.category in through:
                stack.append((user, trail + [user]))


# ---- EG201 dropout-before-batchnorm ----------------------------------------------------

def _carries_shift(node: Node) -> bool:
    """Does a Dropout's variance shift survive this op? See rules/EG201.toml for the reasoning."""
    if node.category in ops.SHIFT_PASSES:
        return True
    # x * scale, x + bias, x @ W: one data input, so an affine map of the shifted tensor.
    return node.category in (ops.ARITH, ops.MATMUL) and node.n_data_inputs == 1


def _nearest_batchnorm(flow: Dataflow) -> list[int | None]:
    """For every node, the next hop on a shortest shift-carrying path to a BatchNorm (one pass)."""
    distance = [_INF] * len(flow.nodes)
    next_hop: list[int | None] = [None] * len(flow.nodes)
    for node in reversed(flow.nodes):       # nodes are in execution order, so users come later
        for user in flow.users[node.index]:
            target = flow.nodes[user]
            if target.category == ops.BATCHNORM:
                candidate = 1
            elif _carries_shift(target) and distance[user] < _INF:
                candidate = distance[user] + 1
            else:
                continue
            if candidate < distance[node.index]:
                distance[node.index], next_hop[node.index] = candidate, user
    return next_hop


def _eg201(flow: Dataflow, dropouts: list[Node], path: str) -> Iterator[Finding]:
    next_hop = _nearest_batchnorm(flow)
    for dropout in dropouts:
        if next_hop[dropout.index] is None:
            continue
        trail = [dropout.index]
        while flow.nodes[trail[-1]].category != ops.BATCHNORM:
            trail.append(next_hop[trail[-1]])
        index = trail[-1]
        batchnorm = flow.nodes[index]
        between = [flow.nodes[i].label for i in trail[1:-1]]
        via = f" through {' -> '.join(between)}" if between else " directly"
        yield _finding(
            "EG201", dropout, flow, path,
            f"{_describe(dropout)} (p={dropout.dropout_p:g}) feeds {_describe(batchnorm)}{via}: BatchNorm's "
            "running variance is learned with dropout active and is too large at inference (variance "
            "shift). Move the Dropout after the last BatchNorm, or re-estimate the BatchNorm statistics "
            "with dropout disabled.",
            batchnorm=batchnorm.label, path=[flow.nodes[i].label for i in trail])


# ---- EG202 dropout-before-activation ---------------------------------------------------

def _eg202(flow: Dataflow, dropouts: list[Node], path: str) -> Iterator[Finding]:
    for dropout in dropouts:
        for node, trail in _walk(flow, dropout.index, ops.LAYOUT):
            if node.category != ops.ACTIVATION:
                continue
            same = node.kind in ops.POSITIVELY_HOMOGENEOUS
            consequence = (
                f"{node.kind}(c*x) = c*{node.kind}(x) for c >= 0, so this computes exactly what Dropout "
                "after the activation would; move it only for consistency with the usual layout."
                if same else
                f"in training {node.kind} sees inputs scaled by 1/(1-p) and zeroed, so its expected output "
                "differs from what it computes at inference; apply Dropout after the activation.")
            yield _finding("EG202", dropout, flow, path,
                           f"{_describe(dropout)} is applied before activation {_describe(node)}: {consequence}",
                           activation=node.label, numerically_equivalent=same,
                           path=[flow.nodes[i].label for i in trail])
            break


# ---- EG203 dropout-before-output -------------------------------------------------------

def _reaches_output(flow: Dataflow) -> list[bool]:
    """Nodes whose value is a model output, up to shape ops, activations and softmax."""
    reaches = [False] * len(flow.nodes)
    for node in reversed(flow.nodes):
        reaches[node.index] = node.index in flow.outputs or any(
            reaches[u] and flow.nodes[u].category in _TAIL for u in flow.users[node.index])
    return reaches


def _eg203(flow: Dataflow, dropouts: list[Node], path: str) -> Iterator[Finding]:
    reaches = _reaches_output(flow)
    for dropout in dropouts:
        if reaches[dropout.index]:
            yield _finding(
                "EG203", dropout, flow, path,
                f"{_describe(dropout)} (p={dropout.dropout_p:g}) produces the model's output (only shape ops or "
                "activations follow): in training "
                "the loss sees outputs randomly zeroed and the rest scaled by 1/(1-p). It is inactive in "
                "eval(); check that dropping outputs (not features) is intended.",
                final_layer=None, path=[dropout.label])
            continue
        for node, trail in _walk(flow, dropout.index, ops.LAYOUT):
            if node.category == ops.WEIGHT and reaches[node.index]:
                yield _finding(
                    "EG203", dropout, flow, path,
                    f"{_describe(dropout)} (p={dropout.dropout_p:g}) feeds the final layer {_describe(node)}. "
                    "This is a common, deliberate layout for classifier heads and is inactive in eval(); "
                    "noted so that the choice is visible.",
                    final_layer=node.label, path=[flow.nodes[i].label for i in trail])
                break


# ---- EG204 element-wise dropout on feature maps ----------------------------------------

def _conv_source(flow: Dataflow, start: Node, limit: int = 64) -> Node | None:
    """The convolution whose feature map reaches ``start`` through element-wise ops, if any."""
    stack, seen = list(start.inputs), set(start.inputs)
    while stack and len(seen) <= limit:
        node = flow.nodes[stack.pop()]
        if node.conv_dims:
            return node
        if node.category in ops.FEATURE_PASSES:
            for source in node.inputs:
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
    return None


def _eg204(flow: Dataflow, dropouts: list[Node], path: str) -> Iterator[Finding]:
    for dropout in dropouts:
        if dropout.kind not in ("Dropout", "dropout"):
            continue  # Dropout1d/2d/3d and alpha dropout already drop structured units
        conv = _conv_source(flow, dropout)
        if conv is None:
            continue
        rank = len(dropout.shape) if dropout.shape is not None else conv.conv_dims + 2
        if rank not in (4, 5) or rank != conv.conv_dims + 2:
            continue
        better = "nn.Dropout2d" if rank == 4 else "nn.Dropout3d"
        shape = f" {list(dropout.shape)}" if dropout.shape is not None else ""
        yield _finding(
            "EG204", dropout, flow, path,
            f"{_describe(dropout)} (p={dropout.dropout_p:g}) zeroes single elements of the {rank}-D feature "
            f"map{shape} from {_describe(conv)}; neighbouring activations are strongly correlated, so "
            f"element-wise dropout regularises little. Use {better} to drop whole channels.",
            rank=rank, shape=list(dropout.shape) if dropout.shape is not None else None,
            conv=conv.label, suggestion=better)
