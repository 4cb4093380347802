"""The optimizer recipes users bring train equal to eager torch: lr schedulers stepped as torch
steps them, several param groups (nanoGPT's decay / no-decay AdamW), gradient clipping; what
stays unsupported is refused with a ConfigError naming it."""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import wsebench as wb
from compiler import ConfigError

from .nanogpt import gpt, lm_loss
from .oracle import (ADAM_TOLERANCE, SGD_TOLERANCE, STEPS, assert_same_parameters,
                     assert_trained, parameters_of, token_batches)

VOCAB, BATCH, LENGTH = 24, 3, 8


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def regression_batches(steps: int = STEPS, scale: float = 1.0):
    gen = torch.Generator().manual_seed(1)
    return [(scale * torch.randn(5, 6, generator=gen), scale * torch.randn(5, 3, generator=gen))
            for _ in range(steps)]


def eager_train(model, loss_fn, optimizer, batches, scheduler=None, clip=None):
    """torch's own loop: forward, backward, (clip), optimizer.step, scheduler.step."""
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def warmup_cosine(step: int) -> float:
    """nanoGPT's schedule, as a LambdaLR factor: linear warmup, then cosine decay to 0.1."""
    warmup, total = 4, STEPS
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / (total - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


SCHEDULERS = [  # optimizer, scheduler, tolerance
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS), SGD_TOLERANCE),
    (lambda p: torch.optim.SGD(p, lr=0.1),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.3), SGD_TOLERANCE),
    (lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
     lambda o: torch.optim.lr_scheduler.LambdaLR(o, warmup_cosine), ADAM_TOLERANCE),
    # OneCycleLR also cycles momentum / beta1 and keeps its own keys in the group
    (lambda p: torch.optim.AdamW(p, lr=1e-2),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=2e-2, total_steps=STEPS), ADAM_TOLERANCE),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=STEPS), SGD_TOLERANCE),
]


@pytest.mark.parametrize("make_optimizer, make_scheduler, tolerance", SCHEDULERS)
def test_scheduler_passed_to_train_steps_as_in_torch(make_optimizer, make_scheduler, tolerance):
    model, batches, loss_fn = mlp(), regression_batches(), nn.MSELoss()
    eager = copy.deepcopy(model)
    eager_opt = make_optimizer(eager.parameters())
    eager_train(eager, loss_fn, eager_opt, batches, make_scheduler(eager_opt))
    optimizer = make_optimizer(model.parameters())
    session = wb.compile(model, loss_fn, batches[0], optimizer, backend="numpy")
    initial = parameters_of(model)
    session.train(batches, progress=False, scheduler=make_scheduler(optimizer))
    assert_same_parameters(session, eager, tolerance)
    assert_trained(session, initial)
    # the schedule really moved the lr: the last one is not the first
    assert optimizer.param_groups[0]["lr"] != optimizer.param_groups[0]["initial_lr"]


def test_scheduler_the_user_steps_is_followed():
    """The user's own loop: session.step, then scheduler.step(); with a constant lr instead
    (the previous behaviour) the parameters would differ from torch's."""
    model, batches, loss_fn = mlp(), regression_batches(), nn.MSELoss()
    eager = copy.deepcopy(model)
    eager_opt = torch.optim.SGD(eager.parameters(), lr=0.2)
    eager_train(eager, loss_fn, eager_opt, batches,
                torch.optim.lr_scheduler.ExponentialLR(eager_opt, gamma=0.8))
    constant = copy.deepcopy(model)
    eager_train(constant, loss_fn, torch.optim.SGD(constant.parameters(), lr=0.2), batches)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8)
    session = wb.compile(model, loss_fn, batches[0], optimizer, backend="numpy")
    with warnings.catch_warnings():     # torch's "scheduler stepped before optimizer" included
        warnings.simplefilter("error")
        for x, y in batches:
            session.step(x, y)
            scheduler.step()
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    gap = max((session.state_dict()[k] - v).abs().max().item()
              for k, v in constant.state_dict().items())
    assert gap > 100 * SGD_TOLERANCE


