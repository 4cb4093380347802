"""What the measurement works out once per plan, and what one step hands the kernel kinds.

`PlanContext` is owned by the trainer (never stored on the frozen `Plan`): the positions layout
of dynamic execution, the congestion of every route at full load, and, for weight sparsity,
which parameter's mask reaches each kernel's resident tiles and those tiles per mask.
`Runs` is what a kind's `measured_counts` reads for one step: the array namespace, the timing
variants, the positions each variant charges, and the masked tiles.
"""
from __future__ import annotations

import functools
from functools import cached_property
from typing import NamedTuple

import numpy as np

from compiler import cost, in_flight
from compiler.kernels import Kernel, Variant, kind_of

from ..backend import nonzeros, to_numpy
from ..ops import KERNELS
from .positions import StepPositions, layout

HARVESTED, DENSE = "harvested", "dense"


@functools.lru_cache(maxsize=4)
def variants(harvest: bool, dynamic: bool) -> tuple[Variant, ...]:
    """The timing variants of a step, as rows of one array: skipping zeros and not (the run's own
    is the one `harvest` says), and with `running` markers the fixed-depth and padded
    baselines, each charged as this run charges zeros."""
    out = (Variant(HARVESTED, True), Variant(DENSE, False))
    if dynamic:
        out += (Variant("fixed_depth", harvest, "fixed_depth"), Variant("padded", harvest, "padded"))
    return out


class Update(NamedTuple):
    """A kernel's update per core (`cost.update_cycles`: (rows, cols), or one number for
    every core), on its busiest core, and summed over the cores of one replica."""
    per_core: np.ndarray | float
    busiest: float
    total: float


def update_of(kernel: Kernel, mapping, target, optimizer, tiles=None) -> Update:
    """The update of the weights `kernel`'s cores hold (only the kept ones of masked `tiles`)."""
    per_core = cost.update_cycles(kind_of(kernel).weights_per_core(kernel, mapping, tiles), mapping,
                                  target, optimizer)
    if np.ndim(per_core) == 0:
        return Update(float(per_core), float(per_core), float(per_core) * mapping.rows * mapping.cols)
    return Update(per_core, float(np.max(per_core)), float(np.sum(per_core)))


