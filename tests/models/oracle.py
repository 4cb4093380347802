"""Train a model both ways, eager torch and the wafer, and compare the parameters.

Eager torch is the oracle (DESIGN.md, "Numerics contract"): it trains a deep copy of the model
step by step, recording the dropout masks it draws (`tests.numerics.torch_oracle`), and the
wafer replays them, so with dropout > 0 both runs drop the same values.
"""
from __future__ import annotations

import copy

import torch

import wsebench as wb
from tests.numerics.torch_oracle import eager_step

STEPS = 20
SGD_TOLERANCE, ADAM_TOLERANCE = 1e-6, 2e-5


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)


def token_batches(vocab: int, batch: int, length: int, steps: int = STEPS, seed: int = 0):
    """Next-token-style batches: random ids and random targets of the same shape."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (batch, length), generator=gen),
             torch.randint(0, vocab, (batch, length), generator=gen)) for _ in range(steps)]


def train_both(model, loss_fn, make_optimizer, batches, capture_method="aot", eager_loss=None):
    """(session, eager model) after training on `batches`; every step's loss must agree too.
    `eager_loss` (default `loss_fn`) is what the eager loop computes the loss with."""
    eager_loss = eager_loss or loss_fn
    eager = copy.deepcopy(model).train()
    optimizer = make_optimizer(eager.parameters())
    session = wb.compile(model, loss_fn, example=batches[0],
                         optimizer=make_optimizer(model.parameters()), backend="numpy",
                         capture_method=capture_method)
    for x, y in batches:
        loss, masks = eager_step(eager, eager_loss, optimizer, x, y)
        result = session.step(x, y, dropout_masks=masks)
        assert abs(result.loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    return session, eager


def assert_same_parameters(session, eager, tolerance: float) -> None:
    """Every key of the model's state dict, aliases included, within `tolerance` of torch."""
    ours, theirs = session.state_dict(), eager.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        worst = (ours[key] - value).abs().max().item()
        assert worst <= tolerance, f"{key}: max |wafer - torch| = {worst:.3g} > {tolerance:g}"


def parameters_of(model) -> dict:
    """A copy of the model's parameters, to check later that training moved each of them."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def assert_trained(session, initial: dict) -> None:
    """Guards the comparison against a vacuous pass: every parameter of `initial`
    (`parameters_of`) moved from its start."""
    trained = session.state_dict()
    for key, value in initial.items():
        assert not torch.equal(trained[key], value), f"{key} never changed"
