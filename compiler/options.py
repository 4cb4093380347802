"""The mapping space of a kernel, derived from its loop nest.

An option unrolls the nest's row dimension over `rows` cores and its column dimension over
`cols` cores (rows != cols allowed: irregular, non-square work), and replicates the result
`replicas` times over the batch. For each option the cost model gives the per-core memory
(options over SRAM are dropped), the per-sample cycles at the kernel's assumed densities, and
the once-per-step update plus gradient all-reduce. Options that another option beats on both
area and time are dropped too (Pareto front), which leaves the search short lists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import estimate
from .errors import WaferFitError
from .kernels import Kernel, kind_of
from .mapping import Mapping, in_flight
from .optim_spec import OptimizerSpec
from .target import Target


# Unroll counts tried per dimension (`_thin`). `FINE_PER_DIM` when nothing packs at the search's
# least bottleneck (`plan._finalists`): the packer needs shapes of many heights to fill a large
# wafer (a 4-layer BERT on wse2: 52% of the cores packed at 24 counts, 84% at 96). A kind that
# works out a whole grid at once (`sample_cycles_grid`) makes the finer grid cheap. A nest
# unrolled along one dimension over both (element-wise work) costs by its area and its edges,
# so it keeps `PER_DIM`.
PER_DIM = 24
FINE_PER_DIM = 96


@dataclass(frozen=True)
class Option:
    mapping: Mapping
    sample_cycles: float      # forward + backward for one sample, on one replica
    step_cycles: float        # update + gradient all-reduce, once per step
    memory: int               # bytes on the most loaded core
    boundary_cycles: float = 0.0   # per sample: its routes' wavelets over the region's wider side

    @property
    def area(self) -> int:
        return self.mapping.cores

    def stage_time(self, samples: int) -> float:
        return float(stage_times(self.sample_cycles, self.boundary_cycles, self.mapping.replicas,
                                 self.step_cycles, samples))


def stage_times(sample_cycles, boundary_cycles, replicas, step_cycles, samples: int):
    """Per-sample occupancy of a stage (of one option, or arrays of them): replicas share the
    samples, and the once-per-step work is spread over the step's samples (what bounds
    samples/s in steady state). A region cannot take in or send out its samples faster than
    its boundary allows."""
    return np.maximum(sample_cycles, boundary_cycles) / replicas + step_cycles / max(samples, 1)


def unroll_counts(extent: int, limit: int) -> list[int]:
    """Core counts worth trying along a dimension: for each distinct tile size ceil(extent / n),
    the smallest n that gives it (more cores with the same tile only idle), up to `limit`."""
    best: dict[int, int] = {}
    for n in range(1, max(1, min(extent, limit)) + 1):
        best.setdefault(math.ceil(extent / n), n)
    return sorted(best.values())


def unrollings(extent: int, limit: int, per_dim: int) -> list[int]:
    """The core counts a grid tries along a dimension: `unroll_counts` thinned to `per_dim`,
    always including those `PER_DIM` keeps (a finer grid only adds shapes)."""
    counts = unroll_counts(extent, limit)
    return sorted(set(_thin(counts, per_dim)) | set(_thin(counts, min(per_dim, PER_DIM))))


def _thin(counts: list[int], keep: int) -> list[int]:
    """At most `keep` counts, spread geometrically, always keeping both ends."""
    if len(counts) <= keep:
        return counts
    picks = {counts[0], counts[-1]}
    for i in range(keep):
        picks.add(counts[min(len(counts) - 1, round((len(counts) - 1) * (i / (keep - 1)) ** 2))])
    return sorted(picks)


def kernel_options(kernel: Kernel, target: Target, optimizer: OptimizerSpec, in_flight: int,
                   density: tuple[float, float] = (1.0, 1.0), replicas=(1,),
                   per_dim: int = PER_DIM, harvest: bool = True, boundary: float = 0.0,
                   cells: "Cells | None" = None) -> list[Option]:
    """Valid, non-dominated options of `kernel` (sorted by area). `boundary`: the wavelets per
    sample the kernel's routes bring in or take out, whichever is more (`boundary_cycles`).
    `cells`: the kernel's figures already worked out (`Cells`, shared by repeated layers)."""
    cells = cells or Cells(kernel, target)
    updates = cells.updates(optimizer)
    found = []                # (rows, cols, replicas, memory, sample cycles, step cycles)
    if kernel.nest.one_dim:           # element-wise work: its area and edges set its cost
        per_dim = min(per_dim, PER_DIM)
    for r, c, memory, sample in cells.grid(optimizer, in_flight, density, harvest, per_dim):
        for rep in replicas:
            if rep > kernel.samples or r > target.rows or c * rep > target.cols:
                continue
            step = updates.get((r, c, rep))
            if step is None:
                step = updates[r, c, rep] = estimate.update_cycles(kernel, Mapping(r, c, rep),
                                                                   target, optimizer)
            found.append((r, c, rep, memory, sample, step))
    return _front(found, kernel.samples, boundary)


