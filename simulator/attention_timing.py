"""The attention kernel's time, measured from the step's tensors: only real tokens cost anything.

How the real tokens are found: a pad key is masked out of every softmax row (wsebench's models
add -1e9, nn.MultiheadAttention's key padding mask adds -1e9 or -inf), so its probability is
exactly 0 for every query and every head, while a real key's probability is exp(s - max) / sum,
which is zero only if its score is ~87 below the row's maximum in float32 for every query of
every head. So sample b's real tokens are the keys whose column of the softmax output P (the
kernel's `probs` stream, read before attention dropout) has a non-zero, and L_b is their count;
in self-attention the queries are the same positions. A model without a padding mask has every
position real, as it computes with all of them. (A sample made only of padding has a uniform
softmax and counts as full length.)

The cycles come from the compiler's formulas (`compiler.attention.components`) fed with the
measured L_b, so the measurement and the static estimate share one model. The padded run (every
sample at the padded length L) is the baseline, reported as the kernel's dense cycles and MACs.
"""
from __future__ import annotations

import numpy as np

from compiler import attention
from compiler.kernels import Kernel

from .backend import to_numpy
from .timing import KernelTiming


def real_lengths(xp, kernel: Kernel, env: dict) -> np.ndarray:
    """(samples,) real tokens per sample: keys with a non-zero softmax probability somewhere."""
    length = kernel.nest.extent("j")
    probs = env[kernel.stream["probs"]].reshape(kernel.samples, -1, length)
    return to_numpy(xp.count_nonzero(xp.any(probs != 0, axis=1), axis=1)).astype(np.int64)


def measure_attention(xp, kernel: Kernel, mapping, env: dict, target, harvest: bool = True,
                      update: float = 0.0) -> KernelTiming:
    """Time one attention kernel for the step in `env`. `harvest` does not change it (attention
    skips padding, not zeros); `update` is 0 for a kernel without weights but kept for symmetry."""
    lengths = real_lengths(xp, kernel, env)
    real = attention.components(kernel, lengths, mapping, target)
    padded = attention.components(kernel, attention.full_lengths(kernel), mapping, target)
    core = attention.per_core_cycles(real)
    overhead = target.kernel_overhead_cycles
    busy = np.empty((mapping.rows, mapping.width))
    for q in range(mapping.replicas):                        # sample s runs on replica s % r
        busy[:, q * mapping.cols:(q + 1) * mapping.cols] = core[q::mapping.replicas].sum(axis=0) + update
    return KernelTiming(kernel.name, core.max(axis=(1, 2)) + overhead,
                        attention.per_core_cycles(padded).max(axis=(1, 2)) + overhead,
                        real, busy, update, real["macs"], padded["macs"], real["macs"])
