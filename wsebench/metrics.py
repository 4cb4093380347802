"""Accuracy of a trained model, the one definition the session, the config runs and the
experiments share."""
from __future__ import annotations

import copy

import torch

from . import tasks as _tasks


def accuracy(model: torch.nn.Module, state_dict: dict, x: torch.Tensor, y: torch.Tensor,
             sparsity=None, step: int = 0) -> float:
    """Accuracy of `model`'s architecture with `state_dict` loaded, on (x, y), in eval mode:
    per sample, or per real token for tag targets [N, T] (labels equal to
    `tasks.IGNORE_INDEX`, the padding, are not counted). `sparsity` (drop rules) is set to its
    values at `step`, as the session trained it."""
    from . import sparsity as _sparsity
    trained = copy.deepcopy(model)
    trained.load_state_dict(state_dict)
    if sparsity is not None:
        _sparsity.set_step(trained, sparsity, step)
    trained.eval()
    with torch.no_grad():
        hits = trained(x).argmax(dim=-1) == y
    real = y != _tasks.IGNORE_INDEX
    return float(hits[real].float().mean())
