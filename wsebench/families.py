"""The model families a config's `model.family` names, and how each meets its data.

- `mlp` (`wsebench.models.mlp`) reads feature vectors (`blobs`, `spirals`);
- `transformer` (`wsebench.models.transformer`, a pre-norm encoder) and
  `universal_transformer` (`wsebench.universal.universal_transformer`: one shared block,
  recurrent in depth, with per-position ACT) read token ids (the tasks of `wsebench.tasks`).

A token family takes `vocab`, `max_len`, `classes`, `task` and `pad_id` from the data (see
`FROM_DATA`), so a config names only the architecture; given explicitly, they must agree with
the data. The dynamic-depth keys (`DEPTH_KEYS`: act, max_steps, tau, epsilon) belong to the
Universal Transformer only. The loss follows the family and the task: cross entropy per sample
(classify), per real token (tag: `TokenCrossEntropy`, pad labels ignored), plus the ponder cost
for the Universal Transformer (`ut_loss`, Graves 2016 eq. 12).
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn as nn

from compiler import ConfigError

from . import models as _models
from . import tasks as _tasks
from . import universal as _universal
from .data import TaskShape

UT = "universal_transformer"
FAMILIES = {"mlp": _models.mlp, "transformer": _models.transformer,
            UT: _universal.universal_transformer}
TOKEN_FAMILIES = ("transformer", UT)
DEPTH_KEYS = ("act", "max_steps", "tau", "epsilon")
FROM_DATA = ("vocab", "max_len", "classes", "task", "pad_id")
SIZE_KEYS = ("in_features", "hidden", "out_features", "depth", "layers", "heads", "d_model",
             "ffn", "max_steps", "vocab", "max_len", "classes")


def builder(family):
    """The model-zoo function for `family`."""
    if family not in FAMILIES:
        raise ConfigError(f"model.family {family!r} is unknown; allowed: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def defaults(family: str) -> dict:
    return {k: p.default for k, p in inspect.signature(builder(family)).parameters.items()
            if p.default is not inspect.Parameter.empty}


def model_kwargs(model: dict, data: TaskShape) -> dict:
    """The builder's keyword arguments: the config's model keys, and for a token family the
    ones that follow the data (vocab, max_len, classes, task, pad_id) where not given."""
    kwargs = {k: v for k, v in model.items() if k != "family"}
    if model.get("family", "mlp") in TOKEN_FAMILIES and data.tokens:
        derived = {"vocab": data.vocab, "max_len": data.max_len, "classes": data.classes,
                   "task": data.kind, "pad_id": _tasks.PAD_ID}
        kwargs = {**derived, **kwargs}
    return kwargs


def check(model: dict, data: TaskShape) -> None:
    """Everything about `model` that is checked without building it, against the data set."""
    family = model.get("family", "mlp")
    builder(family)
    _check_kind(family, data)
    depth = sorted(set(model) & set(DEPTH_KEYS))
    if depth and family != UT:
        raise ConfigError(f"model.{depth[0]} is a dynamic-depth (ACT) setting: only family "
                          f"{UT!r} has it; remove {', '.join('model.' + k for k in depth)} or "
                          f"set model.family: {UT}")
    params = inspect.signature(builder(family)).parameters
    unknown = sorted(set(model) - {"family"} - set(params))
    if unknown:
        raise ConfigError(f"unknown model key(s) {unknown} for family {family!r}; allowed: "
                          f"{', '.join(params)}")
    for key in SIZE_KEYS:
        if key in model and not _positive_int(model[key]):
            raise ConfigError(f"model.{key} must be a positive integer, got {model[key]!r}")
    _check_values(family, model)
    if family in TOKEN_FAMILIES:
        _check_from_data(model, data)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_kind(family: str, data: TaskShape) -> None:
    sequences = ", ".join(_tasks.TASKS)
    if family in TOKEN_FAMILIES and not data.tokens:
        raise ConfigError(f"model.family {family!r} reads token ids, but data.name "
                          f"{data.name!r} holds feature vectors: choose a sequence task "
                          f"({sequences}) or model.family mlp")
    if family not in TOKEN_FAMILIES and data.tokens:
        raise ConfigError(f"model.family {family!r} reads feature vectors, but data.name "
                          f"{data.name!r} is a token-sequence task ({data.kind}): choose "
                          f"model.family {' or '.join(TOKEN_FAMILIES)}, or data blobs/spirals")


def _check_values(family: str, model: dict) -> None:
    dropout = model.get("dropout", 0.0)
    if not _number(dropout) or not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout must be a number in [0, 1), got {dropout!r}")
    allowed = tuple(_models.TRANSFORMER_ACTIVATIONS if family in TOKEN_FAMILIES
                    else _models.ACTIVATIONS)
    activation = model.get("activation")
    if activation is not None and activation not in allowed:
        raise ConfigError(f"model.activation {activation!r} is unknown for family {family!r}; "
                          f"allowed: {', '.join(allowed)}")
    if family not in TOKEN_FAMILIES:
        return
    d_model = model.get("d_model", defaults(family)["d_model"])
    heads = model.get("heads", defaults(family)["heads"])
    if d_model % heads:
        divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
        raise ConfigError(f"model.heads ({heads}) must divide model.d_model ({d_model}): each head "
                          f"gets d_model / heads features; choose heads among {divisors}")
    attention = model.get("attention", "manual")
    if attention not in _models.ATTENTION_KINDS:
        raise ConfigError(f"model.attention {attention!r} is unknown; allowed: "
                          f"{', '.join(_models.ATTENTION_KINDS)}")
    if "act" in model and not isinstance(model["act"], bool):
        raise ConfigError(f"model.act must be true or false, got {model['act']!r}")
    tau = model.get("tau", 0.0)
    if not _number(tau) or not (math.isfinite(tau) and tau >= 0):
        raise ConfigError(f"model.tau (the ponder cost weight) must be a number >= 0, got {tau!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_from_data(model: dict, data: TaskShape) -> None:
    """Keys that follow the data may be given, but must fit it."""
    need = {"vocab": data.vocab, "max_len": data.max_len}
    for key, low in need.items():
        if key in model and model[key] < low:
            raise ConfigError(f"model.{key} ({model[key]}) is smaller than the data needs "
                              f"({low}, from data {data.name!r}): remove model.{key} (it follows "
                              f"the data) or raise it")
    same = {"classes": data.classes, "task": data.kind, "pad_id": _tasks.PAD_ID}
    for key, value in same.items():
        if key in model and model[key] != value:
            raise ConfigError(f"model.{key} ({model[key]!r}) differs from the data's ({value!r}, "
                              f"data {data.name!r}): remove model.{key} (it follows the data)")


def meta_model(model: dict, data: TaskShape) -> nn.Module:
    """The model built on the meta device (no memory, no numbers): runs the builder's own
    checks and gives the module and parameter names, e.g. to check sparsity globs. The seed is
    left out so that checking never moves torch's global RNG."""
    kwargs = {k: v for k, v in model_kwargs(model, data).items() if k != "seed"}
    with torch.device("meta"):
        return builder(model.get("family", "mlp"))(**kwargs)


def loss_for(family: str, model: nn.Module, data: TaskShape):
    """The training loss of `model` on `data` (see the module doc)."""
    if family == UT:
        return _universal.ut_loss(model, ignore_index=_tasks.IGNORE_INDEX)
    if data.kind == "tag":
        return _models.TokenCrossEntropy(_tasks.IGNORE_INDEX)
    return nn.CrossEntropyLoss()
