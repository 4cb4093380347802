"""Which positions each kernel call works on in one step: dynamic depth and real tokens
(DESIGN.md, "Dynamic execution").

On the wafer a halted position sends nothing and a pad token is never streamed, so every
token-axis count of the timing (the rows of a matmul's x and dY, an element-wise kernel's
elements, attention's queries) covers only the positions that compute. Which ones those are,
the model says with the identity markers `wsebench::running(h, mask)` (wsebench/markers.py);
`compiler.steps` gives the marker that governs each op (the last one before it in forward
order, the closing `running_grad` in backward order, the first marker outside every span).

Static part, once per plan (`layout`): the mask value governing each call of each kernel.
- matmul: the call's forward matmul. The mask applies when the call's x has the mask's T
  positions per sample ([B*T, K] or [B, T, K]); a pooled input ([B, K]) has no token axis.
- attention: the call's softmax; its queries are the governed positions, its keys every real
  one (the running positions still attend to the halted ones), none when no query runs.
- generated: each op its loop nest counts (the full-width ones), governed by its own marker
  when its output holds the mask's positions (`axis_kind`: one row per sample and position,
  or a per-position table such as a position embedding, of which only the positions some
  sample uses are read). The kernel does the share of its elements its ops' positions make
  up, per sample.
- links: each route carries its value's share of rows (`simulator.dynamic_links`).
Per step (`StepPositions`): the masks' values, and three runs timed from the same tensors:
- "actual": each span charges its own mask's positions (what the wafer did);
- "fixed_depth": every span charges every real position (the first marker's mask): the same
  model at fixed depth = max steps, pads still free;
- "padded": each span charges its positions plus the pads: pads streamed like real tokens.
A baseline's row that the run did not compute has no measured values (a halted position's dY
is zero only because it halted): `simulator.timing` charges it dense.
Model (a choice, stated): a halted position's keys and values are read from where attention
left them; the host recomputes them each step (the step signal changes), but the wafer's
time does not include projecting them again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.kernels import Kernel
from compiler.passes import MATMUL_OPS, VIEW_OPS
from compiler.steps import Markers, markers

from .backend import to_numpy
from .dynamic_links import RouteLinks, route_links, sample_routes

VARIANTS = ("actual", "fixed_depth", "padded")


Governor = tuple[str, str]      # (mask value, "tokens" | "positions")


@dataclass(frozen=True, eq=False)
class Layout:
    """`governors`: per call (matmul, attention) or per counted op (generated), the mask that
    governs it and how it applies (`axis_kind`), None where none does. `segments`: each call's
    marker index. `recurrent`: the marker indices of the recurrent steps (the spans a kernel is
    called in more than once). `links`: the routes, to load them with the rows really sent."""
    markers: Markers
    governors: dict[str, tuple[Governor | None, ...]] = field(default_factory=dict)
    segments: dict[str, tuple[int, ...]] = field(default_factory=dict)
    recurrent: tuple[int, ...] = ()
    links: RouteLinks | None = None


def layout(plan) -> Layout | None:
    """The plan's `Layout` (cached on the plan), or None when its graph has no markers."""
    cached = getattr(plan, "_dynamic_layout_cache", False)
    if cached is False:
        cached = _build_layout(plan)
        object.__setattr__(plan, "_dynamic_layout_cache", cached)
    return cached


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


def _build_layout(plan) -> Layout | None:
    graph = plan.graph
    found = markers(graph)
    if not found:
        return None
    shape = graph.type_of[found.masks[0]].shape
    if len(shape) != 2:
        raise ValueError(f"running marker masks must be bool [batch, positions], got {shape}")
    governors, segments, recurrent = {}, {}, set()
    for kernel in plan.kernels:
        ops = _governed_ops(graph, kernel, shape)
        governors[kernel.name] = tuple((found.mask_of[op], kind) if op in found.mask_of and kind
                                       else None for op, kind in ops)
        segments[kernel.name] = tuple(found.segment.get(op, 0) for op, _ in ops)
        if kernel.kind != "generated" and kernel.steps > 1:
            recurrent.update(segments[kernel.name])
    values = [rt.edge.value for rt in sample_routes(plan)]
    route_governors = tuple(_value_governor(graph, found, v, shape) for v in values)
    return Layout(found, governors, segments, tuple(sorted(recurrent)),
                  route_links(plan, route_governors))


def _value_governor(graph, found: Markers, value: str, shape) -> Governor | None:
    kind = axis_kind(graph.type_of[value].shape, *shape)
    op = getattr(graph.producer.get(value), "name", None)
    return (found.mask_of[op], kind) if kind and op in found.mask_of else None


