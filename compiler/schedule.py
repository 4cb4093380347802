"""The one schedule: per-kernel times -> a training step (DESIGN.md, "Cost model").

A region holds one kernel's weights; each sample passes through it twice, forward on the way in
and backward on the way back, so a stage's per-sample time is forward + backward and the
steady-state rate is set by the region with the largest sum. Replicas share a stage's samples;
congestion on a shared link slows every kernel whose routes cross it (a link moves one wavelet
per cycle each way). The recurrence

    finish[k][s] = max(finish[k-1][s] + hops[k], finish[k][s-1]) + t[k][s]

is evaluated one stage at a time with array operations over all samples (and all timing
variants at once). For a fixed stage k, with a[s] = finish[k-1][s] + hops[k] and C the running
sum of t[k], the recurrence unrolls to the max-plus prefix scan

    finish[k][s] = C[s] + max_{j <= s} (a[j] - C[j-1]),

so each stage is a cumsum and a maximum.accumulate, exact in float64 for integer cycles. The last
sample's gradient then travels back through the regions, and every region updates its weights in
place. The static estimate (`compiler.estimate`) and the measurement (`simulator.measure`) both
call `step`; only their per-kernel times differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



def pipeline_finish(stage_cycles: np.ndarray, hops: np.ndarray) -> np.ndarray:
    """finish[..., k, s] for stage times `stage_cycles` (..., stages, samples) and entry `hops`
    (stages,); leading axes (the timing variants) are evaluated together. Written as
    finish[k] = C_k + start[k], each stage's scan is start[k] = max-accumulate(start[k - 1] +
    gap[k]) with gap[k][j] = C_{k-1}[j] + hops[k] - C_k[j - 1], known for every stage up front."""
    t = np.asarray(stage_cycles, dtype=np.float64)
    running = np.cumsum(t, axis=-1)                                     # C_k[s] of every stage
    gap = t - running + np.asarray(hops, dtype=np.float64)[:, None]     # hops[k] - C_k[s - 1]
    gap[..., 1:, :] += running[..., :-1, :]
    start = np.empty_like(t)
    if t.shape[-2]:
        np.maximum.accumulate(gap[..., 0, :], axis=-1, out=start[..., 0, :])
    for k in range(1, t.shape[-2]):
        np.add(start[..., k - 1, :], gap[..., k, :], out=start[..., k, :])
        np.maximum.accumulate(start[..., k, :], axis=-1, out=start[..., k, :])
    return np.add(running, start, out=start)


def step_cycles(stage_cycles: np.ndarray, hops: np.ndarray, return_hops: float,
                update_cycles: np.ndarray):
    """Cycles of one training step, per leading (variant) axis: the last sample leaves the last
    stage, its gradient travels back through the regions (`return_hops`), then every region
    updates its weights in place (all regions in parallel, so the slowest update counts)."""
    stage_cycles = np.asarray(stage_cycles, dtype=np.float64)
    if stage_cycles.size == 0:
        return np.zeros(stage_cycles.shape[:-2]) if stage_cycles.ndim > 2 else 0.0
    finish = pipeline_finish(stage_cycles, hops)
    slowest_update = np.asarray(update_cycles, dtype=np.float64).max(axis=-1, initial=0.0)
    cycles = finish[..., -1, -1] + return_hops + slowest_update
    return float(cycles) if np.ndim(cycles) == 0 else cycles


def stage_times(per_sample: np.ndarray, replicas: np.ndarray, congestion_cycles: np.ndarray):
    """A stage is as slow as its share of the samples, or its busiest link, whichever is more."""
    return np.maximum(per_sample / replicas, congestion_cycles)


def step(per_sample, replicas, congestion, hops, updates) -> np.ndarray:
    """(V,) cycles of the step of kernels with per-sample times `per_sample` (V, K, S),
    `replicas` (K,), per-sample `congestion` (V, K), entry `hops` (K,) and `updates` (V, K)."""
    replicas, hops = np.asarray(replicas, dtype=np.float64), np.asarray(hops, dtype=np.float64)
    stage = stage_times(np.asarray(per_sample, dtype=np.float64), replicas[:, None],
                        np.asarray(congestion, dtype=np.float64)[..., None])
    return np.atleast_1d(step_cycles(stage, hops, float(hops.sum()), updates))


@dataclass(frozen=True)
class Rates:
    """Per timing variant, the rates if only compute, or only the links (congestion included),
    limited each stage: Cerebras' Compute and Transmission Samples/s."""
    compute_samples_per_s: np.ndarray
    transmission_samples_per_s: np.ndarray


def rates(compute, link, replicas, congestion, clock_hz) -> Rates:
    """From the compute-only and link-only times `compute`, `link` (V, K, S) of each kernel's
    samples (their mean per stage), `replicas` (K,) and per-sample `congestion` (V, K)."""
    replicas = np.asarray(replicas, dtype=np.float64)
    compute = np.asarray(compute, dtype=np.float64).mean(axis=-1) / replicas
    link = np.maximum(np.asarray(link, dtype=np.float64).mean(axis=-1) / replicas,
                      np.asarray(congestion, dtype=np.float64))

    def rate(per):
        busiest = per.max(axis=-1, initial=0.0)
        return np.where(busiest > 0, clock_hz / np.where(busiest > 0, busiest, 1.0), np.inf)
    return Rates(rate(compute), rate(link))