class Cells:
    """One kernel's cost-model figures per rows x cols (x replicas), each worked out once: the
    option lists of every replica set, boundary and pipeline position reuse them. They depend
    on what `cached_options` keys a kernel by, not on its name."""

    def __init__(self, kernel: Kernel, target: Target):
        self.kernel, self.target = kernel, target
        self._sample, self._grids, self._updates = {}, {}, {}

    def grid(self, optimizer: OptimizerSpec, in_flight: int, density, harvest: bool,
             per_dim: int) -> list[tuple[int, int, int, float]]:
        """(rows, cols, memory, sample cycles) of every unrolling worth trying (`unroll_counts`,
        thinned to `per_dim` per dimension) whose memory fits the SRAM."""
        key = (optimizer, in_flight, density, harvest, per_dim)
        if key in self._grids:
            return self._grids[key]
        kernel, target = self.kernel, self.target
        rows_extent, cols_extent = kernel.nest.extents
        rows = unrollings(rows_extent, target.rows, per_dim)
        cols = unrollings(cols_extent, target.cols, per_dim)
        self._sample_grid(rows, cols, density, harvest)
        grid = []
        for r in rows:
            for c in cols:
                if kernel.nest.one_dim and r * c > rows_extent:
                    continue        # one dimension unrolled over both: no more cores than its extent
                memory = estimate.memory_per_core(kernel, Mapping(r, c), target, optimizer,
                                                  in_flight)
                if memory <= target.sram_bytes:
                    grid.append((r, c, memory, self._sample_cycles(r, c, density, harvest)))
        self._grids[key] = grid
        return grid

    def _sample_grid(self, rows: list[int], cols: list[int], density, harvest: bool) -> None:
        """Every rows x cols mapping's sample cycles at once, where the kind works them out
        together (`sample_cycles_grid`); else each is asked as the grid comes to it."""
        together = kind_of(self.kernel).sample_cycles_grid
        if together is None or all((r, c, density, harvest) in self._sample
                                   for r in rows for c in cols):
            return
        cycles = together(self.kernel, rows, cols, self.target, density, harvest)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                self._sample[r, c, density, harvest] = float(cycles[i, j])

    def _sample_cycles(self, rows: int, cols: int, density, harvest: bool) -> float:
        key = (rows, cols, density, harvest)
        if key not in self._sample:
            self._sample[key] = estimate.sample_cycles(self.kernel, Mapping(rows, cols),
                                                       self.target, density, harvest)
        return self._sample[key]

    def updates(self, optimizer: OptimizerSpec) -> dict:
        """(rows, cols, replicas) -> update cycles, filled in as the option lists ask."""
        return self._updates.setdefault(optimizer, {})


def _front(found: list[tuple], samples: int, boundary: float) -> list[Option]:
    """`pareto` of the options `found` lists, worked out on arrays: only the survivors become
    Options."""
    if not found:
        return []
    r, c, rep, memory, sample, step = (np.array(col) for col in zip(*found))
    bound = _boundary(float(boundary), r, c)
    keep = _pareto(r * c * rep, stage_times(sample, bound, rep, step, samples),
                   np.minimum(r, c * rep))
    return [Option(Mapping(*found[i][:3]), found[i][4], found[i][5], found[i][3], float(bound[i]))
            for i in keep]


def boundary_cycles(wavelets: float, mapping: Mapping) -> float:
    """Cycles per sample to move `wavelets` across one replica's boundary: a route leaves or
    enters over the side it travels through, one lane (one wavelet per cycle) per core of that
    side (`placement.route`), at best the wider side."""
    return float(_boundary(wavelets, mapping.rows, mapping.cols))


def _boundary(wavelets: float, rows, cols):
    return wavelets / np.maximum(rows, cols)


