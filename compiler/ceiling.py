"""The utilization ceiling: the highest dense-MAC utilization any plan of a model can reach on
a wafer at a batch, under the one cost model and the one schedule (DESIGN.md, "Cost model").

A plan's step is bounded below by two facts of the schedule (`compiler.schedule`), each taken
over every mapping any plan could give each kernel (`options.Cells.grid`, every unrolling whose
memory fits SRAM with one sample in flight, no thinning), not over the mapping this plan chose:

- steady state: the step carries `samples` samples through its slowest stage, so it takes at
  least (samples - 1) T*, where T* is the smallest per-sample stage time at which every
  kernel, each on its fewest cores for that time (replicas included), fits the wafer together;
- fill: a stage that waits for whole samples (`schedule.Streaming.waits`; every stage when
  samples move whole) starts once the stages before it have passed the whole first sample, so
  the first sample crosses the segments between waits one after another, each at least as
  slow as its slowest stage: at least sum_g T_g. Any split of the wafer among the segments
  gives some T_g; the smallest sum is bounded by Lagrangian duality: for every lambda >= 0,
  sum_g min_T (T + lambda C_g(T)) - lambda cores <= sum_g T_g, with C_g(T) the fewest cores
  that bring segment g to T (Boyd & Vandenberghe 2004, section 5.2: weak duality).

So step >= sum_g T_g + (samples - 1) T* and utilization <= samples MACs / (cores simd step).
The bound is optimistic where that keeps it a bound: it leaves out hops, congestion, the
update, and kernels that execute no MACs (they get no time and no cores), so no plan beats it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimate import kernel_cycles
from .kernels import kind_of
from .options import cells_of

EVERY_UNROLLING = 10 ** 9            # `Cells.grid` thins to this many counts per dimension: none


@dataclass(frozen=True)
class Ceiling:
    """The bound and what sets it: `utilization_pct` and `samples_per_s` no plan exceeds;
    `steady_pct`, the utilization without fill (every sample at T*); T*, the fill's least
    cycles, the step's least cycles, the segments and the samples."""
    utilization_pct: float
    samples_per_s: float
    steady_pct: float
    stage_cycles: float
    fill_cycles: float
    step_cycles: float
    segments: int
    samples: int


def ceiling(plan) -> Ceiling:
    """The utilization ceiling of `plan`'s model, wafer, batch and assumed densities."""
    target, samples = plan.target, plan.kernels[0].samples
    working = [k for k in plan.kernels if kind_of(k).dense_macs(k) > 0]
    macs = sum(float(kernel_cycles(k, plan.mapping[k.name].replica, target,
                                   plan.density_of(k.name), plan.harvest).macs[0])
               for k in working)
    fronts = {k.name: front(k, plan) for k in working}
    steady = least_stage_time([fronts[k.name] for k in working], target.cores, samples)
    groups = [[fronts[k.name] for k in g if k.name in fronts] for g in segments(plan)]
    fill = least_fill([g for g in groups if g], target.cores)
    step = fill + (samples - 1) * steady
    peak = target.cores * target.simd
    return Ceiling(100.0 * samples * macs / (peak * step), samples * target.clock_hz / step,
                   100.0 * macs / (peak * steady), steady, fill, step, len(groups), samples)


def segments(plan) -> list[list]:
    """The plan's kernels in runs that end where the next stage waits for whole samples
    (each kernel on its own when samples move whole)."""
    streaming = plan.streaming
    waits = streaming.waits if streaming.chunks > 1 else (True,) * len(plan.kernels)
    runs: list[list] = []
    for kernel, wait in zip(plan.kernels, waits):
        if wait or not runs:
            runs.append([])
        runs[-1].append(kernel)
    return runs


def front(kernel, plan) -> tuple[np.ndarray, np.ndarray]:
    """(cores, cycles) of one replica of `kernel` on every mapping that fits, the cheapest
    for each time: cores rising, cycles falling."""
    grid = cells_of(kernel, plan.target).grid(plan.optimizer, 1, plan.density_of(kernel.name),
                                              plan.harvest, EVERY_UNROLLING)
    cores = np.array([r * c for r, c, _, _ in grid], dtype=np.float64)
    cycles = np.array([t for _, _, _, t in grid], dtype=np.float64)
    order = np.lexsort((cycles, cores))
    cores, cycles = cores[order], cycles[order]
    keep = cycles < np.minimum.accumulate(np.concatenate(([np.inf], cycles[:-1])))
    return cores[keep], cycles[keep]


def cores_for(fronts, time: np.ndarray, replicas: int = 1) -> np.ndarray:
    """The fewest cores that bring every kernel of `fronts` to stage time `time` (an array),
    each with up to `replicas` replicas sharing its samples; inf where one cannot."""
    total = np.zeros_like(time, dtype=np.float64)
    for cores, cycles in fronts:
        best = np.full_like(total, np.inf)
        for r in range(1, replicas + 1):
            # cycles fall as cores rise: the first option at or below r * time is the cheapest
            at = np.searchsorted(-cycles, -r * time, side="left")
            fits = at < len(cycles)
            best = np.minimum(best, np.where(fits, r * cores[np.minimum(at, len(cores) - 1)],
                                             np.inf))
        total += best
    return total


def least_stage_time(fronts, capacity: int, samples: int) -> float:
    """T*: the smallest stage time at which every kernel fits `capacity` cores together."""
    times = np.unique(np.concatenate([cycles[None, :] / np.arange(1, samples + 1)[:, None]
                                      for _, cycles in fronts], axis=None))

    def fits(i: int) -> bool:
        return bool(cores_for(fronts, times[i:i + 1], samples)[0] <= capacity)
    if not len(times) or not fits(len(times) - 1):
        raise ValueError("no mapping of every kernel fits the wafer together")
    low, high = 0, len(times) - 1          # fewer cores fit as the time grows: bisect
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid + 1, high)
    return float(times[low])


def least_fill(groups, capacity: int, multipliers: int = 400) -> float:
    """A lower bound on sum_g T_g over splits of `capacity` cores among the segments `groups`
    (weak duality, best of `multipliers` values of lambda; every one gives a bound)."""
    tables = []
    for fronts in groups:
        times = np.unique(np.concatenate([cycles for _, cycles in fronts]))
        tables.append((times, cores_for(fronts, times)))
    best = 0.0
    for lam in np.geomspace(1e-9, 1e3, multipliers):
        dual = sum(float(np.min(times + lam * needed)) for times, needed in tables) - lam * capacity
        best = max(best, float(dual))
    return best
