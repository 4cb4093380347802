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



@dataclass(frozen=True)
class Streaming:
    """How a sample moves through the pipeline. A sequence model streams each sample in
    `chunks` pieces (one per token: Hot Chips 2020, layer-pipelined execution streams the
    tokens through the layers), so the pipeline fills in token time, not sample time; a stage
    that `waits` for the whole sample (attention needs every key before its first query; a
    pooled head needs every token) starts when the last piece has arrived, then streams out."""
    chunks: int = 1
    waits: tuple[bool, ...] = ()


def pipeline_finish(stage_cycles: np.ndarray, hops: np.ndarray,
                    streaming: Streaming | None = None, token_shares=None) -> np.ndarray:
    """finish[..., k, j] for stage times `stage_cycles` (..., stages, samples) and entry `hops`
    (stages,); leading axes (the timing variants) are evaluated together. With `streaming`, j
    runs over the chunks of every sample, each taking its share of the sample's time:
    `token_shares` (..., samples, chunks), each sample's summing to 1 (a pad token's is 0: it
    is never sent), or equal shares when None. Written
    as finish[k] = C_k + start[k], each stage's scan is start[k] = max-accumulate(start[k - 1] +
    gap[k]) with gap[k][j] = C_{k-1}[j] + hops[k] - C_k[j - 1], known for every stage up front;
    a stage that waits for whole samples reads finish[k - 1] at each sample's last chunk."""
    t = np.asarray(stage_cycles, dtype=np.float64)
    chunks = streaming.chunks if streaming is not None else 1
    if chunks > 1:
        share = np.full(chunks, 1.0 / chunks) if token_shares is None else \
            np.asarray(token_shares, dtype=np.float64)[..., None, :, :]
        t = t[..., None] * share
        t = t.reshape(t.shape[:-2] + (-1,))
    running = np.cumsum(t, axis=-1)                                     # C_k[j] of every stage
    own = t - running + np.asarray(hops, dtype=np.float64)[..., None]   # hops[k] - C_k[j - 1]
    gap = own.copy()
    gap[..., 1:, :] += running[..., :-1, :]
    start = np.empty_like(t)
    if t.shape[-2]:
        np.maximum.accumulate(gap[..., 0, :], axis=-1, out=start[..., 0, :])
    for k in range(1, t.shape[-2]):
        if chunks > 1 and streaming.waits[k]:
            ready = _whole_samples(running[..., k - 1, :] + start[..., k - 1, :], chunks)
            np.add(ready, own[..., k, :], out=start[..., k, :])
        else:
            np.add(start[..., k - 1, :], gap[..., k, :], out=start[..., k, :])
        np.maximum.accumulate(start[..., k, :], axis=-1, out=start[..., k, :])
    return np.add(running, start, out=start)


def _whole_samples(finish: np.ndarray, chunks: int) -> np.ndarray:
    """Each chunk's time replaced by its sample's last chunk's."""
    last = finish.reshape(finish.shape[:-1] + (-1, chunks))[..., -1:]
    return np.broadcast_to(last, last.shape[:-1] + (chunks,)).reshape(finish.shape)


def step_cycles(stage_cycles: np.ndarray, hops: np.ndarray, return_hops: float,
                update_cycles: np.ndarray, streaming: Streaming | None = None, token_shares=None):
    """Cycles of one training step, per leading (variant) axis: the last sample leaves the last
    stage, its gradient travels back through the regions (`return_hops`), then every region
    updates its weights in place (all regions in parallel, so the slowest update counts)."""
    stage_cycles = np.asarray(stage_cycles, dtype=np.float64)
    if stage_cycles.size == 0:
        return np.zeros(stage_cycles.shape[:-2]) if stage_cycles.ndim > 2 else 0.0
    finish = pipeline_finish(stage_cycles, hops, streaming, token_shares)
    slowest_update = np.asarray(update_cycles, dtype=np.float64).max(axis=-1, initial=0.0)
    cycles = finish[..., -1, -1] + return_hops + slowest_update
    return float(cycles) if np.ndim(cycles) == 0 else cycles


def stage_times(per_sample: np.ndarray, replicas: np.ndarray, congestion_cycles: np.ndarray):
    """A stage is as slow as its share of the samples, or its busiest link, whichever is more."""
    return np.maximum(per_sample / replicas, congestion_cycles)


def step(per_sample, replicas, congestion, hops, updates, streaming: Streaming | None = None,
         token_shares=None) -> np.ndarray:
    """(V,) cycles of the step of kernels with per-sample times `per_sample` (V, K, S),
    `replicas` (K,), per-sample `congestion` (V, K), entry `hops` (K,) and `updates` (V, K),
    samples moving as `streaming` says (None: whole samples), each token taking its
    `token_shares` (V, S, chunks) of its sample's time. A replica takes a whole sample's time,
    so replicas share a stage's samples but do not speed up the first one through it: the
    stage's entry is later by the rest of that sample's time, t (1 - 1/r) (the fabric model's
    whole step, `simulator.fabric.pipeline`)."""
    replicas, hops = np.asarray(replicas, dtype=np.float64), np.asarray(hops, dtype=np.float64)
    per_sample = np.asarray(per_sample, dtype=np.float64)
    stage = stage_times(per_sample, replicas[:, None],
                        np.asarray(congestion, dtype=np.float64)[..., None])
    first = per_sample[..., 0] * (1.0 - 1.0 / replicas) if per_sample.shape[-1] else 0.0
    return np.atleast_1d(step_cycles(stage, hops + first, float(hops.sum()), updates, streaming,
                                     token_shares))


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
