"""The pre-compile checks' cache (`wsebench.precheck`): configs that differ only in what the
captured graph holds as a constant (the ponder cost's weight, the halting threshold, a dropout
rate above 0) or in data that keeps its shape (seed, size, lengths drawn) share one capture, and
that is sound: capturing each as it is gives the very same kernels."""
from __future__ import annotations

import copy

import pytest

from tests.configs import tiny_config, tiny_family_config
from wsebench import config as cfg
from wsebench import precheck


def _variant(config: dict, model: dict, data: dict) -> dict:
    c = copy.deepcopy(config)
    c["model"].update(model)
    c["data"].update(data)
    return cfg.validate(c)


def _start(family: str) -> dict:
    return tiny_config() if family == "mlp" else tiny_family_config(family)


# `stand_ins`: the cache's own stand-in values, so the cached capture is this config's exact one;
# `other`: every constant, the model's seed and shape-keeping data keys changed (tau 0 included:
# still a constant)
CASES = {
    "mlp": ({"dropout": precheck.DROPOUT_STAND_IN},
            ({"dropout": 0.2, "seed": 3}, {"seed": 7, "samples": 300})),
    "transformer": ({"dropout": precheck.DROPOUT_STAND_IN},
                    ({"dropout": 0.1}, {"seed": 3, "samples": 40, "min_len": 3})),
    "universal_transformer": ({**precheck.STAND_INS, "dropout": precheck.DROPOUT_STAND_IN},
                              ({"tau": 0.0, "epsilon": 0.3, "dropout": 0.1},
                               {"seed": 5, "samples": 90, "min_len": 2})),
}


@pytest.mark.parametrize("family", CASES)
def test_configs_sharing_a_key_capture_the_same_kernels(family):
    stand_ins, (model, data) = CASES[family]
    cached = _variant(_start(family), stand_ins, {})
    other = _variant(_start(family), model, data)
    assert precheck._key(other) == precheck._key(cached)
    found = precheck.kernels(cached)
    assert found == precheck.kernels(other)                   # from the cache
    assert found == precheck.kernels(other, exact=True)       # its own capture: the same
    assert precheck.parameter_count(other) == sum(k.param_numel for k in found)


@pytest.mark.parametrize("family, model, data", [
    ("mlp", {"dropout": 0.0}, {}),                        # no dropout: no mask, no module
    ("mlp", {"activation": "tanh"}, {}),
    ("mlp", {}, {"batch_size": 16}),
    ("mlp", {"hidden": 16}, {}),
    ("transformer", {"dropout": 0.0}, {}),
    ("transformer", {}, {"max_len": 5}),
    ("transformer", {}, {"symbols": 3}),                   # another vocabulary
    ("universal_transformer", {"act": False}, {}),
    ("universal_transformer", {"max_steps": 2}, {}),
])
def test_a_change_of_structure_or_shape_gets_a_key_of_its_own(family, model, data):
    base = _variant(_start(family), {"dropout": 0.1}, {})
    assert precheck._key(_variant(base, model, data)) != precheck._key(base)
