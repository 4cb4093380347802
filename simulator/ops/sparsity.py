"""Kernels of wsebench's own sparsity ops: `wsebench.drop_small.default` ("drop small values").

The op comes from the torch custom op `wsebench::drop_small` (wsebench/drop_op.py), which eager
torch runs as the oracle; this kernel computes the same selection, so both agree bit for bit:

    per sample (dim 0), a = |x| flattened, n = a.size
    top-k:      k = floor(fraction * n + 1e-6); t = k-th smallest a; keep a > t   (k = 0 keeps all)
    threshold:  keep a > threshold
    out = where(keep, x, 0)

A selection involves no arithmetic, so NumPy's partition and torch's kthvalue pick the same t.
`where="backward"` passes x through (its gradient is dropped instead, by a second node with
where="grad" that the backward formula inserts).
"""
from __future__ import annotations

import math

from compiler.op_names import DROP_SMALL_OP
from simulator.ops.registry import op

K_SLACK = 1e-6       # as wsebench/drop_op.py: 0.7 of 40 values is 28 despite 0.7's rounding


def keep_mask(xp, x, value: float, kind: str):
    """Kept positions of `x`, or None when everything is kept."""
    a = xp.abs(x).reshape(x.shape[0] if x.ndim else 1, -1)
    if kind == "threshold":
        keep = a > xp.asarray(value, dtype=x.dtype)
    else:
        k = math.floor(value * a.shape[1] + K_SLACK)
        if k <= 0:
            return None
        t = xp.partition(a, k - 1, axis=1)[:, k - 1]
        keep = a > t[:, None]
    return keep.reshape(x.shape)


@op(DROP_SMALL_OP)
def drop_small(xp, x, value, kind: str, where: str, gradient: str):
    if where == "backward":
        return x.copy()
    keep = keep_mask(xp, x, float(value), kind)
    return x.copy() if keep is None else xp.where(keep, x, xp.zeros((), dtype=x.dtype))
