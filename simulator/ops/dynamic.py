"""Kernels of wsebench's dynamic-execution markers: `wsebench.running.default` and its backward
twin `wsebench.running_grad.default` (torch side: wsebench/markers.py).

Both are the identity on their first argument. Their second argument, the step's `running` mask
(bool, True where a position still computes), is what they are for: it tells the timing which
positions a recurrent step (a Universal Transformer step under ACT) works on, so halted and pad
positions cost nothing (DESIGN.md, "Dynamic execution"). The numerics ignore it.

The output is the input array itself, as the executor does for `aten.alias`: no kernel writes
into its inputs, so sharing the array is safe and saves a copy per step.
"""
from __future__ import annotations

from compiler.op_names import MARKER_OPS
from simulator.ops.registry import Meta, op


def _identity_fast(xp, h, mask):
    """Specialized form: both arguments are tensors, so the call takes them in order."""
    if not (isinstance(h, Meta) and isinstance(mask, Meta)):
        return None
    return lambda value, _mask: value


@op(*sorted(MARKER_OPS), fast=_identity_fast)
def running(xp, h, mask):
    """`h` unchanged; `mask` is read by the timing, not here."""
    return h
