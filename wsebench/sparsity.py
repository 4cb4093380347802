"""Sparsity, with the ML user in control (DESIGN.md, "Sparsity"): what the wafer harvests and what
sparsity the model is made to have.

    wb.Sparsity(harvest=True,                        # skip zeros where they stream (False: dense)
                relu=["act*"],                       # swap these dense non-linearities for ReLU
                drop=[{"targets": ["act*"], "fraction": 0.5, "where": "both",
                       "schedule": "linear", "initial": 0.0, "steps": 100}],
                weights={"algorithm": "static", "sparsity": 0.5, ...})   # cstorch.sparse keys

`Sparsity.parse` takes a Sparsity, a dict, a YAML string or the path of a YAML/JSON file.
`apply(model, sparsity)` returns the model the wafer trains: a deep copy with the ReLUs swapped
in and the drop rules attached as forward hooks that call the custom op `wsebench::drop_small`
(wsebench/drop_op.py), whose fraction lives in a non-persistent buffer, so a schedule changes it
each step without recompiling and the state_dict keys stay those of the original model. Eager
torch runs the same copy, which is how the tests hold the simulator to torch.

A drop rule's `gradient` defaults to "masked": it is the derivative of the function the forward
pass computes (where(keep, x, 0) with the selection held fixed), so training optimizes the model
that is actually run, and the backward pass inherits the forward's zeros, which the wafer
harvests in the producer's dX and dW. "straight-through" (Bengio et al. 2013) lets dropped units
keep learning, at the price of a gradient that is not the forward function's.
"""
from __future__ import annotations

import copy
import fnmatch
import functools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from compiler import ConfigError

from .drop_op import GRADIENTS, WHERE     # importing drop_op registers the custom op
from .sparsity_schedule import SCHEDULES, schedule_value
from .yaml_strict import load_yaml, read_text

BUFFER_PREFIX = "wsebench_drop"
_BUFFER_RE = re.compile(rf"(?:^|\.){BUFFER_PREFIX}(\d+)$")
# Parameter-free dense non-linearities that ReLU insertion swaps out.
DENSE_ACTIVATIONS = (nn.GELU, nn.Tanh, nn.Identity, nn.SiLU, nn.Sigmoid, nn.ELU, nn.LeakyReLU,
                     nn.Softplus, nn.Mish, nn.Hardtanh, nn.ReLU6, nn.CELU, nn.SELU, nn.Hardswish,
                     nn.ReLU)
WEIGHT_KEYS = ("algorithm", "sparsity", "init_method", "update", "param_filter")  # the main ones