def test_a_changed_lr_counts_from_the_next_step():
    model, batches, loss_fn = mlp(), regression_batches(steps=6), nn.MSELoss()
    eager = copy.deepcopy(model)
    eager_opt = torch.optim.Adam(eager.parameters(), lr=1e-2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    session = wb.compile(model, loss_fn, batches[0], optimizer, backend="numpy")
    for i, (x, y) in enumerate(batches):
        if i == 3:
            eager_opt.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"] = 0.05
        eager_train(eager, loss_fn, eager_opt, [(x, y)])
        session.step(x, y)
    assert_same_parameters(session, eager, ADAM_TOLERANCE)


def configure_optimizers(model, weight_decay=0.1, lr=6e-3, betas=(0.9, 0.95)):
    """nanoGPT's GPT.configure_optimizers: weight decay on matrices, none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def test_nanogpt_two_group_adamw_with_warmup_cosine_trains_equal_to_torch():
    model = gpt(block_size=LENGTH, vocab_size=VOCAB, bias=False)
    batches = token_batches(VOCAB, BATCH, LENGTH)
    eager = copy.deepcopy(model)
    eager_opt = configure_optimizers(eager)
    eager_train(eager, lm_loss, eager_opt, batches,
                torch.optim.lr_scheduler.LambdaLR(eager_opt, warmup_cosine))
    optimizer = configure_optimizers(model)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    session = wb.compile(model, lm_loss, batches[0], optimizer, backend="numpy", capture_method="auto")
    initial = parameters_of(model)
    session.train(batches, progress=False,
                  scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine))
    assert_same_parameters(session, eager, ADAM_TOLERANCE)
    assert_trained(session, initial)


def test_groups_with_their_own_lr_and_momentum():
    model, batches, loss_fn = mlp(), regression_batches(), nn.MSELoss()

    def make(m):
        return torch.optim.SGD([{"params": m[0].parameters(), "lr": 0.02, "momentum": 0.5},
                                {"params": m[2].parameters(), "nesterov": True, "momentum": 0.9}],
                               lr=0.1, weight_decay=1e-3)
    eager = copy.deepcopy(model)
    eager_train(eager, loss_fn, make(eager), batches)
    session = wb.compile(model, loss_fn, batches[0], make(model), backend="numpy")
    session.train(batches, progress=False)
    assert_same_parameters(session, eager, SGD_TOLERANCE)


@pytest.mark.parametrize("make_optimizer, tolerance", [
    (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), SGD_TOLERANCE),
    (lambda p: torch.optim.AdamW(p, lr=1e-2), ADAM_TOLERANCE),
])
def test_clip_grad_norm_equals_torch(make_optimizer, tolerance):
    # large inputs: the gradient norm exceeds max_norm on every step, so clipping is exercised
    model, batches, loss_fn = mlp(), regression_batches(scale=10.0), nn.MSELoss()
    eager, unclipped = copy.deepcopy(model), copy.deepcopy(model)
    eager_train(eager, loss_fn, make_optimizer(eager.parameters()), batches, clip=0.5)
    eager_train(unclipped, loss_fn, make_optimizer(unclipped.parameters()), batches)
    session = wb.compile(model, loss_fn, batches[0], make_optimizer(model.parameters()),
                         backend="numpy", clip_grad_norm=0.5)
    session.train(batches, progress=False)
    assert_same_parameters(session, eager, tolerance)
    gap = max((session.state_dict()[k] - v).abs().max().item()
              for k, v in unclipped.state_dict().items())
    assert gap > 100 * tolerance


def test_clip_grad_norm_as_an_option_of_train():
    """train(clip_grad_norm=) clips those steps as torch's loop would, then the compiled
    setting (none here) holds again."""
    model, batches, loss_fn = mlp(), regression_batches(scale=10.0), nn.MSELoss()
    eager = copy.deepcopy(model)
    make = lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)  # noqa: E731
    eager_train(eager, loss_fn, make(eager.parameters()), batches, clip=0.5)
    session = wb.compile(model, loss_fn, batches[0], make(model.parameters()), backend="numpy")
    session.train(batches, progress=False, clip_grad_norm=0.5)
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert session._trainer.clip_grad_norm is None
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        session.train(batches, progress=False, clip_grad_norm=-1)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "1.0"])
def test_bad_clip_grad_norm_is_refused(bad):
    model, batches = mlp(), regression_batches(steps=1)
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        wb.compile(model, nn.MSELoss(), batches[0], torch.optim.SGD(model.parameters(), lr=0.1),
                   backend="numpy", clip_grad_norm=bad)


@pytest.mark.parametrize("make, named", [
    (lambda p: torch.optim.AdamW(p, amsgrad=True), "amsgrad"),
    (lambda p: torch.optim.SGD(p, lr=0.1, maximize=True), "maximize"),
    (lambda p: torch.optim.RMSprop(p), "RMSprop"),
    (lambda p: torch.optim.AdamW([{"params": list(p)[:2]}, {"params": list(p)[2:],
                                   "amsgrad": True}]), "param group 1: .*amsgrad"),
])
def test_unsupported_recipes_are_refused_by_name(make, named):
    model, batches = mlp(), regression_batches(steps=1)
    with pytest.raises(ConfigError, match=named):
        wb.compile(model, nn.MSELoss(), batches[0], make(list(model.parameters())), backend="numpy")


def test_an_option_turned_on_after_compile_is_refused():
    model, batches = mlp(), regression_batches(steps=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    session = wb.compile(model, nn.MSELoss(), batches[0], optimizer, backend="numpy")
    optimizer.param_groups[0]["amsgrad"] = True
    with pytest.raises(ConfigError, match="amsgrad"):
        session.step(*batches[0])
    assert session.step_count == 0


def test_scheduler_over_another_optimizer_is_refused():
    model, batches = mlp(), regression_batches(steps=2)
    session = wb.compile(model, nn.MSELoss(), batches[0],
                         torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    other = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=0.1), 1)
    with pytest.raises(ConfigError, match="scheduler"):
        session.train(batches, progress=False, scheduler=other)
    with pytest.raises(ConfigError, match="scheduler"):
        session.train(batches, progress=False, scheduler="cosine")
    assert session.step_count == 0



def test_a_checkpoint_keeps_each_param_group_and_the_clipping(tmp_path):
    """Saved and loaded, a two-group session with clipping trains on as it would have."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    groups = [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
              {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0, "lr": 0.02}]
    opt = torch.optim.AdamW(groups, lr=0.01)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), optimizer=opt,
                   backend="numpy", clip_grad_norm=0.5)
    s.step(x, y)
    s.save(tmp_path / "run.ckpt")
    loaded = wb.load_session(tmp_path / "run.ckpt")
    assert loaded._trainer.group_specs == s._trainer.group_specs
    assert loaded._trainer.group_of == s._trainer.group_of
    assert loaded._trainer.clip_grad_norm == 0.5
    s.step(x, y)
    loaded.step(x, y)
    for name, value in s.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name].numpy(), value.numpy())
