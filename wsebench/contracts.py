"""Input contracts: what `compile` and every `step` check before the wafer computes anything.

- The example batch is two non-empty tensors that go through the model and the loss; a torch
  error raised while capturing it becomes an `InputError` with torch's own message (and the
  fake-tensor logs torch prints on the way are silenced).
- A batch given to `step` has the example's shapes and dtypes.
- Labels that a class-index loss (cross-entropy, NLL) reads are integers in [0, C) or the
  loss's ignore_index; C and ignore_index are read from the captured graph, so the rule is the
  one the graph computes. Cross-entropy over a single class is refused (its loss is always 0).
- The optimizer covers exactly the model's parameters, and its hyperparameters are finite.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from compiler import ConfigError

from .errors import InputError

# ops that hand a label on unchanged in value (a label may pass through them to the loss)
_PASS_THROUGH = ("view", "reshape", "_unsafe_view", "clone", "_to_copy", "flatten", "alias",
                 "squeeze", "unsqueeze", "expand", "contiguous")
HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "betas", "eps")


@dataclass(frozen=True)
class LabelRule:
    """Labels y must be integers in [0, classes), or equal to ignore_index when there is one."""
    classes: int
    ignore_index: int | None

    def check(self, y: np.ndarray, where: str) -> None:
        if y.dtype.kind not in "iu":
            raise InputError(f"{where}: labels are {y.dtype}, but the loss takes integer class "
                             f"indices in [0, {self.classes}); pass y.long()")
        bad = (y < 0) | (y >= self.classes)
        if self.ignore_index is not None:
            bad &= y != self.ignore_index
        if bad.any():
            first = int(y[bad].flat[0])
            ignore = "" if self.ignore_index is None else \
                f" or equal the loss's ignore_index {self.ignore_index}"
            raise InputError(f"{where}: label {first} is out of range ({int(bad.sum())} labels "
                             f"are): labels must lie in [0, {self.classes}){ignore}; fix the "
                             f"labels, or give the model as many outputs as there are classes")


def label_rule(graph) -> LabelRule | None:
    """The rule for graph input y if the graph uses it as a class index (cross-entropy and NLL
    lower to `gather(log_probs, dim, y)`, or `nll_loss_forward`), else None."""
    label = graph.inputs[1]
    classes = ignore = None
    for op in graph.ops:
        args = op.args
        if op.short == "gather" and _source(graph, args[2]) == label:
            classes = graph.type_of[args[0].name].shape[args[1]]
        elif op.short in ("nll_loss_forward", "nll_loss2d_forward") and \
                _source(graph, args[1]) == label:
            shape = graph.type_of[args[0].name].shape
            classes, ignore = shape[1] if len(shape) > 1 else shape[0], int(args[4])
        elif op.op == "aten.ne.Scalar" and _source(graph, args[0]) == label:
            ignore = int(args[1])        # cross-entropy masks its ignore_index with ne(y, k)
        if classes is not None and ignore is not None:
            break
    return None if classes is None else LabelRule(classes, ignore)


def _source(graph, ref) -> str | None:
    """The graph input a value carries unchanged (through views, or as where's kept value)."""
    name = getattr(ref, "name", None)
    while name is not None and name not in graph.inputs:
        producer = graph.producer.get(name)
        if producer is None:
            return None
        if producer.short == "where":
            name = getattr(producer.args[1], "name", None)
        elif producer.short in _PASS_THROUGH and len(list(producer.refs())) == 1:
            name = next(producer.refs())
        else:
            return None
    return name


def check_classes(rule: LabelRule | None) -> None:
    if rule is not None and rule.classes < 2:
        raise InputError(f"cross-entropy over {rule.classes} class: the loss is always 0 and "
                         f"every prediction is right; give the model >= 2 outputs (out_features)")


def check_example(example) -> None:
    """Before capture: (x, y) tensors with a non-empty batch."""
    if not isinstance(example, (tuple, list)) or len(example) != 2:
        raise InputError("example must be a tuple (x, y) of one batch of inputs and targets")
    for name, value in zip("xy", example):
        if not isinstance(value, torch.Tensor):
            raise InputError(f"example {name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() == 0 or value.shape[0] == 0:
            raise InputError(f"example {name} has shape {tuple(value.shape)}: the example batch "
                             f"must hold at least one sample (a leading batch dimension >= 1)")


@contextlib.contextmanager
def capturing(example):
    """Turn a torch error raised while capturing the example into an InputError with torch's
    message; keep torch's fake-tensor logs and export fallback warnings off the console."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        if isinstance(err, ConfigError) or type(err).__name__ == "CaptureError":
            raise
        raise InputError(_explain(err, example)) from err
    finally:
        logger.setLevel(level)
    for w in caught:        # success: the warnings the capture gave are the user's to see
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _explain(err: BaseException, example) -> str:
    x, y = example
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hint = ""
    if y.is_floating_point() and x.shape[:1] == y.shape[:1]:
        hint = "; a class-index loss needs integer labels: pass y.long()"
    return (f"the example batch (x {tuple(x.shape)} {str(x.dtype)[6:]}, y {tuple(y.shape)} "
            f"{str(y.dtype)[6:]}) does not go through the model and loss: {first}{hint}")


@functools.lru_cache(maxsize=64)
def _dtype(name: str):
    """The NumPy dtype a graph's type names (or the name itself where NumPy has none)."""
    try:
        return np.dtype(name)
    except TypeError:
        return name


def check_batch(graph, x: np.ndarray, y: np.ndarray, rule: LabelRule | None, step: int) -> None:
    """A step's batch has the example's shapes and dtypes, and valid labels."""
    where = f"step {step}"
    types = graph.type_of
    for name, input_name, value in (("x", graph.inputs[0], x), ("y", graph.inputs[1], y)):
        want = types[input_name]
        if tuple(value.shape) != tuple(want.shape):
            raise InputError(f"{where}: batch {name} has shape {tuple(value.shape)}, the plan was "
                             f"compiled for {tuple(want.shape)}; recompile with an example of "
                             f"this shape (a compiled plan has fixed shapes)")
        if value.dtype != _dtype(want.dtype):
            raise InputError(f"{where}: batch {name} is {value.dtype}, the plan was compiled for "
                             f"{want.dtype}; convert it (e.g. {name}.to(torch.{want.dtype}))")
    if rule is not None:
        rule.check(y, where)


def check_optimizer_covers(model: torch.nn.Module, optimizer) -> None:
    """The optimizer must hold exactly the model's parameters: the wafer updates every one."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        return                      # compiler.frontend.optimizer_spec names the type
    names = {id(p): n for n, p in model.named_parameters()}
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = [n for i, n in names.items() if i not in held]
    foreign = len(held - set(names))
    if missing or foreign:
        said = []
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            said.append(f"it leaves out {', '.join(missing[:3])}{more}")
        if foreign:
            said.append(f"it holds {foreign} tensor(s) that are not the model's parameters")
        raise ConfigError(f"the optimizer does not cover the model's parameters ({'; '.join(said)}); "
                          "the wafer updates every parameter, so build the optimizer over "
                          "model.parameters() (freezing is not supported)")


def check_hyperparameters(group: dict, where: str = "optimizer") -> None:
    """Every numeric hyperparameter is a finite number (torch accepts lr=inf and trains NaN)."""
    for key in HYPERPARAMETERS:
        if key not in group:
            continue
        value = group[key]
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            number = float(v) if isinstance(v, (int, float, torch.Tensor)) and \
                not isinstance(v, bool) else None
            if number is None or not math.isfinite(number):
                raise ConfigError(f"{where} {key}={value!r} must be a finite number; "
                                  f"set {where}.{key} to a finite value")


def check_clip_grad_norm(value) -> None:
    """The max 2-norm of gradient clipping: a positive finite number, or None for no clipping."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value < float("inf")):
        raise ConfigError(f"clip_grad_norm must be a positive finite number (the max 2-norm) or "
                          f"None, got {value!r}")


def check_optimizer_settings(name: str, cls, settings: dict) -> None:
    """A config's optimizer section: each value of the type of torch's default, accepted by
    torch's own validation (run on a one-element stand-in parameter), and finite."""
    import inspect
    for key, value in settings.items():
        default = inspect.signature(cls).parameters[key].default
        if not _same_kind(value, default):
            raise ConfigError(f"optimizer.{key} must be {_kind_of(default)} like torch's default "
                              f"{default!r}, got {value!r}")
    stand_in = torch.zeros(1, requires_grad=True)
    try:
        built = cls([stand_in], **settings)
    except (ValueError, TypeError, RuntimeError) as err:
        given = ", ".join(f"optimizer.{k}={v!r}" for k, v in settings.items())
        raise ConfigError(f"torch.optim.{cls.__name__} refuses {given}: "
                          f"{' '.join(str(err).split())}; fix the optimizer section") from None
    check_hyperparameters(built.param_groups[0])


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and len(value) == len(default) and \
            all(_same_kind(v, d) for v, d in zip(value, default))
    return True                     # None defaults (foreach, fused, ...): torch checks them


def _kind_of(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, tuple):
        return f"a list of {len(default)} numbers"
    return "a number"
