"""The numerics contract with weight sparsity: 20 steps of an MLP on the wafer, with masks from
static / gmp / set / rigl, equal eager torch running the same algorithm on its own tensors.

The torch side is an independent implementation: it ranks its own weights and gradients (top-k
with a stable sort, as the simulator does), zeros masked weights and the optimizer's state with
`masked_fill_` after each `opt.step()`, and replays only the host RNG draws (the random initial
mask, SET's random regrowth) from a NumPy generator with the same seed, in the same order.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import compile_plan, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.training import Trainer
from simulator.weight_sparsity import WeightSparsity, keep_count

OPTIMIZERS = {
    "sgd": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3), 1e-6),
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4), 1e-5),
}
CONFIGS = {
    "static": {"algorithm": "static", "sparsity": 0.7},
    "static_topk": {"algorithm": "static", "sparsity": 0.6, "init_method": "topk"},
    "gmp": {"algorithm": "gmp", "sparsity": {"type": "cubic", "init": 0.0, "final": 0.8, "begin": 2,
                                             "end": 14}, "update": {"freq": 2, "start": 2, "stop": 16}},
    "set": {"algorithm": "set", "sparsity": 0.6, "update": {"freq": 3, "start": 2}, "seed": 5},
    "rigl": {"algorithm": "rigl", "sparsity": 0.6, "update": {"freq": 3, "start": 1, "stop": 18}},
}


def make_trainer(model, loss_fn, batch, optimizer, weight_sparsity):
    graph = run_pipeline(capture(model, loss_fn, batch))
    plan = compile_plan(graph, wafer("classroom"), optimizer_spec(optimizer))
    params = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    buffers = {k: v.detach().numpy().copy() for k, v in model.named_buffers()}
    return Trainer(plan, params, buffers, get_backend("numpy"), weight_sparsity=weight_sparsity)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest scores; ties go to the later position (a stable ascending sort)."""
    flat = scores.reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if k:
        mask[torch.sort(flat, stable=True).indices[flat.numel() - k:]] = True
    return mask.reshape(scores.shape)


class TorchMasks:
    """The weight-sparsity algorithms on torch tensors: the oracle for the simulator's engine."""

    def __init__(self, config: WeightSparsity, named: dict[str, torch.Tensor]):
        self.cfg, self.rng = config, np.random.default_rng(config.seed)
        s0 = config.sparsity.at(0)
        self.masks = {}
        for n, p in named.items():
            k = keep_count(p.numel(), s0)
            score = p.detach().abs().double() if config.init_method == "topk" else \
                torch.from_numpy(self.rng.random(tuple(p.shape)))
            self.masks[n] = _top(score, k)

    def update(self, step: int, named: dict, grads: dict) -> dict:
        """New masks if the step is due; returns the positions whose values survive."""
        cfg = self.cfg
        if cfg.update is None or not cfg.update.due(step):
            return dict(self.masks)
        survivors = {}
        for n, p in named.items():
            mask = self.masks[n]
            active = int(mask.sum())
            magnitude = torch.where(mask, p.detach().abs().double(), -math.inf)
            if cfg.algorithm == "gmp":
                keep = min(active, keep_count(p.numel(), cfg.sparsity.at(step)))
                self.masks[n] = survivors[n] = _top(magnitude, keep) if keep < active else mask
                continue
            fraction = cfg.drop_fraction
            if cfg.algorithm == "rigl":
                fraction *= 0.5 * (1 + math.cos(math.pi * step / cfg.update.stop))
            drop = int(round(fraction * active))
            kept = _top(magnitude, active - drop)
            score = torch.from_numpy(self.rng.random(tuple(p.shape))) if cfg.algorithm == "set" \
                else grads[n].abs().double()
            self.masks[n] = kept | _top(torch.where(kept, -math.inf, score), drop)
            survivors[n] = kept
        return survivors


def _zero(model, opt, named, keep: dict) -> None:
    with torch.no_grad():
        for n, p in named.items():
            p.masked_fill_(~keep[n], 0)
            for value in opt.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.masked_fill_(~keep[n], 0)


def train_torch(model, loss_fn, make_opt, batches, config: WeightSparsity, names):
    model = copy.deepcopy(model)
    opt = make_opt(model.parameters())
    named = {n: p for n, p in model.named_parameters() if n in names}
    masks = TorchMasks(config, named)
    _zero(model, opt, named, masks.masks)
    history = []
    for step, (x, y) in enumerate(batches, start=1):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        grads = {n: p.grad.detach().clone() for n, p in named.items()}
        opt.step()
        _zero(model, opt, named, masks.update(step, named, grads))
        history.append({n: m.clone() for n, m in masks.masks.items()})
    return model, opt, history


def _batches(steps=20, batch=32, features=12, classes=5):
    x, y = wb.data.blobs(steps * batch, features, classes, seed=0)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_weight_sparse_mlp_matches_torch(name, opt_name):
    make_opt, atol = OPTIMIZERS[opt_name]
    model = wb.models.mlp(12, 40, 5, depth=3, activation="relu")
    loss_fn, batches = nn.CrossEntropyLoss(), _batches()
    config = WeightSparsity.from_dict(CONFIGS[name])
    trainer = make_trainer(model, loss_fn, batches[0], make_opt(model.parameters()), config)
    names = list(trainer.weight_masks)
    assert names == ["fc1.weight", "fc2.weight", "fc3.weight"]
    reference, opt, torch_masks = train_torch(model, loss_fn, make_opt, batches, config, names)
    changes = 0
    previous = trainer.weight_masks
    for step, ((x, y), expected) in enumerate(zip(batches, torch_masks), start=1):
        trainer.step(x.numpy(), y.numpy())
        for n in names:
            assert (trainer.weight_masks[n] == expected[n].numpy()).all(), f"step {step}: {n} mask"
            changes += int((trainer.weight_masks[n] != previous[n]).any())
        previous = trainer.weight_masks
    assert (changes > 0) == (config.algorithm != "static")
    for n, p in reference.named_parameters():
        diff = np.abs(trainer.params[n] - p.detach().numpy()).max()
        assert diff <= atol, f"{n}: max |sim - torch| = {diff:.3g} > {atol:g}"
    for n, p in reference.named_parameters():
        for slot, value in opt.state[p].items():
            if torch.is_tensor(value) and value.shape == p.shape:
                ours = trainer.opt_state[n][slot]
                np.testing.assert_allclose(ours, value.numpy(), rtol=0, atol=atol, err_msg=f"{n}/{slot}")
                if n in names:
                    assert (ours[~trainer.weight_masks[n]] == 0).all()
    for n, d in trainer.weight_density().items():
        assert abs(d["actual"] - d["target"]) <= 0.01, n
