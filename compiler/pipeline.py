"""The training step as a pipeline over samples and regions (DESIGN.md, "Cost model").

A region holds one kernel's weights; each sample passes through it twice, forward on the way in
and backward on the way back, so a stage's per-sample time is forward + backward and the
steady-state rate is set by the region with the largest sum. The recurrence

    finish[k][s] = max(finish[k-1][s] + hops[k], finish[k][s-1]) + t[k][s]

is evaluated one anti-diagonal (k + s = d) at a time: every cell on a diagonal depends only on
the previous diagonal, so each diagonal is one vectorized update.
"""
from __future__ import annotations

import numpy as np


def pipeline_finish(stage_cycles: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """finish[k, s] for stage times `stage_cycles` (stages, samples) and entry `hops` (stages,)."""
    t = np.asarray(stage_cycles, dtype=np.float64)
    stages, samples = t.shape
    hops = np.asarray(hops, dtype=np.float64)
    padded = np.zeros((stages + 1, samples + 1))   # row 0 / column 0 are the "before" boundary
    for d in range(stages + samples - 1):
        k = np.arange(max(0, d - samples + 1), min(stages, d + 1))
        s = d - k
        ready = np.maximum(padded[k, s + 1] + hops[k], padded[k + 1, s])
        padded[k + 1, s + 1] = ready + t[k, s]
    return padded[1:, 1:]


def step_cycles(stage_cycles: np.ndarray, hops: np.ndarray, return_hops: float,
                update_cycles: np.ndarray) -> float:
    """Cycles of one training step: the last sample leaves the last stage, its gradient travels
    back through the regions (`return_hops`), then every region updates its weights in place
    (all regions in parallel, so the slowest update counts)."""
    if stage_cycles.size == 0:
        return 0.0
    finish = pipeline_finish(stage_cycles, hops)
    return float(finish[-1, -1] + return_hops + np.max(update_cycles, initial=0.0))
