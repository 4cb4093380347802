"""Which positions each op of the graph works on: the `running` markers (DESIGN.md, "Dynamic
execution").

A model marks where the set of positions it computes on changes with the identity op
`wsebench::running(h, mask)` (wsebench/markers.py): the bool `mask` [B, T] is True where a
position computes. Its backward twin `wsebench::running_grad(g, mask)` carries the same mask
value into the backward half of the joint graph, in reverse order. A transformer marks once,
after its embedding (mask: the real tokens); a Universal Transformer marks every recurrent step
(mask: the positions still running) and the end of the recurrence (the real tokens again).

The rule, read off program order (the captured graph keeps it):
- a forward op is governed by the last `running` marker at or before it;
- a backward op by the first `running_grad` marker at or after it (backward runs the steps in
  reverse, so the marker that closes a step's backward is the one that opened its forward);
- an op outside every marked span (before the first marker, or in the backward after the last
  `running_grad`) by the first marker's mask, which marks every position the model computes on.
A graph without markers has no governed op: every position costs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph
from .op_names import RUNNING_GRAD_OP, RUNNING_OP



@dataclass(frozen=True, eq=False)
class Markers:
    """`masks`: the mask value of each forward marker, in forward order. `segment`: op name ->
    index of the forward marker whose span it lies in (backward ops: the marker whose mask its
    closing `running_grad` carries). `mask_of`: op name -> the mask value that governs it."""
    masks: tuple[str, ...] = ()
    segment: dict[str, int] = field(default_factory=dict)
    mask_of: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.masks)


def _mask_arg(op) -> str:
    return op.args[1].name


def markers(graph: Graph) -> Markers:
    """The governing marker of every op of `graph` (see the module doc); empty without markers."""
    masks = tuple(_mask_arg(op) for op in graph.ops if op.op == RUNNING_OP)
    if not masks:
        return Markers()
    order = {op.name: i for i, op in enumerate(graph.ops)}
    loss_at = order.get(getattr(graph.producer.get(graph.loss), "name", None), len(graph.ops))
    segment, current = {}, -1
    for op in graph.ops[:loss_at + 1]:
        current += op.op == RUNNING_OP
        segment[op.name] = max(current, 0)
    # the backward closes the markers in reverse: the last forward marker with a mask value is
    # the first to be closed by a running_grad carrying that value
    open_ = {}
    for i, mask in enumerate(masks):
        open_.setdefault(mask, []).append(i)
    closing = 0                     # after the last running_grad: outside every marked span
    for op in reversed(graph.ops[loss_at + 1:]):
        if op.op == RUNNING_GRAD_OP:
            closing = _closes(op, open_)
        segment[op.name] = closing
    return Markers(masks, segment, {name: masks[i] for name, i in segment.items()})


def _closes(op, open_: dict) -> int:
    """Index of the forward marker a `running_grad` closes (walking the backward from its end,
    so the stacks hand out the earliest forward marker last)."""
    mask = _mask_arg(op)
    if not open_.get(mask):
        raise ValueError(f"running_grad marker {op.name} carries mask {mask!r}, which no forward "
                         f"running marker has left open; mark steps with wsebench.markers.running")
    return open_[mask].pop(0)


def axis_kind(shape, batch: int, positions: int) -> str | None:
    """How a value of `shape` holds the positions of a [batch, positions] mask: "tokens" (one
    row per sample and position: [B*T, ...], its transpose [..., B*T], [B, T, ...] or heads
    split out, [B, H, T, dh]), "positions" (one row per position, shared by the samples: a
    position embedding [T, d]) or None (no position axis: pooled, per sample, or scalar)."""
    shape = tuple(shape)
    if positions > 1 and shape and (shape[0] == batch * positions or shape[-1] == batch * positions):
        return "tokens"
    if shape[:2] == (batch, positions) or (len(shape) >= 3 and shape[0] == batch
                                          and positions in shape[1:-1]):
        return "tokens"
    if positions != batch and 1 <= len(shape) <= 2 and shape[0] == positions:
        return "positions"
    return None


def sequence_length(graph: Graph) -> int:
    """Tokens per sample of a sequence model, read off its first input: token ids [B, T]
    (integers) or features [B, T, d]; 1 for anything else (an MLP's [B, features])."""
    if not graph.inputs:
        return 1
    first = graph.type_of[graph.inputs[0]]
    integer = first.dtype.startswith(("int", "uint"))
    if (integer and len(first.shape) == 2) or (not integer and len(first.shape) == 3):
        return first.shape[1]
    return 1
