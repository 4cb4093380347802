"""The training step as a pipeline over samples and regions (DESIGN.md, "Cost model").

A region holds one kernel's weights; each sample passes through it twice, forward on the way in
and backward on the way back, so a stage's per-sample time is forward + backward and the
steady-state rate is set by the region with the largest sum. The recurrence

    finish[k][s] = max(finish[k-1][s] + hops[k], finish[k][s-1]) + t[k][s]

is evaluated one stage at a time with array operations over all samples. For a fixed stage k,
with a[s] = finish[k-1][s] + hops[k] and C the running sum of t[k], the recurrence unrolls to
the max-plus prefix scan

    finish[k][s] = C[s] + max_{j <= s} (a[j] - C[j-1]),

so each stage is a cumsum and a maximum.accumulate, exact in float64 for integer cycles.
"""
from __future__ import annotations

import numpy as np


def pipeline_finish(stage_cycles: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """finish[k, s] for stage times `stage_cycles` (stages, samples) and entry `hops` (stages,)."""
    t = np.asarray(stage_cycles, dtype=np.float64)
    hops = np.asarray(hops, dtype=np.float64)
    finish = np.empty_like(t)
    arrival = np.zeros(t.shape[1])
    for k in range(t.shape[0]):
        running = np.cumsum(t[k])
        before = running - t[k]
        finish[k] = running + np.maximum.accumulate(arrival + hops[k] - before)
        arrival = finish[k]
    return finish


def step_cycles(stage_cycles: np.ndarray, hops: np.ndarray, return_hops: float,
                update_cycles: np.ndarray) -> float:
    """Cycles of one training step: the last sample leaves the last stage, its gradient travels
    back through the regions (`return_hops`), then every region updates its weights in place
    (all regions in parallel, so the slowest update counts)."""
    if stage_cycles.size == 0:
        return 0.0
    finish = pipeline_finish(stage_cycles, hops)
    return float(finish[-1, -1] + return_hops + np.max(update_cycles, initial=0.0))
