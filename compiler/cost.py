"""The cost model, derived from a kernel's loop nest and its mapping (DESIGN.md, "Cost model").

One set of formulas serves both results: the compiler's static estimate feeds it expected
non-zero counts (density x tile size) and the simulator feeds it the counts it measured per core
and per sample. Every constant comes from `Target`.

Matmul kernel, core (r, c) holding w[I_r, J_c] (Hot Chips 2020 dataflow):
  forward   MACs = nnz(x[b, I_r]) * |J_c|      x multicast along row r, psums chained along i
  backward  dX MACs = nnz(dY[b, J_c]) * |I_r|  dY multicast along column c
            dW MACs = nnz(x[b, I_r]) * nnz(dY[b, J_c])
  cycles    max(ceil(MACs / simd), wavelets in, wavelets out) per pass.
A streamed operand costs min(nnz, ceil(len / dense_values_per_wavelet)) wavelets: the sender
filters zeros into sparse (value, index) wavelets when that is cheaper than dense packing.

Masked weights (weight sparsity) are stored compressed and skipped: the core does, per sample,
  forward   sum_{i in I_r, x[b,i] != 0} nnz(w[i, J_c])     dX  sum_{j in J_c, dY[b,j] != 0} nnz(w[I_r, j])
  dW        the kept (i, j) of the tile where x[b,i] != 0 and dY[b,j] != 0
counted by the simulator and passed as `work` (see `matmul_components`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .kernels import Kernel
from .optim_spec import OptimizerSpec
from .target import Target

# Element operations per weight for one optimizer update (read off torch.optim's formulas).
UPDATE_FLOPS = {"sgd": 2, "sgd_momentum": 5, "adam": 12, "adamw": 13}
FP32_BYTES = 4


@dataclass(frozen=True)
class Mapping:
    """How a kernel is laid on the fabric: `rows x cols` cores per replica, `replicas` copies."""
    rows: int
    cols: int
    replicas: int = 1

    def __post_init__(self):
        from .errors import ConfigError
        for field in ("rows", "cols", "replicas"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Mapping.{field} must be a positive integer, got {value!r}")
            object.__setattr__(self, field, int(value))

    @property
    def cores(self) -> int:
        return self.rows * self.cols * self.replicas

    @property
    def width(self) -> int:
        """Replicas sit side by side, so the region is rows x (cols * replicas)."""
        return self.cols * self.replicas


@functools.lru_cache(maxsize=1024)
def tile_sizes(extent: int, parts: int) -> np.ndarray:
    """Lengths of `parts` contiguous tiles of ceil(extent / parts) (the last ones may be short).
    Cached, so the array is read-only."""
    step = math.ceil(extent / parts)
    starts = np.arange(parts) * step
    sizes = np.clip(extent - starts, 0, step)
    sizes.flags.writeable = False
    return sizes


def _wavelets(nnz, length, tokens: int, target: Target, harvest: bool):
    dense = tokens * np.ceil(length / target.dense_values_per_wavelet)
    return np.minimum(nnz, dense) if harvest else dense


def matmul_components(nnz_x, nnz_dy, tile_k, tile_n, target: Target, harvest: bool = True,
                      tokens: int = 1, pairs=None, computes_dx: bool = True, work=None) -> dict:
    """Per-sample, per-core cycle components `fwd_compute`, `fwd_link`, `bwd_compute`,
    `bwd_link`, each broadcastable to (samples, rows, cols), and `macs`, the total MAC count.

    `nnz_x` (samples, rows) counts the non-zeros of each sample's x row-tile over its `tokens`
    rows; `nnz_dy` (samples, cols) likewise for dY; `pairs` (samples, rows, cols) is
    sum_t nnz(x[b,t,I_r]) * nnz(dY[b,t,J_c]), the dW work (the outer product when tokens == 1).
    With harvest off every operand is dense: zeros are sent and multiplied like any value.
    The first layer (`computes_dx=False`) has no dX pass and sends no dX partial sums.
    `work` (harvest only): a dict of per-sample, per-core MAC counts "fwd", "dx", "dw", each
    (samples, rows, cols), for a masked weight whose cores skip their masked entries; the
    streamed operands' wavelets are still set by `nnz_x` and `nnz_dy`.
    """
    if work is not None and harvest:
        return _masked_components(nnz_x, nnz_dy, tile_k, tile_n, target, tokens, computes_dx, work)
    # float32 holds every count and product exactly below 2**24 and halves the memory traffic
    f = np.float32
    tk = np.asarray(tile_k, dtype=f)[None, :, None]
    tn = np.asarray(tile_n, dtype=f)[None, None, :]
    samples = np.shape(nnz_x)[0]
    simd = f(target.simd)
    if harvest:
        a = np.asarray(nnz_x, dtype=f)[:, :, None]
        g = np.asarray(nnz_dy, dtype=f)[:, None, :]
        if pairs is None:
            dw = a * (g / f(tokens * simd))
            dw_macs = float(np.dot(a[:, :, 0].sum(1, dtype=np.float64),
                                   g[:, 0, :].sum(1, dtype=np.float64))) / tokens
        else:
            dw = np.asarray(pairs, dtype=np.float64) / float(simd)
            dw_macs = float(dw.sum()) * simd
    else:
        a, g = tokens * tk, tokens * tn
        dw = tokens * tk * tn / simd
        dw_macs = samples * float(dw.sum()) * simd
    fwd_compute = np.ceil(a * (tn / simd))
    fwd_link = np.maximum(_wavelets(a, tk, tokens, target, harvest), tokens * tn)
    bwd_compute = np.ceil(dw)
    if computes_dx:
        bwd_compute += np.ceil(g * (tk / simd))
    bwd_link = np.maximum(_wavelets(g, tn, tokens, target, harvest), tokens * tk * computes_dx)
    # MAC totals by factoring the sums (tile sizes do not depend on the sample)
    if harvest:
        fwd_macs = float(np.sum(a, dtype=np.float64)) * float(tn.sum(dtype=np.float64))
        dx_macs = float(np.sum(g, dtype=np.float64)) * float(tk.sum(dtype=np.float64)) if computes_dx else 0.0
    else:
        fwd_macs = samples * tokens * float(tk.sum()) * float(tn.sum())
        dx_macs = fwd_macs if computes_dx else 0.0
    return {"fwd_compute": fwd_compute, "fwd_link": fwd_link, "bwd_compute": bwd_compute,
            "bwd_link": bwd_link, "macs": fwd_macs + dx_macs + dw_macs}


def _masked_components(nnz_x, nnz_dy, tile_k, tile_n, target, tokens, computes_dx, work) -> dict:
    """`matmul_components` for a compressed, masked weight: compute from the counted `work`."""
    tk = np.asarray(tile_k, dtype=np.float64)[None, :, None]
    tn = np.asarray(tile_n, dtype=np.float64)[None, None, :]
    a = np.asarray(nnz_x, dtype=np.float64)[:, :, None]
    g = np.asarray(nnz_dy, dtype=np.float64)[:, None, :]
    simd = float(target.simd)
    fwd, dx, dw = (np.asarray(work[key], dtype=np.float64) for key in ("fwd", "dx", "dw"))
    bwd_compute = np.ceil(dw / simd)
    if computes_dx:
        bwd_compute = bwd_compute + np.ceil(dx / simd)
    return {"fwd_compute": np.ceil(fwd / simd),
            "fwd_link": np.maximum(_wavelets(a, tk, tokens, target, True), tokens * tn),
            "bwd_compute": bwd_compute,
            "bwd_link": np.maximum(_wavelets(g, tn, tokens, target, True), tokens * tk * computes_dx),
            "macs": float(fwd.sum()) + (float(dx.sum()) if computes_dx else 0.0) + float(dw.sum())}


def matmul_cycles(*args, **kwargs):
    """Per-sample, per-core (forward, backward) cycles: max(compute, link) of each pass."""
    c = matmul_components(*args, **kwargs)
    return np.maximum(c["fwd_compute"], c["fwd_link"]), np.maximum(c["bwd_compute"], c["bwd_link"])


def generated_components(elements_per_sample: int, flops_per_point: int, mapping: Mapping,
                         target: Target) -> dict:
    """Per-sample compute and link cycles of an element-wise kernel over its rows x cols cores;
    forward and backward each stream the tile once."""
    per_core = math.ceil(elements_per_sample / (mapping.rows * mapping.cols))
    return {"compute": 2.0 * math.ceil(per_core * flops_per_point / target.simd),
            "link": 2.0 * math.ceil(per_core / target.dense_values_per_wavelet),
            "flops": float(elements_per_sample * flops_per_point)}


def generated_cycles(elements_per_sample: int, flops_per_point: int, mapping: Mapping,
                     target: Target) -> float:
    c = generated_components(elements_per_sample, flops_per_point, mapping, target)
    return max(c["compute"], c["link"])


def update_flops(optimizer: OptimizerSpec) -> int:
    if optimizer.kind == "sgd":
        return UPDATE_FLOPS["sgd_momentum" if optimizer.momentum else "sgd"]
    return UPDATE_FLOPS[optimizer.kind]


def weights_per_core(kernel: Kernel, mapping: Mapping) -> int:
    """Parameters resident on the most loaded core of one replica."""
    if kernel.kind == "matmul":
        k, n = kernel.nest.extent("i"), kernel.nest.extent("j")
        bias = kernel.param_numel - k * n
        return math.ceil(k / mapping.rows) * math.ceil(n / mapping.cols) + \
            math.ceil(max(bias, 0) / mapping.cols)
    return math.ceil(kernel.param_numel / (mapping.rows * mapping.cols))


def update_cycles(kernel: Kernel, mapping: Mapping, target: Target, optimizer: OptimizerSpec,
                  weights=None):
    """The in-place weight update once per step, plus the gradient all-reduce across replicas:
    a ring per row of cores (2 (r-1)/r of each core's tile, Patarasuk & Yuan 2009) whose
    boundary link carries the tiles of the row's `cols` cores one after another.

    `weights` (optional, (rows, cols)): the weights each core holds, e.g. the kept weights of a
    masked kernel stored compressed; the result is then per core, (rows, cols)."""
    if weights is not None:
        return _update_per_core(np.asarray(weights, dtype=np.float64), mapping, target, optimizer)
    weights = weights_per_core(kernel, mapping)
    cycles = math.ceil(weights * update_flops(optimizer) / target.simd) if weights else 0
    if mapping.replicas > 1 and weights:
        ring = 2 * (mapping.replicas - 1) / mapping.replicas * weights * mapping.cols
        cycles += math.ceil(ring) + mapping.replicas * mapping.cols * target.hop_cycles
    return float(cycles)


def _update_per_core(weights: np.ndarray, mapping: Mapping, target: Target,
                     optimizer: OptimizerSpec) -> np.ndarray:
    cycles = np.ceil(weights * update_flops(optimizer) / target.simd)
    if mapping.replicas > 1:
        row = weights.sum(axis=1, keepdims=True)      # the row ring carries every core's tile
        ring = np.ceil(2 * (mapping.replicas - 1) / mapping.replicas * row) + \
            mapping.replicas * mapping.cols * target.hop_cycles
        cycles = cycles + np.where(row > 0, ring, 0.0)
    return cycles


def index_bytes(target: Target) -> int:
    """Bytes of one index: as wide as a sparse wavelet's index (link_bits - value_bits)."""
    return (target.link_bits - target.value_bits) // 8


def compressed_weight_bytes(kept, tile_rows: int, tile_cols: int, target: Target,
                            optimizer: OptimizerSpec):
    """Bytes of a masked weight tile stored compressed. Format: the kept weights' values,
    gradient accumulators and optimizer state (as dense), each kept weight with two indices
    (its column within the row, CSR order, for the forward pass; its position in column order,
    for the dX pass), plus one row pointer per tile row and one column pointer per tile column.
    Indices are `index_bytes` wide (16 bits: a tile of 48 KB has far fewer than 2**16 rows,
    columns or entries)."""
    idx = index_bytes(target)
    per_weight = target.weight_bytes + FP32_BYTES * (1 + optimizer.state_slots) + 2 * idx
    return kept * per_weight + (tile_rows + tile_cols) * idx


def memory_per_core(kernel: Kernel, mapping: Mapping, target: Target, optimizer: OptimizerSpec,
                    in_flight: int, weight_nnz: int | None = None) -> int:
    """Bytes on the most loaded core: weights, their gradient accumulator and optimizer state
    (fp32), plus the activations stashed for the samples between forward and backward.
    `weight_nnz` (matmul only): the most kept weights on one core of a masked weight, which is
    then stored compressed (`compressed_weight_bytes`); the bias stays dense."""
    if kernel.kind == "attention":    # hand-optimized attention: its own model (attention.py)
        from . import attention
        return attention.memory_per_core(kernel, mapping, target, optimizer, in_flight)
    weights = weights_per_core(kernel, mapping)
    resident = weights * (target.weight_bytes + FP32_BYTES * (1 + optimizer.state_slots))
    if weight_nnz is not None and kernel.kind == "matmul":
        tk = math.ceil(kernel.nest.extent("i") / mapping.rows)
        tn = math.ceil(kernel.nest.extent("j") / mapping.cols)
        resident = (weights - tk * tn) * (target.weight_bytes + FP32_BYTES * (1 + optimizer.state_slots)) \
            + compressed_weight_bytes(weight_nnz, tk, tn, target, optimizer)
    if kernel.kind == "matmul":
        tokens = kernel.nest.extent("t")
        stash = math.ceil(kernel.nest.extent("i") / mapping.rows) * tokens
        buffers = math.ceil(kernel.nest.extent("j") / mapping.cols) * tokens + stash
    else:
        stash = math.ceil(kernel.nest.extent("e") / (mapping.rows * mapping.cols))
        buffers = stash
    return int(resident + (in_flight * stash + buffers) * target.activation_bytes)


def dense_sample_cycles(kernel: Kernel, mapping: Mapping, target: Target) -> float:
    """Per-sample forward + backward cycles at full density (the dense baseline)."""
    return estimate_sample_cycles(kernel, mapping, target, density=1.0, harvest=False)


def estimate_sample_cycles(kernel: Kernel, mapping: Mapping, target: Target, density=1.0,
                           harvest: bool = True) -> float:
    """Static estimate from assumed densities of the streamed operands (no data needed):
    `density` is one float for both, or (density of x, density of dY)."""
    if kernel.kind == "attention":    # hand-optimized attention: its own model (attention.py)
        from . import attention
        return attention.estimate_sample_cycles(kernel, mapping, target, density, harvest)
    if kernel.kind != "matmul":
        return generated_cycles(kernel.nest.extent("e"), kernel.nest.flops_per_point, mapping,
                                target) + target.kernel_overhead_cycles
    dx, ddy = density if isinstance(density, (tuple, list)) else (density, density)
    tokens = kernel.nest.extent("t")
    tk = tile_sizes(kernel.nest.extent("i"), mapping.rows)
    tn = tile_sizes(kernel.nest.extent("j"), mapping.cols)
    fwd, bwd = matmul_cycles((dx * tk * tokens)[None], (ddy * tn * tokens)[None], tk, tn,
                             target, harvest, tokens, computes_dx=kernel.computes_dx)
    return float((fwd + bwd).max()) + target.kernel_overhead_cycles
