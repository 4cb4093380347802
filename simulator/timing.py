"""Timing measured from the data: per-sample, per-core cycles counted from the actual tensors.

For every matmul kernel the simulator counts, per sample and per core tile, the non-zeros of the
streamed operands (x along rows, dY along columns) and feeds them to the compiler's cost formulas
(`compiler.cost.matmul_components`), so the measured time and the static estimate share one
model. Stages are combined with the pipeline recurrence in `compiler.pipeline`.

A matmul kernel whose weight is masked (weight sparsity, `simulator.weight_sparsity`) holds its
kept weights compressed (`compiler.cost.compressed_weight_bytes`), and with harvesting on its
cores skip the masked weights too: `simulator.weight_timing` counts that work from the data.

Dynamic execution (DESIGN.md): a kernel whose weights are shared by recurrent steps is called
once per step and its time sums the calls (their token rows one after another); with `running`
markers in the graph, only the positions that compute are charged (`simulator.dynamic_timing`),
and the same tensors also give the fixed-depth and the padded baselines.
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
from compiler.pipeline import step_cycles

from .backend import to_numpy
from .dynamic_timing import DynamicStats, step_positions
from .weight_timing import MaskTiles, kernel_mask_tiles, masked_work


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
    # the baselines of `simulator.dynamic_timing` (None: the same as `sample_cycles`)
    fixed_depth_sample_cycles: np.ndarray | None = None   # every real position runs every step
    padded_sample_cycles: np.ndarray | None = None        # pads streamed like real tokens
    def variant_cycles(self, variant: str) -> np.ndarray:
        """(samples,) cycles of the run `variant` ("actual", "fixed_depth", "padded")."""
        value = None if variant == "actual" else getattr(self, f"{variant}_sample_cycles")
        return self.sample_cycles if value is None else value

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
    fixed_depth_cycles: float | None = None    # all real positions, all steps (None: = cycles)
    padded_cycles: float | None = None         # pads charged like real tokens (None: = cycles)
    dynamic: DynamicStats | None = None        # what the markers said (None: no markers)


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
    """x and dY of a matmul kernel as (samples, tokens, features), the tokens of its calls one
    after another (a weight shared by recurrent steps is called once per step); dY is all ones
    when the kernel has none."""
    samples, width = kernel.samples, kernel.nest.extent("j")
    xs, dys = [], []
    for call in kernel.calls:
        x = _as_sample_major(env[call["x"]], samples)
        if "dy" in call:
            dy = env[call["dy"]]
            dy = _as_sample_major(dy.T if dy.shape[-1] != width else dy, samples)
        else:
            dy = xp.ones((samples, x.shape[1], width), dtype=bool)
        xs.append(x)
        dys.append(dy)
    if len(xs) == 1:
        return xs[0], dys[0]
    return xp.concatenate(xs, axis=1), xp.concatenate(dys, axis=1)


def _call_tokens(kernel: Kernel, env: dict) -> list[int]:
    return [env[call["x"]].size // (kernel.samples * env[call["x"]].shape[-1]) for call in kernel.calls]


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


def measure_matmul(xp, kernel: Kernel, mapping, env: dict, target, harvest: bool,
                   update, tiles: MaskTiles | None = None, positions=None) -> KernelTiming:
    """`update`: the weight update's cycles, one number or per core (rows, cols). `tiles`:
    the kept weights of a masked weight (`simulator.weight_timing.mask_tiles`). `positions`:
    the step's `simulator.dynamic_timing.StepPositions` (None: every token row computes)."""
    x, dy = _streams(xp, kernel, env)
    rows = positions.rows(kernel, _call_tokens(kernel, env)) if positions is not None else None
    if rows is not None and kernel.nest.extent("t") > 1:
        return _measure_rows(xp, kernel, mapping, x, dy, rows, target, harvest, update, tiles)
    nx, ndy, pairs = _stream_counts(xp, kernel, mapping, x, dy, with_pairs=tiles is None)
    work = None if tiles is None else masked_work(xp, x, dy, tiles)
    tk, tn = tile_sizes(kernel.nest.extent("i"), mapping.rows), tile_sizes(kernel.nest.extent("j"), mapping.cols)
    args = dict(tokens=kernel.nest.extent("t"), computes_dx=kernel.computes_dx)
    needed = cost.matmul_components(nx, ndy, tk, tn, target, True, pairs=pairs, work=work, **args)
    real = needed if harvest else cost.matmul_components(nx, ndy, tk, tn, target, False, **args)
    dense_cycles, dense_macs = _dense(kernel, mapping, target)
    overhead = target.kernel_overhead_cycles
    core = _per_core(real)
    if core.shape[0] != kernel.samples:
        core = np.broadcast_to(core, (kernel.samples, mapping.rows, mapping.cols))
    return KernelTiming(kernel.name, core.max(axis=(1, 2)) + overhead,
                        np.full(kernel.samples, dense_cycles + overhead), real,
                        replica_busy(core, mapping, update), float(np.max(update)), real["macs"],
                        dense_macs, needed["macs"])