def pareto(options: list[Option], samples: int) -> list[Option]:
    """Drop every option that another beats (or ties) on both area and stage time. Of options
    that tie on both, the squarest region stays: its narrower side is the lanes its routes
    leave and arrive over (`placement.route`), so a one-row region would send everything over
    one link."""
    if not options:
        return []
    keep = _pareto(np.array([o.area for o in options]),
                   np.array([o.stage_time(samples) for o in options]),
                   np.array([min(o.mapping.rows, o.mapping.width) for o in options]))
    return [options[i] for i in keep]


def _pareto(area: np.ndarray, time: np.ndarray, narrow: np.ndarray) -> list[int]:
    """`pareto` on arrays: the indices kept, by area. Sorted by (area, time, widest narrow side)
    (stable: ties keep their order), an option stays when it is faster than every one before."""
    order = np.lexsort((-narrow, time, area))
    t = time[order]
    return order[np.concatenate([[True], t[1:] < np.minimum.accumulate(t)[:-1]])].tolist()


_CACHE: dict = {}
_CELLS: dict = {}


def cached_options(kernel: Kernel, target: Target, optimizer: OptimizerSpec, in_flight: int,
                   density: tuple[float, float], replicas: tuple[int, ...],
                   harvest: bool = True, boundary: float = 0.0,
                   per_dim: int = PER_DIM) -> list[Option]:
    """Repeated layers (a 12-layer stack) share one option list: the options depend on the
    nest and the streams' roles, not on the kernel's name. Lists that differ only in replica
    set, boundary or pipeline position share the kernel's `Cells`."""
    key = (_cells_key(kernel, target), optimizer, in_flight, density, replicas, harvest,
           boundary, per_dim)
    if key not in _CACHE:
        if len(_CACHE) > 4096:
            clear_cache()
        _CACHE[key] = kernel_options(kernel, target, optimizer, in_flight, density, replicas,
                                     per_dim, harvest, boundary, cells_of(kernel, target))
    return _CACHE[key]


def _cells_key(kernel: Kernel, target: Target) -> tuple:
    """What a kernel's figures depend on: its nest and the streams' roles, not its name."""
    roles = tuple(role for role, _ in kernel.streams)
    return (kernel.kind, kernel.nest, kernel.samples, kernel.param_numel, roles, target)


def cells_of(kernel: Kernel, target: Target) -> Cells:
    """The kernel's `Cells`, shared by every kernel with the same figures (repeated layers)."""
    return _CELLS.setdefault(_cells_key(kernel, target), Cells(kernel, target))


def clear_cache() -> None:
    """Forget every cached option list and figure (a benchmark's cold start)."""
    _CACHE.clear()
    _CELLS.clear()


def shape_for_area(kernel: Kernel, area: int, target: Target) -> Mapping:
    """The rows x cols closest to `area` cores with rows/cols following the kernel's extents."""
    max_r, max_c = kernel.nest.extents
    max_r, max_c = min(max_r, target.rows), min(max_c, target.cols)
    if kernel.nest.one_dim:
        area = min(area, max_r)
    ratio = 1.0 if kernel.nest.one_dim else max_r / max_c
    rows = min(max_r, max(1, round(math.sqrt(area * ratio))))
    cols = min(max_c, max(1, area // rows))
    rows = min(max_r, max(1, area // cols))
    return Mapping(rows, cols)


def minimal_mapping(kernel: Kernel, index: int, stages: int, target: Target,
                    optimizer: OptimizerSpec) -> Mapping:
    """Smallest rectangle that fits SRAM, by bisection on the area (memory falls as area grows);
    raises `WaferFitError` with the figures when no rectangle fits."""
    flight = in_flight(index, stages, kernel.samples)

    def need(area):
        return estimate.memory_per_core(kernel, shape_for_area(kernel, area, target), target,
                                        optimizer, flight)

    largest = min(target.cores, math.prod(kernel.nest.extents))
    if need(largest) > target.sram_bytes:
        m = shape_for_area(kernel, largest, target)
        raise WaferFitError(
            f"kernel {kernel.name!r} needs {need(largest):,} bytes per core even when spread over "
            f"{m.rows} x {m.cols} cores of the {target.name} wafer, but a core has "
            f"{target.sram_bytes:,} bytes of SRAM; use a larger wafer preset, a smaller layer "
            f"or a smaller batch")
    low, high = 0, largest
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if need(mid) <= target.sram_bytes else (mid, high)
    return shape_for_area(kernel, high, target)
