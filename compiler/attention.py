"""The attention kernel's hand-optimized mapping and its cost, from first principles.

Scaled dot-product attention (Vaswani et al. 2017) for one sample, per head h:
  s[h,i,j] = sum_d q[h,i,d] k[h,j,d] / sqrt(dh);  p = softmax_j(s + mask);  o[h,i,d] = sum_j p[h,i,j] v[h,j,d]
Mapping: the kernel's rows x cols cores unroll the query positions i over rows and the key
positions j over cols (every head on every core). Core (r, c) holds K and V of its key block J_c
for the sample in flight and computes the H x |I_r| x |J_c| block of scores, as the matmul
kernel holds a weight tile (Hot Chips 2020 dataflow, `compiler.cost`):
- forward: Q[I_r] is multicast along row r, K[J_c] and V[J_c] down column c. The core does the
  Q K^T and P V MACs (2 |I_r| |J_c| D, D = H dh) and the softmax's element work per score; the
  row max and row sum (2 H |I_r|) and the partial outputs O[I_r] (|I_r| D) chain along the row.
- backward: dO[I_r] is multicast along the row; with P, Q, K, V stashed the core does dP = dO V^T,
  dV += P^T dO, dQ = dS K and dK = dS^T Q (4 |I_r| |J_c| D MACs) and the softmax backward per
  score; the row sums of dP * P (H |I_r|) and dQ partials chain along the row, dK and dV
  partials down the column.
So a sample costs 2 L^2 dh MACs per head forward and twice that backward, plus ~L^2 element
operations per head for the softmax. Each pass takes max(compute, busiest link) cycles, as in
`compiler.cost`; the kernel holds no weights, so it has no update.

Variable sequence length (DESIGN.md, "Dynamic execution"): the host knows each sample's real
length L_b and sends only its real tokens, spread over the rows and the columns in contiguous
blocks of ceil(L_b / rows) queries and ceil(L_b / cols) keys (`compiler.cost.tile_sizes`), so
pad tokens are never streamed and cost nothing. The static estimate assumes every sample is
full (L_b = L); the simulator measures L_b per sample (`simulator.attention_timing`).

Dynamic depth: a block shared by S recurrent steps is one kernel called S times per sample
(`Kernel.steps`). At each call only the A_b positions still running send queries (blocks of
ceil(A_b / rows)); every real key is still read, since the running positions attend to the
halted ones too (DESIGN.md, "Dynamic execution"). A sample with no running position sends
nothing. The static estimate assumes every position runs every step.
Attention does not harvest zeros: its operands are dense projections, and the zeros of a
dropped-out P are made on the core itself.
"""
from __future__ import annotations

import math

import numpy as np

from .cost import Mapping
from .kernels import Kernel
from .optim_spec import OptimizerSpec
from .target import Target

# Element operations per score, read off the formulas above: forward scale by 1/sqrt(dh), add
# the mask, compare for the row max, subtract it, exp, add to the row sum, multiply by 1/sum;
# backward multiply dP by P, add to the row sum, subtract it, multiply by P, mask, scale.
FORWARD_SCORE_FLOPS = 7
BACKWARD_SCORE_FLOPS = 6


def block_sizes(lengths, parts: int) -> np.ndarray:
    """(samples, parts) tokens per block when each sample's `lengths` real tokens are cut into
    `parts` contiguous blocks of ceil(L_b / parts) (the last ones may be short or empty)."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    step = -(-lengths // parts)
    return np.clip(lengths - np.arange(parts)[None, :] * step, 0, step)


def shape_of(kernel: Kernel) -> tuple[int, int, int]:
    """(heads, padded length L, head dim) from the kernel's loop nest."""
    n = kernel.nest
    return n.extent("h"), n.extent("i"), n.extent("d")


def _wavelets(values, target: Target):
    return np.ceil(values / target.dense_values_per_wavelet)


