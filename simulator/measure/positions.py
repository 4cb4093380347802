"""Which positions each kernel call works on in one step: dynamic depth and real tokens
(DESIGN.md, "Dynamic execution").

On the wafer a halted position sends nothing and a pad token is never streamed, so every
token-axis count of the timing (the rows of a matmul's x and dY, an element-wise kernel's
elements, attention's queries) covers only the positions that compute. Which ones those are,
the model says with the identity markers `wsebench::running(h, mask)` (wsebench/markers.py);
`compiler.steps` gives the marker that governs each op (the last one before it in forward
order, the closing `running_grad` in backward order, the first marker outside every span).

Static part, once per plan (`layout`): the mask value governing each call (or counted op) of
each kernel, as its kind says (`KernelKind.governed`: a matmul call's forward matmul, an
attention call's softmax, each op a generated kernel's loop nest counts), and how the mask
applies (`compiler.axis_kind`: one row per sample and position, or a per-position table such as
a position embedding, of which only the positions some sample uses are read).
- links: each route carries its value's share of rows (`compiler.links.RouteLinks`).
Per step (`StepPositions`): the masks' values, and three runs timed from the same tensors:
- "actual": each span charges its own mask's positions (what the wafer did);
- "fixed_depth": every span charges every real position (the first marker's mask): the same
  model at fixed depth = max steps, pads still free;
- "padded": each span charges its positions plus the pads: pads streamed like real tokens.
A baseline's row that the run did not compute has no measured values (a halted position's dY
is zero only because it halted): the kind's counts charge it dense (`compiler.kernels.matmul.counts`).
Model (a choice, stated): a halted position's keys and values are read from where attention
left them; the host recomputes them each step (the step signal changes), but the wafer's
time does not include projecting them again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler import Markers, axis_kind, markers
from compiler.kernels import Kernel, kind_of

from ..backend import to_numpy

POSITIONS = ("actual", "fixed_depth", "padded")

Governor = tuple[str, str]      # (mask value, "tokens" | "positions")


@dataclass(frozen=True, eq=False)
class Layout:
    """`governors`: per call (or per counted op, as the kind says), the mask that governs it and
    how it applies (`axis_kind`), None where none does. `segments`: each entry's marker index.
    `recurrent`: the marker indices of the recurrent steps (the spans a kernel is called in
    more than once). `route_governors`: per sample route (plan order), its value's governor."""
    markers: Markers
    governors: dict[str, tuple[Governor | None, ...]] = field(default_factory=dict)
    segments: dict[str, tuple[int, ...]] = field(default_factory=dict)
    recurrent: tuple[int, ...] = ()
    route_governors: tuple = ()


def layout(plan) -> Layout | None:
    """The plan's `Layout`, or None when its graph has no markers."""
    graph = plan.graph
    found = markers(graph)
    if not found:
        return None
    shape = graph.type_of[found.masks[0]].shape
    if len(shape) != 2:
        raise ValueError(f"running marker masks must be bool [batch, positions], got {shape}")
    governors, segments, recurrent = {}, {}, set()
    for kernel in plan.kernels:
        kind = kind_of(kernel)
        entries = kind.governed(graph, kernel, shape)
        governors[kernel.name] = tuple((found.mask_of[op], how) if op in found.mask_of and how
                                       else None for op, how in entries)
        segments[kernel.name] = tuple(found.segment.get(op, 0) for op, _ in entries)
        if kind.per_call_governors and kernel.steps > 1:
            recurrent.update(segments[kernel.name])
    values = [rt.edge.value for rt in plan.sample_routes]
    return Layout(found, governors, segments, tuple(sorted(recurrent)),
                  tuple(_value_governor(graph, found, v, shape) for v in values))


