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
sample at the padded length L) is the `padded_sample_cycles` baseline; attention harvests no
zeros, so its dense (harvest off) cycles are its cycles.

A block shared by recurrent steps is called once per step (one softmax each): each call reads
its own P for the keys, and, with `running` markers (`simulator.dynamic_timing`), only the
positions still running at that step send queries; a sample with none sends nothing.
"""
from __future__ import annotations

import numpy as np

from compiler import attention
from compiler.kernels import Kernel

from .backend import to_numpy
from .timing import KernelTiming, replica_busy


def real_lengths(xp, kernel: Kernel, env: dict, probs: str | None = None) -> np.ndarray:
    """(samples,) real tokens per sample: keys with a non-zero softmax probability somewhere
    (in the softmax output `probs`, by default the first call's)."""
    length = kernel.nest.extent("j")
    probs = env[probs or kernel.stream["probs"]].reshape(kernel.samples, -1, length)
    return to_numpy(xp.count_nonzero(xp.any(probs != 0, axis=1), axis=1)).astype(np.int64)


def _call_cycles(kernel: Kernel, mapping, target, keys, queries):
    """(samples, rows, cols) cycles and the MACs of one call; a sample with no query sends
    nothing, not even its keys."""
    if queries is None:
        queries = keys
    keys = np.where(np.asarray(queries) > 0, keys, 0)
    c = attention.components(kernel, keys, mapping, target, queries)
    return attention.per_core_cycles(c), c


def _run_cycles(kernel: Kernel, mapping, target, keys: list, queries: list):
    """Per-core cycles summed over the calls (each call's `keys` and `queries` per sample),
    the summed components and MACs."""
    core, total = 0.0, None
    for k, q in zip(keys, queries):
        cycles, c = _call_cycles(kernel, mapping, target, k, q)
        core = core + cycles
        total = c if total is None else {key: total[key] + c[key] for key in c}
    return core, total


def measure_attention(xp, kernel: Kernel, mapping, env: dict, target, harvest: bool = True,
                      update: float = 0.0, positions=None) -> KernelTiming:
    """Time one attention kernel for the step in `env`, every call summed. `harvest` does not
    change it (attention skips padding, not zeros); `update` is 0 for a kernel without weights
    but kept for symmetry. `positions` (`simulator.dynamic_timing.StepPositions`): the queries
    that run at each call; without it every real token is a query. The padded run (every
    sample at the padded length L) is the `padded_sample_cycles` baseline."""
    keys = [real_lengths(xp, kernel, env, call["probs"]) for call in kernel.calls]
    runs = positions.queries(kernel) if positions is not None else None
    none = [None] * len(keys)
    full = [attention.full_lengths(kernel)] * len(keys)
    core, real = _run_cycles(kernel, mapping, target, keys, runs["actual"] if runs else none)
    overhead = target.kernel_overhead_cycles
    sample = core.max(axis=(1, 2)) + overhead
    padded, _ = _run_cycles(kernel, mapping, target, full, runs["padded"] if runs else none)
    fixed = _run_cycles(kernel, mapping, target, keys, runs["fixed_depth"])[0].max(axis=(1, 2)) \
        + overhead if runs else None
    return KernelTiming(kernel.name, sample, sample.copy(), real,
                        replica_busy(core, mapping, update), update, real["macs"], real["macs"],
                        real["macs"], fixed_depth_sample_cycles=fixed,
                        padded_sample_cycles=padded.max(axis=(1, 2)) + overhead)