def components(kernel: Kernel, lengths, mapping: Mapping, target: Target, queries=None) -> dict:
    """Per-sample, per-core cycle terms of one call for samples of `lengths` real tokens (the
    keys) of which `queries` (default: all of them) compute: `fwd_compute`, `fwd_link`,
    `bwd_compute`, `bwd_link`, each (samples, rows, cols), and `macs`, the total."""
    heads, _, head_dim = shape_of(kernel)
    width = heads * head_dim
    queries = lengths if queries is None else queries
    q = block_sizes(queries, mapping.rows).astype(np.float64)[:, :, None]     # queries per core row
    k = block_sizes(lengths, mapping.cols).astype(np.float64)[:, None, :]     # keys per core column
    scores = heads * q * k
    across = mapping.cols > 1            # row statistics travel only when a row has several cores
    simd = target.simd
    fwd_compute = np.ceil((2 * q * k * width + FORWARD_SCORE_FLOPS * scores) / simd)
    fwd_link = np.maximum.reduce(np.broadcast_arrays(
        _wavelets(q * width, target),                         # Q in, along the row
        _wavelets(2 * k * width, target),                     # K and V in, down the column
        _wavelets(q * width + across * 2 * heads * q, target)))   # O partials, max and sum out
    bwd_compute = np.ceil((4 * q * k * width + BACKWARD_SCORE_FLOPS * scores) / simd)
    bwd_link = np.maximum.reduce(np.broadcast_arrays(
        _wavelets(q * width, target),                         # dO in, along the row
        _wavelets(q * width + across * heads * q, target),    # dQ partials and row sums out
        _wavelets(2 * k * width, target)))                    # dK and dV partials, down the column
    macs = 6.0 * width * float(np.dot(np.asarray(queries, dtype=np.float64).ravel(),
                                       np.asarray(lengths, dtype=np.float64).ravel()))
    return {"fwd_compute": fwd_compute, "fwd_link": fwd_link, "bwd_compute": bwd_compute,
            "bwd_link": bwd_link, "macs": macs}


def per_core_cycles(c: dict) -> np.ndarray:
    """(samples, rows, cols) forward + backward cycles: each pass as slow as compute or links."""
    return np.maximum(c["fwd_compute"], c["fwd_link"]) + np.maximum(c["bwd_compute"], c["bwd_link"])


def full_lengths(kernel: Kernel) -> np.ndarray:
    """Every sample at the padded length: what the compiler assumes and the padded baseline."""
    return np.full(kernel.samples, shape_of(kernel)[1])


def estimate_sample_cycles(kernel: Kernel, mapping: Mapping, target: Target, density=1.0,
                           harvest: bool = True) -> float:
    """Static per-sample forward + backward cycles of a full-length sample through every call
    (`density` and `harvest` do not apply: attention does not harvest zeros)."""
    c = components(kernel, full_lengths(kernel)[:1], mapping, target)
    return kernel.steps * float(per_core_cycles(c).max()) + target.kernel_overhead_cycles


def split_cycles(kernel: Kernel, mapping: Mapping, target: Target) -> tuple[float, float, float]:
    """(per-sample cycles, compute-only cycles, link-only cycles) of a full-length sample."""
    c = components(kernel, full_lengths(kernel)[:1], mapping, target)
    compute = kernel.steps * float(np.max(c["fwd_compute"] + c["bwd_compute"]))
    link = kernel.steps * float(np.max(np.maximum(c["fwd_link"], c["bwd_link"])))
    return estimate_sample_cycles(kernel, mapping, target), compute, link


def memory_per_core(kernel: Kernel, mapping: Mapping, target: Target, optimizer: OptimizerSpec,
                    in_flight: int) -> int:
    """Bytes on the most loaded core at the padded length: the working set of the sample in
    flight (Q block, K and V blocks, the score block, O partials, row max and sum) plus, for
    every sample between its forward and backward, the stash the backward reads (P block, Q
    block, K and V blocks) of every call. No weights, so no optimizer state."""
    heads, length, head_dim = shape_of(kernel)
    width = heads * head_dim
    q, k = math.ceil(length / mapping.rows), math.ceil(length / mapping.cols)
    working = 2 * q * width + 2 * k * width + heads * q * k + 2 * heads * q
    stash = kernel.steps * (heads * q * k + q * width + 2 * k * width)
    return int((working + in_flight * stash) * target.activation_bytes)
