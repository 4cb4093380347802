"""The one evaluation of the cost model: a kernel's components -> per-core cycles, kind-agnostic.

Each kernel kind (`compiler.kernels`) turns its counts into `Components`: per core and per sample,
the compute cycles (MACs / SIMD width, plus element work) and the busiest link of the forward and
the backward pass. Everything after that is the same for every kind, and the static estimate
(`compiler.estimate`, assumed counts) and the measurement (`simulator.measure`, counts from the
tensors) both go through this module (DESIGN.md, "Cost model"):

- a pass takes max(compute, link): the core streams while it computes (Hot Chips 2020, dataflow);
- a sample costs forward + backward on the same cores, summed over the kernel's calls, plus
  `Target.kernel_overhead_cycles`; the kernel's time for a sample is its busiest core's;
- the once-per-step update of the weights each core holds, plus the ring all-reduce of the
  gradients across data-parallel replicas (`update_cycles`);
- the compute-only and link-only times behind Compute and Transmission Samples/s (`split`);
- the busy cycles of every core of every replica (`replica_busy`).

The shared helpers for counts live here too: tile sizes of an unrolled dimension and the wavelets
a streamed operand needs. Every constant comes from `Target`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


# Element operations per weight for one optimizer update (read off torch.optim's formulas).
UPDATE_FLOPS = {"sgd": 2, "sgd_momentum": 5, "adam": 12, "adamw": 13}
FP32_BYTES = 4


@functools.lru_cache(maxsize=1024)
def tile_sizes(extent: int, parts: int) -> np.ndarray:
    """Lengths of `parts` contiguous tiles of ceil(extent / parts) (the last ones may be short).
    Cached, so the array is read-only."""
    step = math.ceil(extent / parts)
    starts = np.arange(parts) * step
    sizes = np.clip(extent - starts, 0, step)
    sizes.flags.writeable = False
    return sizes


def wavelets(nonzeros, length, tokens, target):
    """Wavelets to send `nonzeros` of a tile of `length` values per token: the sender packs
    `Target.dense_values_per_wavelet` values per dense wavelet, or sends one (value, index)
    wavelet per non-zero when that is fewer (zero filtering, Hot Chips 2020). Dense counts
    (harvesting off) always pick the dense packing."""
    return np.minimum(nonzeros, tokens * np.ceil(np.asarray(length) / target.dense_values_per_wavelet))


# ------------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Components:
    """Per-core cycle terms of one kernel for one sample, each broadcastable to
    (variants, calls, samples, rows, cols): forward and backward compute (MACs / SIMD width and
    element work) and the busiest link of each pass; `macs` (variants,) the MACs executed in the
    step. A kernel called once per recurrent step has one entry per call on the calls axis."""
    fwd_compute: Any
    fwd_link: Any
    bwd_compute: Any
    bwd_link: Any
    macs: np.ndarray


def per_core_cycles(c: Components, shape: tuple[int, ...]) -> np.ndarray:
    """(variants, samples, rows, cols) cycles of each core for each sample: each pass as slow
    as its compute or its busiest link, forward + backward, summed over the calls. `shape` is
    (variants, calls, samples, rows, cols)."""
    per_call = np.maximum(c.fwd_compute, c.fwd_link) + np.maximum(c.bwd_compute, c.bwd_link)
    per_call = np.broadcast_to(per_call, shape)
    return per_call[:, 0] if shape[1] == 1 else per_call.sum(axis=1)


def sample_cycles(core: np.ndarray, target) -> np.ndarray:
    """(variants, samples): the busiest core's cycles plus the per-kernel overhead."""
    return core.max(axis=(2, 3)) + target.kernel_overhead_cycles


def split(c: Components, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(variants, samples) cycles if only compute, or only the links, limited the kernel: the
    busiest core's forward + backward compute, and its forward + backward link time."""
    def busiest(term):
        total = np.broadcast_to(term, shape)
        total = total[:, 0] if shape[1] == 1 else total.sum(axis=1)
        return total.max(axis=(2, 3))
    return busiest(c.fwd_compute + c.bwd_compute), busiest(c.fwd_link + c.bwd_link)


# ------------------------------------------------------------------------------ the update

def update_flops(optimizer) -> int:
    if optimizer.kind == "sgd":
        return UPDATE_FLOPS["sgd_momentum" if optimizer.momentum else "sgd"]
    return UPDATE_FLOPS[optimizer.kind]


def update_cycles(weights, mapping, target, optimizer) -> np.ndarray:
    """Per core (rows, cols), or one number for `weights` held by every core: the in-place
    update of the weights each core holds, once per step, plus the gradient all-reduce across
    replicas, a ring per row of cores (2 (r-1)/r of each core's tile, Patarasuk & Yuan 2009)
    whose boundary link carries the tiles of the row's `cols` cores one after another."""
    weights = np.asarray(weights, dtype=np.float64)
    cycles = np.ceil(weights * update_flops(optimizer) / target.simd)
    if mapping.replicas > 1:
        row = weights * mapping.cols if weights.ndim == 0 else weights.sum(axis=1, keepdims=True)
        ring = np.ceil(2 * (mapping.replicas - 1) / mapping.replicas * row) + \
            mapping.replicas * mapping.cols * target.hop_cycles
        cycles = cycles + np.where(row > 0, ring, 0.0)
    return cycles


def replica_busy(core: np.ndarray, mapping, update) -> np.ndarray:
    """(rows, cols * replicas) busy cycles of one step from `core` (samples, rows, cols): sample
    s runs on replica s % replicas, and every replica updates its copy of the weights."""
    busy = np.empty((mapping.rows, mapping.width))
    for q in range(mapping.replicas):
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = core[q::mapping.replicas].sum(axis=0) + update
    return busy


# ---------------------------------------------------------------------------------- memory

def resident_bytes(weights, target, optimizer):
    """Bytes of `weights` held dense: the weight, its fp32 gradient accumulator and its fp32
    optimizer state."""
    return weights * (target.weight_bytes + FP32_BYTES * (1 + optimizer.state_slots))


def index_bytes(target) -> int:
    """Bytes of one index: as wide as a sparse wavelet's index (link_bits - value_bits)."""
    return (target.link_bits - target.value_bits) // 8


def compressed_weight_bytes(kept, tile_rows: int, tile_cols: int, target, optimizer):
    """Bytes of a masked weight tile stored compressed. Format: the kept weights' values,
    gradient accumulators and optimizer state (as dense), each kept weight with two indices
    (its column within the row, CSR order, for the forward pass; its position in column order,
    for the dX pass), plus one row pointer per tile row and one column pointer per tile column.
    Indices are `index_bytes` wide (16 bits: a tile of 48 KB has far fewer than 2**16 rows,
    columns or entries)."""
    idx = index_bytes(target)
    return resident_bytes(kept, target, optimizer) + kept * 2 * idx + (tile_rows + tile_cols) * idx