def _value_governor(graph, found: Markers, value: str, shape) -> Governor | None:
    kind = axis_kind(graph.type_of[value].shape, *shape)
    op = getattr(graph.producer.get(value), "name", None)
    return (found.mask_of[op], kind) if kind and op in found.mask_of else None


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
    """The masks of one step for the three sets of positions (`POSITIONS`), read off the
    tensors in `env`."""

    def __init__(self, plan, env: dict, lay: Layout):
        self.layout, self.samples = lay, plan.kernels[0].samples
        names = lay.markers.masks
        actual = {name: np.asarray(to_numpy(env[name]), dtype=bool) for name in set(names)}
        self.real = actual[names[0]]
        pads = ~self.real
        self.masks = {"actual": actual,
                      "fixed_depth": {name: self.real for name in actual},
                      "padded": {name: value | pads for name, value in actual.items()}}
        self._shares: dict = {}

    def share(self, governor: Governor | None, run: str):
        """(samples,) share of a governed value's rows that `run` sends (1 where ungoverned):
        per sample for tokens, the positions any sample uses for a per-position table.
        Worked out once per governor and run: many values share a mask."""
        key = (governor, run)
        if key not in self._shares:
            self._shares[key] = self._share(governor, run)
        return self._shares[key]

    def _share(self, governor: Governor | None, run: str):
        if governor is None:
            return np.ones(self.samples)
        mask = self.masks[run][governor[0]]
        if governor[1] == "positions":
            return np.full(self.samples, float(mask.any(axis=0).mean()))
        return mask.mean(axis=1)

    def token_shares(self, run: str, chunks: int) -> np.ndarray | None:
        """(samples, chunks) share of each sample's time each of its tokens takes as it streams
        through the pipeline (`compiler.schedule.Streaming`): pads take none unless `run`
        charges them; None when the marked positions are not the streamed tokens."""
        if self.real.shape != (self.samples, chunks):
            return None
        sent = np.ones_like(self.real) if run == "padded" else self.real
        count = sent.sum(axis=1, keepdims=True)
        return np.where(count > 0, sent / np.maximum(count, 1), 1.0 / chunks)

    def rows(self, kernel: Kernel, tokens: list[int]) -> dict[str, np.ndarray] | None:
        """Matmul: run -> (samples, sum of `tokens`) float32 weights of the token rows each run
        charges, the calls' rows one after another; None when no mask applies."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: np.concatenate([self.masks[run][g[0]] if g else np.ones((self.samples, t), bool)
                                     for g, t in zip(governors, tokens)], axis=1).astype(np.float32)
                for run in POSITIONS}

    def queries(self, kernel: Kernel) -> dict[str, list] | None:
        """Attention: run -> per call, (samples,) queries that run (None: every real one)."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: [None if g is None else self.masks[run][g[0]].sum(axis=1) for g in governors]
                for run in POSITIONS}

    def fraction(self, kernel: Kernel) -> dict[str, np.ndarray] | None:
        """Generated: run -> (samples,) share of the kernel's elements its ops compute."""
        governors = self.layout.governors.get(kernel.name, ())
        if not any(governors):
            return None
        return {run: np.mean([self.share(g, run) for g in governors], axis=0) for run in POSITIONS}

    def route_shares(self, run: str) -> np.ndarray:
        """(routes,) the share of each sample route's rows that `run` sends: pads and halted
        positions take no link."""
        means = {g: float(np.mean(self.share(g, run))) for g in set(self.layout.route_governors)}
        return np.array([means[g] for g in self.layout.route_governors])

    def stats(self) -> DynamicStats:
        real = int(self.real.sum())
        names = self.layout.markers.masks
        steps = [self.masks["actual"][names[i]] for i in self.layout.recurrent]
        fractions = tuple(float((m & self.real).sum()) / max(real, 1) for m in steps)
        return DynamicStats(fractions, float(sum(fractions)) if steps else None, len(steps),
                            1.0 - real / max(self.real.size, 1), real, int(self.real.size))


def step_positions(plan, env: dict, lay: Layout | None) -> StepPositions | None:
    """The step's `StepPositions`, or None when the plan's graph has no markers (`lay` None)."""
    return None if lay is None else StepPositions(plan, env, lay)
