"""Eager-torch reference training that records the dropout masks torch drew.

Eager `nn.Dropout` on CPU draws its mask with `aten.bernoulli_` (then scales by 1/(1-p)); a
TorchDispatchMode sees each call, in forward order, so the simulator can replay the same masks.
"""
from __future__ import annotations

import copy

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class MaskRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.masks: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket is torch.ops.aten.bernoulli_:
            self.masks.append(out.detach().clone().bool())
        return out


def eager_step(model, loss_fn, opt, x, y):
    """One eager training step; returns the loss and the dropout keep-masks torch drew."""
    recorder = MaskRecorder()
    with recorder:
        loss = loss_fn(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss, recorder.masks


def train_eager(model, loss_fn, make_optimizer, batches):
    """Train a deep copy of `model` eagerly; return it and the dropout keep-masks of each step."""
    model = copy.deepcopy(model).train()
    opt = make_optimizer(model.parameters())
    masks_per_step = [eager_step(model, loss_fn, opt, x, y)[1] for x, y in batches]
    return model, masks_per_step