def replica_busy(core: np.ndarray, mapping, update) -> np.ndarray:
    """(rows, cols * replicas) busy cycles: sample s runs on replica s % r."""
    busy = np.empty((mapping.rows, mapping.width))
    for q in range(mapping.replicas):
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = core[q::mapping.replicas].sum(axis=0) + update
    return busy


def _row_components(nx, ndy, weights, tk, tn, target, harvest: bool, computes_dx: bool, work=None,
                    computed=None):
    """`cost.matmul_components` of the token rows `weights` (samples, tokens) charges, from the
    per-token tile counts `nx` (samples, tokens, rows) and `ndy` (samples, tokens, cols). With
    harvesting off every charged row is dense: its counts are the tile sizes. A baseline's row
    that the run did not compute (`computed`, the run's weights: a halted position, a pad) has
    no measured values: it is charged dense too."""
    tokens = weights.sum(axis=1)
    if harvest:
        measured = weights if computed is None else np.minimum(weights, computed)
        unmeasured = (weights - measured)[:, :, None]
        a = nx * measured[:, :, None] + unmeasured * tk
        g = ndy * measured[:, :, None] + unmeasured * tn
        pairs = None if work is not None else np.einsum("str,stc->src", a, g, dtype=np.float64)
        a, g = a.sum(axis=1), g.sum(axis=1)
    else:
        a, g = tokens[:, None] * tk[None, :], tokens[:, None] * tn[None, :]
        pairs, work = tokens[:, None, None] * (tk[None, :, None] * tn[None, None, :]), None
    # with harvest off the counts are dense already: the sender's min(nnz, dense) keeps them
    return cost.matmul_components(a, g, tk, tn, target, True, tokens=tokens[:, None, None],
                                  pairs=pairs, computes_dx=computes_dx, work=work)


def _measure_rows(xp, kernel: Kernel, mapping, x, dy, rows: dict, target, harvest: bool, update,
                  tiles) -> KernelTiming:
    """`measure_matmul` when only some token rows compute (`rows`: run -> row weights)."""
    nx = to_numpy(tile_nonzeros(xp, x, mapping.rows)).astype(np.float32)
    ndy = to_numpy(tile_nonzeros(xp, dy, mapping.cols)).astype(np.float32)
    tk = np.asarray(tile_sizes(kernel.nest.extent("i"), mapping.rows), dtype=np.float32)
    tn = np.asarray(tile_sizes(kernel.nest.extent("j"), mapping.cols), dtype=np.float32)
    overhead, dx = target.kernel_overhead_cycles, kernel.computes_dx

    def work(weights):
        if tiles is None:
            return None
        keep = xp.asarray(weights)[:, :, None]
        return masked_work(xp, x * keep, dy * keep, tiles)

    cycles, parts = {}, {}
    for variant, weights in rows.items():
        parts[variant] = _row_components(nx, ndy, weights, tk, tn, target, True, dx, work(weights),
                                         computed=rows["actual"])
        cycles[variant] = _per_core(parts[variant]).max(axis=(1, 2)) + overhead
    needed = parts["actual"]
    dense = _row_components(nx, ndy, rows["actual"], tk, tn, target, False, dx)
    real = needed if harvest else dense
    if not harvest:   # the baselines as this run measures: zeros sent too
        cycles = {v: _per_core(_row_components(nx, ndy, w, tk, tn, target, False, dx)).max(axis=(1, 2))
                  + overhead for v, w in rows.items()}
    core = np.broadcast_to(_per_core(real), (kernel.samples, mapping.rows, mapping.cols))
    return KernelTiming(kernel.name, core.max(axis=(1, 2)) + overhead,
                        _per_core(dense).max(axis=(1, 2)) + overhead, real,
                        replica_busy(core, mapping, update), float(np.max(update)), real["macs"],
                        dense["macs"], needed["macs"],
                        fixed_depth_sample_cycles=cycles["fixed_depth"],
                        padded_sample_cycles=cycles["padded"])


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


