"""Marker ops for dynamic execution: identity numerics, information for the wafer's timing.

`wsebench::running(h, mask)` returns `h` unchanged. A model calls it where a recurrent step
begins, with the step's `running` mask (bool, shaped like `h` without its last dim, True where a
position still computes). It changes no number, but `torch.export` keeps it as one node,
`wsebench.running.default`, whose second argument is the mask: the captured graph then says, in
forward order, which positions each step works on. On the wafer a halted position sends nothing
and a pad position is never streamed (DESIGN.md, "Dynamic execution"), so the simulator's timing
charges each step only for the positions its mask marks.

The backward formula is the identity too, but it goes through a twin op,
`wsebench::running_grad(g, mask)` (`wsebench.running_grad.default` in the IR), so the backward
half of the joint graph carries the same masks, in reverse step order. The mask gets no gradient.

`simulator/ops/dynamic.py` holds their wafer kernels (identity as well).
"""
from __future__ import annotations

import torch
from torch import Tensor

from compiler.op_names import RUNNING, RUNNING_GRAD, torch_name



def _check(h: Tensor, mask: Tensor, name: str) -> None:
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(h.shape[:mask.dim()]):
        raise ValueError(f"{name}: mask must be a bool tensor shaped like the leading dims of h "
                         f"{tuple(h.shape)}, got {mask.dtype} {tuple(mask.shape)}")


# A custom op may not return an alias of its input, hence the clones (torch.library rule).
@torch.library.custom_op(torch_name(RUNNING), mutates_args=())
def running(h: Tensor, mask: Tensor) -> Tensor:
    """`h` unchanged; marks the start of a step that computes only where `mask` is True."""
    _check(h, mask, torch_name(RUNNING))
    return h.clone()


@running.register_fake
def _running_fake(h, mask):
    _check(h, mask, torch_name(RUNNING))
    return torch.empty_like(h)


@torch.library.custom_op(torch_name(RUNNING_GRAD), mutates_args=())
def running_grad(g: Tensor, mask: Tensor) -> Tensor:
    """The backward twin of `running`: `g` unchanged, marking the same step's backward."""
    _check(g, mask, torch_name(RUNNING_GRAD))
    return g.clone()


@running_grad.register_fake
def _running_grad_fake(g, mask):
    _check(g, mask, torch_name(RUNNING_GRAD))
    return torch.empty_like(g)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _backward(ctx, grad):
    (mask,) = ctx.saved_tensors
    return torch.ops.wsebench.running_grad(grad, mask), None


running.register_autograd(_backward, setup_context=_setup_context)