@dataclass(frozen=True)
class DropRule:
    """Zero the smallest values of the outputs of the modules `targets` (globs) match.

    Exactly one of `fraction` (top-k: the smallest-magnitude fraction, per sample) and
    `threshold` (|x| <= threshold) is the final value; `schedule` ramps to it from `initial`
    over `steps` steps starting at step `start`. `where`: forward (the activation), backward (the
    gradient flowing into it) or both; `gradient`: what a forward drop does to the gradient."""
    targets: tuple[str, ...]
    fraction: float | None = None
    threshold: float | None = None
    schedule: str = "constant"
    initial: float | None = None
    steps: int = 0
    start: int = 0
    where: str = "forward"
    gradient: str = "masked"

    def __post_init__(self):
        targets = (self.targets,) if isinstance(self.targets, str) else self.targets
        if not isinstance(targets, (tuple, list)) or not targets or \
                not all(isinstance(t, str) and t for t in targets):
            raise ConfigError(f"drop targets must be a module-name glob or a non-empty list of "
                              f"them, got {self.targets!r}")
        object.__setattr__(self, "targets", tuple(targets))
        if (self.fraction is None) == (self.threshold is None):
            raise ConfigError(f"drop rule {list(targets)}: give exactly one of fraction (top-k) "
                              f"or threshold, got fraction={self.fraction!r}, "
                              f"threshold={self.threshold!r}")
        for key, allowed in (("schedule", SCHEDULES), ("where", WHERE), ("gradient", GRADIENTS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"drop {key} {getattr(self, key)!r} is unknown; allowed: "
                                  f"{', '.join(allowed)}")
        self._check_values()

    def _check_values(self) -> None:
        name = self.kind_key
        for key, value in ((name, self.final), ("initial", self.initial)):
            if value is None:
                continue
            if not _number(value) or value < 0 or (name == "fraction" and value >= 1):
                bound = "in [0, 1)" if name == "fraction" else ">= 0"
                raise ConfigError(f"drop {key} must be a number {bound} (the {name}), got {value!r}")
        for key in ("steps", "start"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"drop {key} must be an integer >= 0, got {value!r}")
        if self.schedule == "constant" and (self.initial is not None or self.steps):
            raise ConfigError("drop initial/steps only apply to a linear or cosine schedule; "
                              "set schedule: linear (or cosine), or remove them")
        if self.schedule != "constant" and self.steps < 1:
            raise ConfigError(f"a {self.schedule} drop schedule needs steps >= 1 (the length of "
                              f"the ramp from initial to {name}), got {self.steps!r}")

    @property
    def kind(self) -> str:
        return "topk" if self.fraction is not None else "threshold"

    @property
    def kind_key(self) -> str:
        return "fraction" if self.fraction is not None else "threshold"

    @property
    def final(self) -> float:
        return float(self.fraction if self.fraction is not None else self.threshold)

    def value_at(self, step: int) -> float:
        """The fraction (or threshold) in force at training step `step` (0-based)."""
        initial = 0.0 if self.initial is None else float(self.initial)
        return schedule_value(self.schedule, initial, self.final, step, self.start, self.steps)


@dataclass(frozen=True)
class Sparsity:
    """What the wafer does with zeros, and what sparsity is induced (see the module doc)."""
    harvest: bool = True
    relu: tuple[str, ...] = ()
    drop: tuple[DropRule, ...] = ()
    weights: dict | None = field(default=None, hash=False)

    def __post_init__(self):
        if not isinstance(self.harvest, bool):
            raise ConfigError(f"sparsity harvest must be true or false, got {self.harvest!r}")
        relu = (self.relu,) if isinstance(self.relu, str) else self.relu
        if not isinstance(relu, (tuple, list)) or not all(isinstance(g, str) and g for g in relu):
            raise ConfigError(f"sparsity relu must be a list of module-name globs, got {self.relu!r}")
        object.__setattr__(self, "relu", tuple(relu))
        drop = [self.drop] if isinstance(self.drop, (dict, DropRule)) else self.drop
        if not isinstance(drop, (tuple, list)):
            raise ConfigError(f"sparsity drop must be a list of rules, got {self.drop!r}")
        object.__setattr__(self, "drop", tuple(_rule(r) for r in drop))
        object.__setattr__(self, "weights", _weights(self.weights))

    @property
    def induces(self) -> bool:
        """Whether the model is changed (ReLU insertion, drop rules or weight masks)."""
        return bool(self.relu or self.drop or self.weights)

    @classmethod
    def parse(cls, value) -> "Sparsity":
        """A Sparsity from a Sparsity, a dict, a YAML string, or the path of a YAML/JSON file."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
            value = _read_file(Path(value))
        elif isinstance(value, str):
            value = load_yaml(value, "sparsity YAML")
            value = value.get("sparsity", value) if isinstance(value, dict) else value
        if not isinstance(value, dict):
            raise ConfigError(f"sparsity must be a wb.Sparsity, a dict, a YAML string or a YAML "
                              f"file path, got {type(value).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown sparsity key(s) {unknown}; allowed: {allowed}")
        return cls(**value)

    def to_dict(self) -> dict:
        """Plain data (lists and dicts) that `Sparsity.parse` reads back."""
        out = {"harvest": self.harvest, "relu": list(self.relu),
               "drop": [_rule_dict(r) for r in self.drop]}
        if self.weights is not None:
            out["weights"] = copy.deepcopy(self.weights)
        return out


def _rule_dict(rule: DropRule) -> dict:
    """The keys of `rule` that differ from their defaults (and always its targets)."""
    out = {"targets": list(rule.targets)}
    for f in fields(DropRule)[1:]:
        value = getattr(rule, f.name)
        if value != f.default:
            out[f.name] = value
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _rule(value) -> DropRule:
    if isinstance(value, DropRule):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"each drop rule must be a mapping with targets and fraction or "
                          f"threshold, got {value!r}")
    allowed = [f.name for f in fields(DropRule)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown drop rule key(s) {unknown}; allowed: {allowed}")
    if "targets" not in value:
        raise ConfigError("a drop rule needs targets: the module-name globs whose outputs it "
                          "sparsifies, e.g. targets: ['fc*']")
    return DropRule(**value)


def _weights(value):
    """cstorch.sparse-style weight sparsity, kept as the dict it was given after
    `simulator.weight_sparsity.WeightSparsity.from_dict` has checked it."""
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"sparsity weights must be a mapping with keys such as "
                          f"{', '.join(WEIGHT_KEYS)}, got {value!r}")
    weight_sparsity(value)
    return copy.deepcopy(value)


def weight_sparsity(value: dict | None):
    """The simulator's parsed weight-sparsity config for `value` (None when off)."""
    if not value:
        return None
    from simulator.weight_sparsity import WeightSparsity
    return WeightSparsity.from_dict(value)


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and ":" not in text and Path(text).suffix.lower() in (".yaml", ".yml", ".json")


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"sparsity file {str(path)!r} does not exist")
    where = f"sparsity file {str(path)!r}"
    loaded = load_yaml(read_text(path, where), where)
    if isinstance(loaded, dict) and "sparsity" in loaded:
        loaded = loaded["sparsity"]
    return loaded


