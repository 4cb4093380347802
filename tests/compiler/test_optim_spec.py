"""compiler.optim_spec: validation of OptimizerSpec and reading a torch param group's options."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from compiler.frontend import optimizer_spec
from compiler.optim_spec import OPTIMIZERS, OptimizerSpec, from_hyperparameters
from compiler.errors import ConfigError


def test_defaults():
    spec = OptimizerSpec("sgd", lr=0.1)
    assert (spec.momentum, spec.dampening, spec.nesterov, spec.weight_decay) == (0.0, 0.0, False, 0.0)
    assert spec.betas == (0.9, 0.999) and spec.eps == 1e-8


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        OptimizerSpec("sgd", lr=0.1).lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("spec,slots", [
    (OptimizerSpec("sgd", lr=0.1), 0),
    (OptimizerSpec("sgd", lr=0.1, momentum=0.9), 1),
    (OptimizerSpec("adam", lr=0.1), 2),
    (OptimizerSpec("adamw", lr=0.1), 2),
])
def test_state_slots(spec, slots):
    assert spec.state_slots == slots


def test_unknown_kind_names_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        OptimizerSpec("lamb", lr=0.1)
    assert "lamb" in str(err.value)
    for kind in OPTIMIZERS:
        assert kind in str(err.value)


@pytest.mark.parametrize("kwargs,word", [
    (dict(kind="sgd", lr=-0.1), "lr"),
    (dict(kind="sgd", lr=float("nan")), "lr"),
    (dict(kind="sgd", lr=0.1, momentum=-0.5), "momentum"),
    (dict(kind="adam", lr=0.1, weight_decay=-1.0), "weight_decay"),
    (dict(kind="sgd", lr=0.1, nesterov=True), "nesterov"),
    (dict(kind="sgd", lr=0.1, nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
    (dict(kind="adam", lr=0.1, betas=(1.0, 0.999)), "betas"),
    (dict(kind="adam", lr=0.1, betas=(0.9, -0.1)), "betas"),
])
def test_invalid_specs_are_refused(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        OptimizerSpec(**kwargs)


def test_zero_lr_is_allowed():
    assert OptimizerSpec("sgd", lr=0.0).lr == 0.0


def test_negative_eps_is_refused():
    with pytest.raises(ConfigError, match="eps"):
        OptimizerSpec("adam", lr=1e-3, eps=-1e-8)


@pytest.mark.parametrize("spec", [
    OptimizerSpec("sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
    OptimizerSpec("adam", lr=1e-3, betas=(0.8, 0.95), eps=1e-6),
    OptimizerSpec("adamw", lr=3e-4, weight_decay=0.05),
])
def test_dict_round_trip_through_json(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    again = OptimizerSpec.from_dict(d)
    assert again == spec
    assert isinstance(again.betas, tuple)


# ---------------------------------------------------------------- from_hyperparameters


def test_sgd_group():
    spec = from_hyperparameters("sgd", {"params": [], "lr": 0.2, "momentum": 0.5, "dampening": 0.1,
                                        "nesterov": False, "weight_decay": 0.0, "maximize": False,
                                        "foreach": None, "differentiable": False, "fused": None})
    assert (spec.kind, spec.lr, spec.momentum, spec.dampening) == ("sgd", 0.2, 0.5, 0.1)


def test_adam_group_with_decoupled_weight_decay_is_adamw():
    spec = from_hyperparameters("adam", {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8,
                                         "weight_decay": 0.1, "decoupled_weight_decay": True})
    assert spec.kind == "adamw" and spec.betas == (0.9, 0.99)


def test_adam_group_without_decoupling_stays_adam():
    spec = from_hyperparameters("adam", {"lr": 1e-3, "decoupled_weight_decay": False})
    assert spec.kind == "adam"


@pytest.mark.parametrize("kind,group,word", [
    ("sgd", {"lr": 0.1, "betas": (0.9, 0.99)}, "betas"),        # an Adam option on SGD
    ("adam", {"lr": 0.1, "momentum": 0.9}, "momentum"),
    ("adam", {"lr": 0.1, "amsgrad": True}, "amsgrad"),
    ("adamw", {"lr": 0.1, "capturable": True}, "capturable"),
    ("sgd", {"lr": 0.1, "maximize": True}, "maximize"),
    ("sgd", {"lr": 0.1, "lookahead": 5}, "lookahead"),
])
def test_unsupported_options_are_named(kind, group, word):
    with pytest.raises(ConfigError, match=word):
        from_hyperparameters(kind, group)


def test_unsupported_option_at_its_default_is_fine():
    spec = from_hyperparameters("adam", {"lr": 0.1, "amsgrad": False, "maximize": False,
                                         "capturable": False, "differentiable": False})
    assert spec.kind == "adam"


def test_tensor_hyperparameter_is_refused():
    with pytest.raises(ConfigError, match="weight_decay"):
        from_hyperparameters("sgd", {"lr": 0.1, "weight_decay": torch.tensor(0.1)})


@pytest.mark.parametrize("option", ["momentum", "weight_decay"])
def test_numpy_scalar_hyperparameter_is_accepted(option):
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.SGD(params, lr=0.1, **{option: np.float64(0.5)})
    assert getattr(optimizer_spec(opt), option) == 0.5


def test_group_is_not_mutated():
    group = {"lr": 1e-3, "betas": [0.9, 0.99], "decoupled_weight_decay": True}
    before = dict(group)
    from_hyperparameters("adam", group)
    assert group == before
