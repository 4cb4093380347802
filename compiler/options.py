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

from . import cost
from .cost import Mapping
from .kernels import Kernel
from .optim_spec import OptimizerSpec
from .target import Target


@dataclass(frozen=True)
class Option:
    mapping: Mapping
    sample_cycles: float      # forward + backward for one sample, on one replica
    step_cycles: float        # update + gradient all-reduce, once per step
    memory: int               # bytes on the most loaded core

    @property
    def area(self) -> int:
        return self.mapping.cores

    def stage_time(self, samples: int) -> float:
        """Per-sample occupancy of the stage: replicas share the samples, and the once-per-step
        work is spread over the step's samples (what bounds samples/s in steady state)."""
        return self.sample_cycles / self.mapping.replicas + self.step_cycles / max(samples, 1)


def unroll_counts(extent: int, limit: int) -> list[int]:
    """Core counts worth trying along a dimension: for each distinct tile size ceil(extent / n),
    the smallest n that gives it (more cores with the same tile only idle), up to `limit`."""
    best: dict[int, int] = {}
    for n in range(1, max(1, min(extent, limit)) + 1):
        best.setdefault(math.ceil(extent / n), n)
    return sorted(best.values())


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
                   per_dim: int = 24) -> list[Option]:
    """Valid, non-dominated options of `kernel` (sorted by area)."""
    rows_extent, cols_extent = _extents(kernel)
    rows = _thin(unroll_counts(rows_extent, target.rows), per_dim)
    cols = _thin(unroll_counts(cols_extent, target.cols), per_dim)
    options = []
    for r in rows:
        for c in cols:
            if kernel.nest.row_dim == kernel.nest.col_dim and r * c > rows_extent:
                continue            # one dimension unrolled over both: no more cores than its extent
            base = Mapping(r, c)
            memory = cost.memory_per_core(kernel, base, target, optimizer, in_flight)
            if memory > target.sram_bytes:
                continue
            sample = cost.estimate_sample_cycles(kernel, base, target, density)
            for rep in replicas:
                if rep > kernel.samples or r > target.rows or c * rep > target.cols:
                    continue
                m = Mapping(r, c, rep)
                options.append(Option(m, sample, cost.update_cycles(kernel, m, target, optimizer), memory))
    return pareto(options, kernel.samples)


def _extents(kernel: Kernel) -> tuple[int, int]:
    """The extents of the nest's dimensions unrolled over rows and over columns."""
    n = kernel.nest
    return n.extent(n.row_dim), n.extent(n.col_dim)


def pareto(options: list[Option], samples: int) -> list[Option]:
    """Drop every option that another beats (or ties) on both area and stage time."""
    best: list[Option] = []
    for opt in sorted(options, key=lambda o: (o.area, o.stage_time(samples))):
        if not best or opt.stage_time(samples) < best[-1].stage_time(samples):
            best.append(opt)
    return best


_CACHE: dict = {}


def cached_options(kernel: Kernel, target: Target, optimizer: OptimizerSpec, in_flight: int,
                   density: tuple[float, float], replicas: tuple[int, ...]) -> list[Option]:
    """Repeated layers (a 12-layer stack) share one option list: the options depend on the
    nest, not on the kernel's name."""
    key = (kernel.kind, kernel.nest, kernel.samples, kernel.param_numel, kernel.computes_dx,
           target, optimizer, in_flight, density, replicas)
    if key not in _CACHE:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[key] = kernel_options(kernel, target, optimizer, in_flight, density, replicas)
    return _CACHE[key]