def measure_generated(kernel: Kernel, mapping, target, update: float, positions=None) -> KernelTiming:
    """An element-wise kernel; with `positions`, each sample costs the share of the kernel's
    elements that its ops' positions compute (`simulator.dynamic_timing`)."""
    shares = positions.fraction(kernel) if positions is not None else None
    if shares is not None:
        return _generated_shares(kernel, mapping, target, update, shares)
    c = cost.generated_components(kernel.nest.extent("e"), kernel.nest.flops_per_point, mapping,
                                  target)
    per_sample = max(c["compute"], c["link"]) + target.kernel_overhead_cycles
    times = np.full(kernel.samples, per_sample)
    share = -(-kernel.samples // mapping.replicas)
    busy = np.full((mapping.rows, mapping.width), share * max(c["compute"], c["link"]) + update)
    return KernelTiming(kernel.name, times, times.copy(), c, busy, update, 0.0, 0.0)


def _generated_cycles(kernel: Kernel, mapping, target, share: np.ndarray):
    """(samples,) cycles and mean compute / link cycles of samples doing `share` of the work."""
    elements = np.ceil(kernel.nest.extent("e") * np.asarray(share)).astype(np.int64)
    values, inverse = np.unique(elements, return_inverse=True)
    parts = [cost.generated_components(int(e), kernel.nest.flops_per_point, mapping, target)
             for e in values]
    compute = np.array([c["compute"] for c in parts])[inverse]
    link = np.array([c["link"] for c in parts])[inverse]
    flops = float(sum(parts[i]["flops"] for i in inverse))
    return np.maximum(compute, link), {"compute": float(compute.mean()),
                                       "link": float(link.mean()), "flops": flops}


def _generated_shares(kernel: Kernel, mapping, target, update: float, shares: dict) -> KernelTiming:
    overhead = target.kernel_overhead_cycles
    work, c = _generated_cycles(kernel, mapping, target, shares["actual"])
    busy = np.empty((mapping.rows, mapping.width))
    for q in range(mapping.replicas):                        # sample s runs on replica s % r
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = work[q::mapping.replicas].sum() + update
    other = {v: _generated_cycles(kernel, mapping, target, shares[v])[0] + overhead
             for v in ("fixed_depth", "padded")}
    return KernelTiming(kernel.name, work + overhead, work + overhead, c, busy, update, 0.0, 0.0,
                        fixed_depth_sample_cycles=other["fixed_depth"],
                        padded_sample_cycles=other["padded"])


def measure_step(xp, plan, env: dict, harvest: bool = True, weight_masks: dict | None = None) -> StepTiming:
    """Time one training step of `plan` from the tensors the executor left in `env`.

    `weight_masks` (fqn -> bool array shaped like the parameter): the masks the step ran with.
    A matmul kernel whose weight has one skips its masked weights and, with harvesting on,
    stores the kept ones compressed (smaller update and memory); without masks nothing changes.
    A graph with `running` markers charges only the positions that compute, and also times the
    fixed-depth and padded baselines from the same tensors (`simulator.dynamic_timing`)."""
    positions = step_positions(plan, env)
    timings = []
    for index, kernel in enumerate(plan.kernels):
        m = plan.mapping[kernel.name]
        update = cost.update_cycles(kernel, m, plan.target, plan.optimizer)
        if kernel.kind == "attention":
            from .attention_timing import measure_attention   # it imports this module: import here
            timings.append(measure_attention(xp, kernel, m, env, plan.target, harvest, update,
                                             positions))
            continue
        if kernel.kind != "matmul":
            timings.append(measure_generated(kernel, m, plan.target, update, positions))
            continue
        tiles = kernel_mask_tiles(xp, plan, kernel, weight_masks) if weight_masks else None
        if tiles is None:
            timings.append(measure_matmul(xp, kernel, m, env, plan.target, harvest, update,
                                          positions=positions))
            continue
        kept = tiles.kept
        per_core = update if not harvest else cost.update_cycles(
            kernel, m, plan.target, plan.optimizer, weights=kept + _bias_per_core(kernel, m))
        t = measure_matmul(xp, kernel, m, env, plan.target, harvest, per_core, tiles, positions)
        if harvest:
            t.dense_update_cycles = update
            t.memory_per_core = cost.memory_per_core(
                kernel, m, plan.target, plan.optimizer,
                in_flight(index, len(plan.kernels), kernel.samples), weight_nnz=int(kept.max()))
        timings.append(t)
    step = StepTiming(_step(plan, timings, "actual", positions),
                      _step(plan, timings, "dense", positions), timings)
    if positions is not None:
        step.fixed_depth_cycles = _step(plan, timings, "fixed_depth", positions)
        step.padded_cycles = _step(plan, timings, "padded", positions)
        step.dynamic = positions.stats()
    return step


def _bias_per_core(kernel: Kernel, mapping) -> int:
    """The rest of the kernel's parameters (the bias), spread over a row of cores, as
    `cost.weights_per_core` counts it."""
    bias = kernel.param_numel - kernel.nest.extent("i") * kernel.nest.extent("j")
    return -(-max(bias, 0) // mapping.cols)


def plan_congestion(plan) -> dict:
    """Congestion depends on the placement only: computed once per plan."""
    cached = getattr(plan, "_congestion_cache", None)
    if cached is None:
        cached = plan.congestion()
        object.__setattr__(plan, "_congestion_cache", cached)
    return cached


def _step(plan, timings: list[KernelTiming], run: str, positions=None) -> float:
    """Step cycles of `run`: "dense" (harvest off) or a `dynamic_timing.VARIANTS` run. With
    `positions`, the links carry only the rows that run sends."""
    replicas = np.array([plan.mapping[t.name].replicas for t in timings], dtype=np.float64)
    jam = plan_congestion(plan) if positions is None else \
        positions.congestion("actual" if run == "dense" else run)
    congested = np.array([jam[t.name] for t in timings])
    per_sample = [t.dense_sample_cycles if run == "dense" else t.variant_cycles(run) for t in timings]
    stage = stage_times(np.stack(per_sample), replicas[:, None], congested[:, None])
    hops = plan.hops()
    updates = [t.update_cycles if run != "dense" or t.dense_update_cycles is None
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
