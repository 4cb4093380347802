"""The torch side of "drop small values": the custom op `wsebench::drop_small`.

Eager torch runs it (the numerics oracle) and `torch.export` keeps it as one node,
`wsebench.drop_small.default`, in the forward and, through its registered autograd formula, in
the backward of the joint graph; `simulator/ops/sparsity.py` is its wafer kernel. Both sides
compute the same selection, so they agree bit for bit:

    per sample (dim 0 is the sample), a = |x| flattened, n = a.size
    top-k:      k = floor(fraction * n + 1e-6); t = k-th smallest a; keep a > t   (k = 0 keeps all)
    threshold:  keep a > threshold
    out = where(keep, x, 0)

Per sample, not per tensor: a sample streams through the wafer's pipeline on its own, so the
core that sends it can rank only that sample's values (a per-batch rank would need the whole
batch in one place). Values tied with the k-th smallest are dropped with it, so the density is
at most 1 - fraction (below it when many values are equal, e.g. a ReLU's zeros). The fraction
is a float64 buffer and k gets 1e-6 of slack, so that 0.7 of 40 values is 28, not 27.

`where` says what one node does: "forward" drops the activation, "backward" passes it through
and drops the gradient flowing into it, "both" does both, and "grad" is the node the backward
formula inserts to drop a gradient. `gradient` is what a forward drop does to the gradient:
"masked" (the derivative of where(keep, x, 0) with the selection held fixed: the gradient flows
only where the output is non-zero) or "straight-through" (passed unchanged, Bengio et al. 2013,
arXiv:1308.3432).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from compiler.op_names import DROP_SMALL, DROP_SMALL_OP, torch_name

OP_NAME = DROP_SMALL_OP      # as the IR spells it
KINDS = ("topk", "threshold")
WHERE = ("forward", "backward", "both")
GRADIENTS = ("masked", "straight-through")
K_SLACK = 1e-6       # keeps floor(fraction * n) from losing one to the rounding of fraction


def keep_mask(x: Tensor, value: float, kind: str) -> Tensor | None:
    """The kept positions of `x` (None: keep everything), by the rule in the module doc."""
    a = x.detach().abs().reshape(x.shape[0], -1) if x.dim() else x.detach().abs().reshape(1, 1)
    if kind == "threshold":
        keep = a > torch.tensor(value, dtype=x.dtype)
    else:
        k = math.floor(value * a.shape[1] + K_SLACK)
        if k <= 0:
            return None
        t = torch.kthvalue(a, k, dim=1).values
        keep = a > t[:, None]
    return keep.reshape(x.shape)


@torch.library.custom_op(torch_name(DROP_SMALL), mutates_args=())
def drop_small(x: Tensor, value: Tensor, kind: str, where: str, gradient: str) -> Tensor:
    """Zero the small values of `x` per sample (see the module doc); a copy where="backward"."""
    if where == "backward":
        return x.clone()
    keep = keep_mask(x, float(value), kind)
    return x.clone() if keep is None else torch.where(keep, x, torch.zeros((), dtype=x.dtype))


@drop_small.register_fake
def _fake(x, value, kind, where, gradient):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, value, kind, where, gradient = inputs
    ctx.save_for_backward(value, output)
    ctx.options = (kind, where, gradient)


def _backward(ctx, grad):
    value, out = ctx.saved_tensors
    kind, where, gradient = ctx.options
    if where in ("forward", "both", "grad") and gradient == "masked":
        grad = torch.where(out != 0, grad, torch.zeros((), dtype=grad.dtype))
    if where in ("backward", "both"):
        grad = torch.ops.wsebench.drop_small(grad, value, kind, "grad", "straight-through")
    return grad, None, None, None, None


drop_small.register_autograd(_backward, setup_context=_setup_context)