class PlanContext:
    """Per-plan caches of the measurement, owned by the trainer."""

    def __init__(self, plan):
        self.plan = plan
        self._tiles: dict[str, tuple] = {}
        self._full_load: dict[int, np.ndarray] = {}
        self._update_busiest: dict[int, np.ndarray] = {}
        self.cycles: dict = {}         # kernel -> its `KernelCycles` of the last step measured
        self.route_bytes: int | None = None   # what the routes' values hold (`step._holdable`)
        self.compiled: dict = {}       # own variant -> the compiled measurement, or None

    @cached_property
    def layout(self):
        return layout(self.plan)

    @cached_property
    def congestion(self) -> np.ndarray:
        """(1, kernels) congestion with every route at full load."""
        return self.plan.congestion_array()

    def full_load(self, variants_: int) -> np.ndarray:
        """(variants_, kernels) `congestion` for each timing variant (read-only)."""
        out = self._full_load.get(variants_)
        if out is None:
            out = self._full_load[variants_] = np.repeat(self.congestion, variants_, axis=0)
            out.flags.writeable = False
        return out

    @cached_property
    def measured_values(self) -> frozenset[str]:
        """The graph values the measurement reads from a step's tensors: every kernel's streams
        (what its kind counts), the values the sample routes carry, and the position markers."""
        names = {value for k in self.plan.kernels for _, value in k.streams}
        names |= set(self.route_values[0])
        if self.layout is not None:
            names |= set(self.layout.markers.masks)
        return frozenset(names)

    @cached_property
    def route_values(self) -> tuple[tuple[str, ...], np.ndarray]:
        """The distinct values the plan's sample routes carry, and each route's index among
        them (several routes may carry one value)."""
        names = tuple(dict.fromkeys(rt.edge.value for rt in self.plan.sample_routes))
        index = {name: i for i, name in enumerate(names)}
        return names, np.array([index[rt.edge.value] for rt in self.plan.sample_routes], dtype=np.intp)

    @cached_property
    def mappings(self) -> list:
        """The mapping of each of the plan's kernels, in order."""
        return [self.plan.mapping[k.name] for k in self.plan.kernels]

    @cached_property
    def cores(self) -> int:
        """Cores of every kernel's region, every replica."""
        return sum(m.cores for m in self.mappings)

    @cached_property
    def schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(replicas (K,), entry latency (K,), `Plan.latency`) of the plan's kernels."""
        plan = self.plan
        return (np.array([plan.mapping[k.name].replicas for k in plan.kernels], dtype=np.float64),
                plan.latency())

    @cached_property
    def in_flight(self) -> dict[str, int]:
        """Kernel -> the samples its stage holds."""
        kernels = self.plan.kernels
        return {k.name: in_flight(i, len(kernels), k.samples) for i, k in enumerate(kernels)}

    @cached_property
    def updates(self) -> dict[str, "Update"]:
        """Kernel -> the update (and all-reduce) of the weights its cores hold unmasked."""
        plan = self.plan
        return {k.name: update_of(k, plan.mapping[k.name], plan.target, plan.optimizer)
                for k in plan.kernels}

    def update_busiest(self, variants_: int) -> np.ndarray:
        """(variants_, kernels) each kernel's unmasked update on its busiest core, in every
        variant (read-only)."""
        out = self._update_busiest.get(variants_)
        if out is None:
            row = [self.updates[k.name].busiest for k in self.plan.kernels]
            out = self._update_busiest[variants_] = np.repeat([row], variants_, axis=0)
            out.flags.writeable = False
        return out

    @cached_property
    def weight_views(self) -> dict[str, tuple]:
        """Kernel -> (the fqn of the weight whose mask reaches its tiles, the view ops from the
        parameter to the kernel's weight operand); kernels without one are absent."""
        graph = self.plan.graph
        views = {k.name: kind_of(k).weight_view(graph, k) for k in self.plan.kernels}
        return {name: view for name, view in views.items() if view is not None}

    def tiles(self, xp, kernel: Kernel, weight_masks: dict):
        """The kind's masked tiles of `kernel`'s weight, or None (unmasked). Cached while the
        caller passes the same mask array: masks are replaced, never modified in place."""
        view = self.weight_views.get(kernel.name)
        if view is None or view[0] not in weight_masks:
            return None
        source = weight_masks[view[0]]
        hit = self._tiles.get(kernel.name)
        if hit is not None and hit[0] is source and hit[1] is xp:
            return hit[2]
        value = xp.asarray(source)
        for op in view[1]:
            value = KERNELS[op.op](xp, value, *op.args[1:], **dict(op.kwargs))
        shape = kernel.nest.extents
        mapping = self.plan.mapping[kernel.name]
        tiles = kind_of(kernel).mask_tiles(xp, to_numpy, value, mapping) \
            if tuple(value.shape) == shape else None
        self._tiles[kernel.name] = (source, xp, tiles)
        return tiles

    def densities(self, xp, env: dict) -> dict[str, tuple[float, float]]:
        """Kernel -> (density of x, density of dY) of the operands its kind harvests, measured on
        the tensors in `env` (kernels whose kind harvests nothing are absent)."""
        out = {}
        for kernel in self.plan.kernels:
            streamed = kind_of(kernel).streamed(kernel)
            if not streamed:
                continue
            values = [env.get(streamed[role]) if role in streamed else None for role in ("x", "dy")]
            out[kernel.name] = tuple(nonzeros(xp, v) / max(v.size, 1)
                                     if v is not None else 1.0 for v in values)
        return out


class Runs:
    """One step as the kinds measure it: `xp`, the `variants`, and per kernel the rows, queries
    or shares of elements each set of positions charges (None without markers) and the
    masked tiles (None when unmasked)."""

    host = staticmethod(to_numpy)

    def __init__(self, xp, variants_: tuple[Variant, ...], positions: StepPositions | None,
                 tiles: dict):
        self.xp, self.variants, self.positions, self._tiles = xp, variants_, positions, tiles
        self.names = tuple(v.name for v in variants_)
        self.harvests = tuple(v.harvest for v in variants_)

    def rows(self, kernel: Kernel, tokens: list[int]):
        return None if self.positions is None else self.positions.rows(kernel, tokens)

    def queries(self, kernel: Kernel):
        return None if self.positions is None else self.positions.queries(kernel)

    def fraction(self, kernel: Kernel):
        return None if self.positions is None else self.positions.fraction(kernel)

    def tiles(self, kernel: Kernel):
        return self._tiles.get(kernel.name)

    @property
    def masked(self) -> bool:
        """Whether a kernel's weight is masked this step."""
        return bool(self._tiles)