# ---- applying a Sparsity to a torch model ----

def _match(names: list[str], globs, what: str, candidates: str) -> list[str]:
    matched = []
    for glob in globs:
        hits = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if not hits:
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise ConfigError(f"sparsity {what} glob {glob!r} matches no {candidates} of the "
                              f"model; they are: {shown}")
        matched += [n for n in hits if n not in matched]
    return matched


def _relu_hook(module, args, output):
    return torch.relu(output)


def _drop_hook(module, args, output, *, buffer: str, kind: str, where: str, gradient: str):
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise ConfigError(f"drop targets must output one floating-point tensor; "
                          f"{type(module).__name__} returns {type(output).__name__}")
    return torch.ops.wsebench.drop_small(output, getattr(module, buffer), kind, where, gradient)


def apply(model: nn.Module, sparsity=None) -> nn.Module:
    """A deep copy of `model` with `sparsity`'s ReLUs and drop rules in place; its state_dict
    keys equal `model`'s. ReLU globs match leaf modules: a dense non-linearity is swapped for
    nn.ReLU, any other leaf (e.g. a Linear with no activation after it) gets a ReLU on its
    output. Drop globs match any submodule; the drop applies to its output."""
    sparsity = Sparsity.parse(sparsity)
    if any(_BUFFER_RE.search(n) for n, _ in model.named_buffers()):
        raise ConfigError("this model already has wsebench sparsity applied; pass the original "
                          "model to wb.compile / wsebench.sparsity.apply")
    out = copy.deepcopy(model)
    leaves = [n for n, m in out.named_modules() if n and not any(True for _ in m.children())]
    for name in _match(leaves, sparsity.relu, "relu", "leaf module"):
        module = out.get_submodule(name)
        if isinstance(module, DENSE_ACTIVATIONS):
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, attr, nn.ReLU())
        else:
            module.register_forward_hook(_relu_hook)
    modules = [n for n, _ in out.named_modules() if n]
    for i, rule in enumerate(sparsity.drop):
        for name in _match(modules, rule.targets, "drop target", "module"):
            module = out.get_submodule(name)
            buffer = f"{BUFFER_PREFIX}{i}"
            module.register_buffer(buffer, torch.tensor(rule.value_at(0), dtype=torch.float64),
                                   persistent=False)
            module.register_forward_hook(functools.partial(
                _drop_hook, buffer=buffer, kind=rule.kind, where=rule.where, gradient=rule.gradient))
    return out


def drop_buffers(names, sparsity: Sparsity) -> dict[str, DropRule]:
    """Buffer fqn -> the drop rule whose value it holds, for the schedule buffers among `names`."""
    out = {}
    for name in names:
        m = _BUFFER_RE.search(name)
        if m and int(m.group(1)) < len(sparsity.drop):
            out[name] = sparsity.drop[int(m.group(1))]
    return out


def scheduled_values(names, sparsity: Sparsity, step: int) -> dict[str, np.float64]:
    """Buffer fqn -> its value at training step `step` (0-based), as the float64 it is stored in."""
    return {n: np.float64(rule.value_at(step)) for n, rule in drop_buffers(names, sparsity).items()}


def set_step(model: nn.Module, sparsity, step: int) -> None:
    """Set the drop buffers of an `apply`-ed torch model to their values at `step`, as the
    Session does before each step: call it before each eager step to train the same model."""
    sparsity = Sparsity.parse(sparsity)
    values = scheduled_values([n for n, _ in model.named_buffers()], sparsity, step)
    for name, value in values.items():
        model.get_buffer(name).fill_(float(value))


from .sparsity_report import compare  # noqa: E402,F401  (public: wsebench.sparsity.compare)