def _governed_ops(graph, kernel: Kernel, shape) -> list[tuple[str | None, str | None]]:
    """(the op whose marker governs, how its mask applies) per call or per counted op."""
    batch, positions = shape
    types = graph.type_of
    if kernel.kind == "matmul":
        ops, out = set(kernel.ops), []
        for call in kernel.calls:
            x = call["x"]
            forward = next((c.name for c in graph.consumers.get(x, [])
                            if c.op in MATMUL_OPS and c.name in ops), None)
            width = types[x].shape[-1] if types[x].shape else 1
            out.append((forward, "tokens" if types[x].numel == batch * positions * width else None))
        return out
    if kernel.kind == "attention":
        return [(call["probs"], "tokens" if types[call["probs"]].shape[-2:-1] == (positions,) else None)
                for call in kernel.calls]
    return [(op.name, axis_kind(types[out].shape, batch, positions))
            for op, out in _counted_ops(graph, kernel)]


def _counted_ops(graph, kernel: Kernel):
    """The ops a generated kernel's loop nest counts (`compiler.kernels._generated_kernel`: those
    with an output as wide as its widest) and that output."""
    work = [graph.producer[name] for name in kernel.ops
            if name in graph.producer and graph.producer[name].op not in VIEW_OPS]
    outs = [(op, out) for op in work for out in op.outputs if out in graph.type_of]
    widest = max((graph.type_of[out].numel for _, out in outs), default=0)
    seen, counted = set(), []
    for op, out in outs:
        if graph.type_of[out].numel == widest and op.name not in seen:
            seen.add(op.name)
            counted.append((op, out))
    return counted


@dataclass(frozen=True)
class DynamicStats:
    """What one step's markers say. `active_fraction`: per recurrent step, the share of the real
    positions still running; `mean_ponder_steps`: the steps a real position ran, on average
    (None without recurrence); `max_steps`: the recurrent steps the graph holds;
    `padding_fraction`: the share of the batch's positions that are pads."""
    active_fraction: tuple[float, ...]
    mean_ponder_steps: float | None
    max_steps: int
    padding_fraction: float
    real_positions: int
    positions: int


class StepPositions:
    """The masks of one step, for the three runs (`VARIANTS`), read off the tensors in `env`."""

    def __init__(self, plan, env: dict, lay: Layout):
        self.layout, self.samples = lay, plan.kernels[0].samples
        names = lay.markers.masks
        actual = {name: np.asarray(to_numpy(env[name]), dtype=bool) for name in set(names)}
        self.real = actual[names[0]]
        pads = ~self.real
        self.masks = {"actual": actual,
                      "fixed_depth": {name: self.real for name in actual},
                      "padded": {name: value | pads for name, value in actual.items()}}

    def share(self, governor: Governor | None, run: str):
        """(samples,) share of a governed value's rows that `run` sends (1 where ungoverned):
        per sample for tokens, the positions any sample uses for a per-position table."""
        if governor is None:
            return np.ones(self.samples)
        mask = self.masks[run][governor[0]]
        if governor[1] == "positions":
            return np.full(self.samples, float(mask.any(axis=0).mean()))
        return mask.mean(axis=1)

    def rows(self, kernel: Kernel, tokens: list[int]) -> dict[str, np.ndarray] | None:
        """Matmul: run -> (samples, sum of `tokens`) float32 weights of the token rows each run
        charges, the calls' rows one after another; None when no mask applies."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: np.concatenate([self.masks[run][g[0]] if g else np.ones((self.samples, t), bool)
                                     for g, t in zip(governors, tokens)], axis=1).astype(np.float32)
                for run in VARIANTS}

    def queries(self, kernel: Kernel) -> dict[str, list] | None:
        """Attention: run -> per call, (samples,) queries that run (None: every real one)."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: [None if g is None else self.masks[run][g[0]].sum(axis=1) for g in governors]
                for run in VARIANTS}

    def fraction(self, kernel: Kernel) -> dict[str, np.ndarray] | None:
        """Generated: run -> (samples,) share of the kernel's elements its ops compute."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: np.mean([self.share(g, run) for g in governors], axis=0) for run in VARIANTS}

    def congestion(self, run: str) -> dict[str, float]:
        """Kernel -> per-sample load of the busiest link its routes cross, each route loaded with
        the share of its value's rows that `run` sends: pads and halted positions take no link."""
        links = self.layout.links
        return links.congestion([float(np.mean(self.share(g, run))) for g in links.governors],
                                self.samples)

    def stats(self) -> DynamicStats:
        real = int(self.real.sum())
        names = self.layout.markers.masks
        steps = [self.masks["actual"][names[i]] for i in self.layout.recurrent]
        fractions = tuple(float((m & self.real).sum()) / max(real, 1) for m in steps)
        return DynamicStats(fractions, float(sum(fractions)) if steps else None, len(steps),
                            1.0 - real / max(self.real.size, 1), real, int(self.real.size))


def step_positions(plan, env: dict) -> StepPositions | None:
    """The step's `StepPositions`, or None when the plan's graph has no markers."""
    lay = layout(plan)
    return None if lay is None else StepPositions(plan, env, lay)
