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
  when its output has the mask's positions ([B, T, ...] or [B*T, ...]). The kernel does the
  share of its elements that its ops' positions make up, per sample.
Per step (`StepPositions`): the masks' values, and three runs timed from the same tensors:
- "actual": each span charges its own mask's positions (what the wafer did);
- "fixed_depth": every span charges every real position (the first marker's mask): the same
  model at fixed depth = max steps, pads still free;
- "padded": each span charges its positions plus the pads: pads streamed like real tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.kernels import Kernel
from compiler.passes import MATMUL_OPS, VIEW_OPS
from compiler.steps import Markers, markers

from .backend import to_numpy

VARIANTS = ("actual", "fixed_depth", "padded")


@dataclass(frozen=True, eq=False)
class Layout:
    """`masks`: mask value per call (matmul, attention) or per counted op (generated), None
    where no marker applies. `segments`: each call's marker index. `recurrent`: the marker
    indices of the recurrent steps (the spans a kernel is called in more than once)."""
    markers: Markers
    masks: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    segments: dict[str, tuple[int, ...]] = field(default_factory=dict)
    recurrent: tuple[int, ...] = ()


def layout(plan) -> Layout | None:
    """The plan's `Layout` (cached on the plan), or None when its graph has no markers."""
    cached = getattr(plan, "_dynamic_layout_cache", False)
    if cached is False:
        cached = _build_layout(plan)
        object.__setattr__(plan, "_dynamic_layout_cache", cached)
    return cached


def _build_layout(plan) -> Layout | None:
    graph = plan.graph
    found = markers(graph)
    if not found:
        return None
    shape = graph.type_of[found.masks[0]].shape
    if len(shape) != 2:
        raise ValueError(f"running marker masks must be [batch, positions], got {shape}")
    masks, segments, recurrent = {}, {}, set()
    for kernel in plan.kernels:
        ops = _governing_ops(graph, kernel, shape)
        masks[kernel.name] = tuple(found.mask_of.get(op) if op and applies else None
                                   for op, applies in ops)
        segments[kernel.name] = tuple(found.segment.get(op, 0) for op, _ in ops if op)
        if kernel.kind != "generated" and kernel.steps > 1:
            recurrent.update(segments[kernel.name])
    return Layout(found, masks, segments, tuple(sorted(recurrent)))


def _governing_ops(graph, kernel: Kernel, shape) -> list[tuple[str | None, bool]]:
    """(op whose marker governs, whether the mask applies) per call or per counted op."""
    batch, positions = shape
    types = graph.type_of
    if kernel.kind == "matmul":
        ops = set(kernel.ops)
        out = []
        for call in kernel.calls:
            x = call["x"]
            forward = next((c.name for c in graph.consumers.get(x, [])
                            if c.op in MATMUL_OPS and c.name in ops), None)
            width = types[x].shape[-1] if types[x].shape else 1
            out.append((forward, types[x].numel == batch * positions * width))
        return out
    if kernel.kind == "attention":
        return [(call["probs"], len(types[call["probs"]].shape) >= 2
                 and types[call["probs"]].shape[-2] == positions) for call in kernel.calls]
    return [(op.name, _token_shaped(types[out].shape, batch, positions))
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


def _token_shaped(shape, batch: int, positions: int) -> bool:
    return (len(shape) >= 2 and tuple(shape[:2]) == (batch, positions)) or \
        (len(shape) >= 1 and positions > 1 and shape[0] == batch * positions)


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

    def _mask(self, name: str | None, variant: str):
        return None if name is None else self.masks[variant][name]

    def rows(self, kernel: Kernel, tokens: list[int]) -> dict[str, np.ndarray] | None:
        """Matmul: variant -> (samples, sum of `tokens`) float32 weights of the token rows each
        run charges, the calls' rows concatenated; None when no mask applies."""
        names = self.layout.masks.get(kernel.name, ())
        if not any(names):
            return None
        out = {}
        for variant in VARIANTS:
            parts = [self._mask(name, variant) if name else np.ones((self.samples, t), dtype=bool)
                     for name, t in zip(names, tokens)]
            out[variant] = np.concatenate(parts, axis=1).astype(np.float32)
        return out

    def queries(self, kernel: Kernel) -> dict[str, list] | None:
        """Attention: variant -> per call, (samples,) running queries (None: all real ones)."""
        names = self.layout.masks.get(kernel.name, ())
        if not any(names):
            return None
        return {variant: [None if name is None else self._mask(name, variant).sum(axis=1)
                          for name in names] for variant in VARIANTS}

    def fraction(self, kernel: Kernel) -> dict[str, np.ndarray] | None:
        """Generated: variant -> (samples,) share of the kernel's elements its ops compute."""
        names = self.layout.masks.get(kernel.name, ())
        if not any(names):
            return None
        out = {}
        for variant in VARIANTS:
            shares = [np.ones(self.samples) if name is None else self._mask(name, variant).mean(axis=1)
                      for name in names]
            out[variant] = np.mean(shares, axis=0)
        return out

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
