"""Timing measured from the data: per-sample, per-core cycles counted from the actual tensors.

For every matmul kernel the simulator counts, per sample and per core tile, the non-zeros of the
streamed operands (x along rows, dY along columns) and feeds them to the compiler's cost formulas
(`compiler.cost.matmul_components`), so the measured time and the static estimate share one
model. Stages are combined with the pipeline recurrence in `compiler.pipeline`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler import cost
from compiler.cost import tile_sizes
from compiler.kernels import Kernel
from compiler.pipeline import step_cycles

from .backend import to_numpy


@dataclass
class KernelTiming:
    name: str
    sample_cycles: np.ndarray        # (samples,) forward + backward, max over cores
    dense_sample_cycles: np.ndarray  # same with harvesting off
    compute_cycles: float            # per sample, compute only (max over cores)
    link_cycles: float               # per sample, links only (max over cores)
    core_busy: np.ndarray            # (rows, cols * replicas) busy cycles in the step
    update_cycles: float
    macs: float                      # executed
    dense_macs: float


@dataclass
class StepTiming:
    cycles: float
    dense_cycles: float
    kernels: list[KernelTiming] = field(default_factory=list)


def tile_nonzeros(xp, values, parts: int):
    """(samples, tokens, parts) non-zero counts of `values` (samples, tokens, features) split
    into `parts` contiguous tiles of ceil(features / parts)."""
    samples, tokens, features = values.shape
    step = -(-features // parts)
    nz = values != 0
    pad = step * parts - features
    if pad:
        nz = xp.concatenate([nz, xp.zeros((samples, tokens, pad), dtype=bool)], axis=2)
    return nz.reshape(samples, tokens, parts, step).sum(axis=3)


def _as_sample_major(value, samples: int):
    value = value.reshape(value.shape[0], -1) if value.ndim > 2 else value
    return value.reshape(samples, -1, value.shape[-1])


def measure_matmul(xp, kernel: Kernel, mapping, env: dict, target, harvest: bool,
                   update: float) -> KernelTiming:
    n = kernel.nest
    k, nn_, tokens, samples = n.extent("i"), n.extent("j"), n.extent("t"), kernel.samples
    x = _as_sample_major(env[kernel.stream["x"]], samples)
    dy = env.get(kernel.stream.get("dy")) if "dy" in kernel.stream else None
    dy = _as_sample_major(dy, samples) if dy is not None else xp.ones((samples, tokens, nn_))
    if dy.shape[-1] != nn_ and dy.shape[-2] == nn_:  # stored transposed
        dy = dy.swapaxes(-1, -2)
    nx = tile_nonzeros(xp, x, mapping.rows)
    ndy = tile_nonzeros(xp, dy, mapping.cols)
    pairs = to_numpy(xp.einsum("str,stc->src", nx.astype(xp.float64), ndy.astype(xp.float64)))
    nx, ndy = to_numpy(nx.sum(axis=1)), to_numpy(ndy.sum(axis=1))
    tk, tn = tile_sizes(k, mapping.rows), tile_sizes(nn_, mapping.cols)
    args = dict(tokens=tokens, computes_dx=kernel.computes_dx)
    real = cost.matmul_components(nx, ndy, tk, tn, target, harvest, pairs=pairs, **args)
    dense = cost.matmul_components(nx, ndy, tk, tn, target, False, **args)
    return _matmul_timing(kernel, mapping, real, dense, target, update)


def _per_core(c: dict) -> np.ndarray:
    return np.maximum(c["fwd_compute"], c["fwd_link"]) + np.maximum(c["bwd_compute"], c["bwd_link"])


def _matmul_timing(kernel, mapping, real, dense, target, update) -> KernelTiming:
    overhead = target.kernel_overhead_cycles
    core = _per_core(real)                                   # (samples, rows, cols)
    busy = np.zeros((mapping.rows, mapping.width))
    for q in range(mapping.replicas):                        # sample s runs on replica s % r
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = core[q::mapping.replicas].sum(axis=0) + update
    compute = (real["fwd_compute"] + real["bwd_compute"]).max(axis=(1, 2))
    link = np.maximum(real["fwd_link"], real["bwd_link"]).max(axis=(1, 2))
    return KernelTiming(kernel.name, core.max(axis=(1, 2)) + overhead,
                        _per_core(dense).max(axis=(1, 2)) + overhead, float(compute.mean()),
                        float(link.mean()), busy, update, float(real["macs"].sum()),
                        float(dense["macs"].sum()))


def measure_generated(kernel: Kernel, mapping, target, update: float) -> KernelTiming:
    c = cost.generated_components(kernel.nest.extent("e"), kernel.nest.flops_per_point, mapping,
                                  target)
    per_sample = max(c["compute"], c["link"]) + target.kernel_overhead_cycles
    times = np.full(kernel.samples, per_sample)
    share = -(-kernel.samples // mapping.replicas)
    busy = np.full((mapping.rows, mapping.width), share * max(c["compute"], c["link"]) + update)
    return KernelTiming(kernel.name, times, times.copy(), c["compute"], c["link"], busy, update,
                        0.0, 0.0)


def measure_step(xp, plan, env: dict, harvest: bool = True) -> StepTiming:
    """Time one training step of `plan` from the tensors the executor left in `env`."""
    timings = []
    for kernel in plan.kernels:
        m = plan.mapping[kernel.name]
        update = cost.update_cycles(kernel, m, plan.target, plan.optimizer)
        if kernel.kind == "matmul":
            timings.append(measure_matmul(xp, kernel, m, env, plan.target, harvest, update))
        else:
            timings.append(measure_generated(kernel, m, plan.target, update))
    return StepTiming(_step(plan, timings, "sample_cycles"), _step(plan, timings, "dense_sample_cycles"),
                      timings)


def _step(plan, timings: list[KernelTiming], field_name: str) -> float:
    replicas = np.array([plan.mapping[t.name].replicas for t in timings], dtype=np.float64)
    stage = np.stack([getattr(t, field_name) for t in timings]) / replicas[:, None]
    hops = plan.hops()
    return step_cycles(stage, hops, float(hops.sum()), np.array([t.update_cycles for t in timings]))
