"""Timing measured from the data: per-sample, per-core cycles counted from the actual tensors.

For every matmul kernel the simulator counts, per sample and per core tile, the non-zeros of the
streamed operands (x along rows, dY along columns) and feeds them to the compiler's cost formulas
(`compiler.cost.matmul_components`), so the measured time and the static estimate share one
model. Stages are combined with the pipeline recurrence in `compiler.pipeline`.

A matmul kernel whose weight is masked (weight sparsity, `simulator.weight_sparsity`) holds its
kept weights compressed (`compiler.cost.compressed_weight_bytes`), and with harvesting on its
cores skip the masked weights too: the per-core work is counted from the non-zero indicators of
x and dY and the mask's non-zeros per row and column of each tile (`masked_work`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from compiler import cost
from compiler.cost import tile_sizes
from compiler.kernels import Kernel
from compiler.compile_report import stage_times
from compiler.mapping import in_flight
from compiler.passes import MATMUL_OPS, VIEW_OPS, param_root
from compiler.pipeline import step_cycles

from .backend import to_numpy
from .ops import KERNELS


@dataclass
class KernelTiming:
    name: str
    sample_cycles: np.ndarray        # (samples,) forward + backward, max over cores
    dense_sample_cycles: np.ndarray  # same with harvesting off
    components: dict                 # cost terms, per sample and core (see compiler.cost)
    core_busy: np.ndarray            # (rows, cols * replicas) busy cycles in the step
    update_cycles: float
    macs: float                      # executed (zeros too when harvesting is off)
    dense_macs: float
    useful_macs: float = 0.0         # on non-zero operands: the work that changes the result
    dense_update_cycles: float | None = None   # the update with harvesting off, if it differs
    memory_per_core: int | None = None         # measured bytes (compressed weights), if masked

    @property
    def compute_cycles(self) -> float:
        """Per sample, if only compute limited the kernel (max over cores, mean over samples)."""
        c = self.components
        if "compute" in c:
            return c["compute"]
        total = np.broadcast_arrays(c["fwd_compute"] + c["bwd_compute"], c["fwd_link"])[0]
        return float(total.max(axis=(1, 2)).mean())

    @property
    def link_cycles(self) -> float:
        """Per sample, if only the links limited the kernel."""
        c = self.components
        if "link" in c:
            return c["link"]
        total = np.broadcast_arrays(np.maximum(c["fwd_link"], c["bwd_link"]), c["fwd_compute"])[0]
        return float(total.max(axis=(1, 2)).mean())


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
    if xp is np:
        return np.add.reduceat(nz, np.arange(parts) * step, axis=2, dtype=np.int32)
    pad = step * parts - features
    if pad:
        nz = xp.concatenate([nz, xp.zeros((samples, tokens, pad), dtype=bool)], axis=2)
    return xp.count_nonzero(nz.reshape(samples, tokens, parts, step), axis=3)


def _as_sample_major(value, samples: int):
    """(samples, tokens, features) whatever the leading layout ([B*T, d] or [B, T, d])."""
    return value.reshape(samples, -1, value.shape[-1])


def _streams(xp, kernel: Kernel, env: dict):
    """x and dY of a matmul kernel as (samples, tokens, features); dY is all ones when the
    kernel has none."""
    n = kernel.nest
    samples, tokens, width = kernel.samples, n.extent("t"), n.extent("j")
    x = _as_sample_major(env[kernel.stream["x"]], samples)
    if "dy" in kernel.stream:
        dy = env[kernel.stream["dy"]]
        dy = _as_sample_major(dy.T if dy.shape[-1] != width else dy, samples)
    else:
        dy = xp.ones((samples, tokens, width), dtype=bool)
    return x, dy


def _stream_counts(xp, kernel: Kernel, mapping, x, dy, with_pairs: bool = True):
    """Per-sample non-zero counts of x per row tile and dY per column tile, and the dW pairs."""
    nx, ndy = tile_nonzeros(xp, x, mapping.rows), tile_nonzeros(xp, dy, mapping.cols)
    if kernel.nest.extent("t") == 1:
        nx, ndy = to_numpy(nx[:, 0]), to_numpy(ndy[:, 0])
        return nx, ndy, None
    pairs = None
    if with_pairs:
        pairs = to_numpy(xp.einsum("str,stc->src", nx.astype(xp.float64), ndy.astype(xp.float64)))
    return to_numpy(nx.sum(axis=1)), to_numpy(ndy.sum(axis=1)), pairs


def _padded(xp, nonzero, width: int):
    """(samples, tokens, width) float32 indicators, zero-padded on the last axis."""
    samples, tokens, features = nonzero.shape
    out = xp.zeros((samples, tokens, width), dtype=xp.float32)
    out[:, :, :features] = nonzero
    return out


def masked_work(xp, x, dy, mask, rows: int, cols: int, chunk: int = 1 << 24) -> dict:
    """Per-sample, per-core MACs of a matmul whose core (r, c) holds the kept weights of
    w[I_r, J_c] compressed and skips the rest (`mask` (K, N) bool, x (samples, tokens, K),
    dY (samples, tokens, N)); each (samples, rows, cols) float64 NumPy:
      fwd[b,r,c] = sum_t sum_{i in I_r, x[b,t,i] != 0} nnz(mask[i, J_c])
      dx[b,r,c]  = sum_t sum_{j in J_c, dY[b,t,j] != 0} nnz(mask[I_r, j])
      dw[b,r,c]  = sum_t #{kept (i, j) in I_r x J_c : x[b,t,i] != 0 and dY[b,t,j] != 0}
    Counted with einsums and matmuls of the non-zero indicators against the mask's counts, not
    loops over cores; `chunk` bounds the elements of the per-sample (K, N) pair counts held."""
    samples, k, n = x.shape[0], x.shape[2], dy.shape[2]
    sk, sn = -(-k // rows), -(-n // cols)
    m = xp.zeros((rows * sk, cols * sn), dtype=xp.float32)
    m[:k, :n] = mask
    tiles = m.reshape(rows, sk, cols, sn)
    nzx, nzdy = _padded(xp, x != 0, rows * sk), _padded(xp, dy != 0, cols * sn)
    f64 = xp.float64
    fwd = xp.einsum("brs,rsc->brc", nzx.sum(axis=1, dtype=f64).reshape(samples, rows, sk),
                    tiles.sum(axis=3, dtype=f64))
    dx = xp.einsum("bcu,rcu->brc", nzdy.sum(axis=1, dtype=f64).reshape(samples, cols, sn),
                   tiles.sum(axis=1, dtype=f64))
    dw = xp.empty((samples, rows, cols), dtype=f64)
    step = max(1, chunk // m.size)
    for lo in range(0, samples, step):
        # float32 is exact here: each entry counts at most `tokens` pairs
        pairs = xp.matmul(nzx[lo:lo + step].transpose(0, 2, 1), nzdy[lo:lo + step]) * m
        dw[lo:lo + step] = pairs.reshape(-1, rows, sk, cols, sn).sum(axis=(2, 4), dtype=f64)
    return {"fwd": to_numpy(fwd), "dx": to_numpy(dx), "dw": to_numpy(dw)}


def kept_per_core(mask, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) kept weights of each core's tile of a (K, N) mask."""
    k, n = mask.shape
    sk, sn = -(-k // rows), -(-n // cols)
    counts = np.zeros((rows * sk, cols * sn), dtype=np.int64)
    counts[:k, :n] = to_numpy(mask)
    return counts.reshape(rows, sk, cols, sn).sum(axis=(1, 3))


def measure_matmul(xp, kernel: Kernel, mapping, env: dict, target, harvest: bool,
                   update, mask=None) -> KernelTiming:
    """`update`: the weight update's cycles, one number or per core (rows, cols). `mask`
    ((K, N) bool, nest orientation) marks the kept weights of a masked weight."""
    x, dy = _streams(xp, kernel, env)
    nx, ndy, pairs = _stream_counts(xp, kernel, mapping, x, dy, with_pairs=mask is None)
    work = None if mask is None else masked_work(xp, x, dy, mask, mapping.rows, mapping.cols)
    tk, tn = tile_sizes(kernel.nest.extent("i"), mapping.rows), tile_sizes(kernel.nest.extent("j"), mapping.cols)
    args = dict(tokens=kernel.nest.extent("t"), computes_dx=kernel.computes_dx)
    needed = cost.matmul_components(nx, ndy, tk, tn, target, True, pairs=pairs, work=work, **args)
    real = needed if harvest else cost.matmul_components(nx, ndy, tk, tn, target, False, **args)
    dense_cycles, dense_macs = _dense(kernel, mapping, target)
    overhead = target.kernel_overhead_cycles
    core = _per_core(real)
    if core.shape[0] != kernel.samples:
        core = np.broadcast_to(core, (kernel.samples, mapping.rows, mapping.cols))
    busy = np.empty((mapping.rows, mapping.width))
    for q in range(mapping.replicas):                        # sample s runs on replica s % r
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = core[q::mapping.replicas].sum(axis=0) + update
    return KernelTiming(kernel.name, core.max(axis=(1, 2)) + overhead,
                        np.full(kernel.samples, dense_cycles + overhead), real, busy,
                        float(np.max(update)), real["macs"], dense_macs, needed["macs"])


@functools.lru_cache(maxsize=256)
def _dense(kernel: Kernel, mapping, target) -> tuple[float, float]:
    """Per-sample cycles and step MACs with harvesting off: a function of shapes alone."""
    tk, tn = tile_sizes(kernel.nest.extent("i"), mapping.rows), tile_sizes(kernel.nest.extent("j"), mapping.cols)
    dense = cost.matmul_components(np.zeros((kernel.samples, mapping.rows)),
                                   np.zeros((kernel.samples, mapping.cols)), tk, tn, target, False,
                                   tokens=kernel.nest.extent("t"), computes_dx=kernel.computes_dx)
    return float(_per_core(dense).max()), dense["macs"]


def _per_core(c: dict) -> np.ndarray:
    return np.maximum(c["fwd_compute"], c["fwd_link"]) + np.maximum(c["bwd_compute"], c["bwd_link"])


def measure_generated(kernel: Kernel, mapping, target, update: float) -> KernelTiming:
    c = cost.generated_components(kernel.nest.extent("e"), kernel.nest.flops_per_point, mapping,
                                  target)
    per_sample = max(c["compute"], c["link"]) + target.kernel_overhead_cycles
    times = np.full(kernel.samples, per_sample)
    share = -(-kernel.samples // mapping.replicas)
    busy = np.full((mapping.rows, mapping.width), share * max(c["compute"], c["link"]) + update)
    return KernelTiming(kernel.name, times, times.copy(), c, busy, update, 0.0, 0.0)


def measure_step(xp, plan, env: dict, harvest: bool = True, weight_masks: dict | None = None) -> StepTiming:
    """Time one training step of `plan` from the tensors the executor left in `env`.

    `weight_masks` (fqn -> bool array shaped like the parameter): the masks the step ran with.
    A matmul kernel whose weight has one skips its masked weights and, with harvesting on,
    stores the kept ones compressed (smaller update and memory); without masks nothing changes."""
    timings = []
    views = matmul_weights(plan) if weight_masks else {}
    for index, kernel in enumerate(plan.kernels):
        m = plan.mapping[kernel.name]
        update = cost.update_cycles(kernel, m, plan.target, plan.optimizer)
        if kernel.kind != "matmul":
            timings.append(measure_generated(kernel, m, plan.target, update))
            continue
        mask = _nest_mask(xp, kernel, views.get(kernel.name), weight_masks) if views else None
        if mask is None:
            timings.append(measure_matmul(xp, kernel, m, env, plan.target, harvest, update))
            continue
        kept = kept_per_core(mask, m.rows, m.cols)
        per_core = update if not harvest else cost.update_cycles(
            kernel, m, plan.target, plan.optimizer, weights=kept + _bias_per_core(kernel, m))
        t = measure_matmul(xp, kernel, m, env, plan.target, harvest, per_core, mask)
        if harvest:
            t.dense_update_cycles = update
            t.memory_per_core = cost.memory_per_core(
                kernel, m, plan.target, plan.optimizer,
                in_flight(index, len(plan.kernels), kernel.samples), weight_nnz=int(kept.max()))
        timings.append(t)
    return StepTiming(_step(plan, timings, "sample_cycles"), _step(plan, timings, "dense_sample_cycles"),
                      timings)


def _bias_per_core(kernel: Kernel, mapping) -> int:
    """The rest of the kernel's parameters (the bias), spread over a row of cores, as
    `cost.weights_per_core` counts it."""
    bias = kernel.param_numel - kernel.nest.extent("i") * kernel.nest.extent("j")
    return -(-max(bias, 0) // mapping.cols)


def matmul_weights(plan) -> dict[str, tuple[str, tuple]]:
    """Matmul kernel name -> (its weight's fqn, the view ops from the parameter to the forward
    matmul's weight operand). Computed once per plan."""
    cached = getattr(plan, "_matmul_weights_cache", None)
    if cached is None:
        cached = {}
        graph = plan.graph
        roots, values = param_root(graph), dict(graph.params)
        for kernel in plan.kernels:
            if kernel.kind != "matmul":
                continue
            ops = set(kernel.ops)
            forward = next((o for o in graph.ops if o.name in ops and o.op in MATMUL_OPS
                            and any(a.name in roots for a in o.args[-2:] if hasattr(a, "name"))), None)
            if forward is None:
                continue
            a, b = (arg.name for arg in forward.args[-2:])
            name, chain = (b if b in roots else a), []
            while name not in values and graph.producer.get(name) is not None \
                    and graph.producer[name].op in VIEW_OPS:
                chain.append(graph.producer[name])
                name = next(graph.producer[name].refs())
            if name in values:
                cached[kernel.name] = (values[name], tuple(reversed(chain)))
        object.__setattr__(plan, "_matmul_weights_cache", cached)
    return cached


def _nest_mask(xp, kernel: Kernel, view, weight_masks: dict):
    """The weight's mask in the kernel's (K, N) orientation, or None (unmasked, or a weight
    that is not one (K, N) matrix, e.g. a batched one)."""
    if view is None or view[0] not in weight_masks:
        return None
    value = xp.asarray(weight_masks[view[0]])
    for op in view[1]:
        value = KERNELS[op.op](xp, value, *op.args[1:], **dict(op.kwargs))
    shape = (kernel.nest.extent("i"), kernel.nest.extent("j"))
    return value if tuple(value.shape) == shape else None


def plan_congestion(plan) -> dict:
    """Congestion depends on the placement only: computed once per plan."""
    cached = getattr(plan, "_congestion_cache", None)
    if cached is None:
        cached = plan.congestion()
        object.__setattr__(plan, "_congestion_cache", cached)
    return cached


def _step(plan, timings: list[KernelTiming], field_name: str) -> float:
    replicas = np.array([plan.mapping[t.name].replicas for t in timings], dtype=np.float64)
    jam = plan_congestion(plan)
    congested = np.array([jam[t.name] for t in timings])
    stage = stage_times(np.stack([getattr(t, field_name) for t in timings]), replicas[:, None],
                        congested[:, None])
    hops = plan.hops()
    updates = [t.update_cycles if field_name == "sample_cycles" or t.dense_update_cycles is None
               else t.dense_update_cycles for t in timings]
    return step_cycles(stage, hops, float(hops.sum()), np.array(updates))


def measure_densities(xp, plan, env: dict) -> dict[str, tuple[float, float]]:
    """Kernel name -> (density of x, density of dY) measured on the tensors in `env`."""
    out = {}
    for kernel in plan.kernels:
        if kernel.kind != "matmul":
            continue
        values = [env[kernel.stream[role]] if role in kernel.stream else None for role in ("x", "dy")]
        out[kernel.name] = tuple(float(to_numpy(xp.count_nonzero(v))) / max(v.size, 1)
                                 if v is not None else 1.0 for v in values)
    return out
