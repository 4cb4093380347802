"""The optimizer a plan trains with, read from a torch.optim instance's hyperparameters.

Semantics follow torch.optim 2.13: SGD (lr, momentum, dampening, nesterov, weight_decay),
Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019: decoupled weight decay).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")

# Options we read, and the value each must have when the option is not implemented.
_UNSUPPORTED_DEFAULTS = {
    "sgd": {"maximize": False},
    "adam": {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False,
     },
    "adamw": {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False},
}
_DECOUPLED = "decoupled_weight_decay"  # torch's AdamW is Adam with this set
# foreach gives the same float32 results as the single-tensor loop on CPU, fused differs within
# rounding. The rest is torch.optim.lr_scheduler's bookkeeping: from it the scheduler writes
# lr, momentum and betas into the group, and those are what we read.
_SCHEDULER_KEYS = {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum"}
_IGNORED = {"params", "foreach", "fused", "differentiable", "capturable"} | _SCHEDULER_KEYS


@dataclass(frozen=True)
class OptimizerSpec:
    kind: str
    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self):
        if self.kind not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.kind!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.eps < 0:
            raise ConfigError(f"optimizer eps must be >= 0, got {self.eps!r}")
        if not self.lr >= 0:
            raise ConfigError(f"optimizer lr must be >= 0, got {self.lr!r}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError("optimizer momentum and weight_decay must be >= 0")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("nesterov momentum requires momentum > 0 and dampening = 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"Adam betas must lie in [0, 1), got {self.betas}")

    @property
    def state_slots(self) -> int:
        """Per-weight state tensors kept resident: momentum buffer, or Adam's two moments."""
        if self.kind == "sgd":
            return 1 if self.momentum else 0
        return 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OptimizerSpec":
        d = dict(d)
        d["betas"] = tuple(d.get("betas", (0.9, 0.999)))
        return cls(**d)


def from_hyperparameters(kind: str, group: dict) -> OptimizerSpec:
    """Build a spec from a param group, raising on any option we do not implement."""
    if kind == "adam" and group.get(_DECOUPLED):
        kind = "adamw"
    group = {k: v for k, v in group.items() if k != _DECOUPLED}
    for option, default in _UNSUPPORTED_DEFAULTS.get(kind, {}).items():
        if option in group and bool(group[option]) != default:
            raise ConfigError(f"{kind} option {option}={group[option]!r} is not supported; "
                              f"use {option}={default}")
    for option in ("lr", "betas", "momentum", "weight_decay", "eps", "dampening"):
        value = group.get(option)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(type(v).__module__.startswith("torch") for v in values):
            raise ConfigError(f"{kind} option {option} given as a tensor is not supported; use a float")
    keys = {"lr", "momentum", "dampening", "nesterov", "weight_decay"} if kind == "sgd" else \
        {"lr", "betas", "eps", "weight_decay"}
    known = keys | _IGNORED | set(_UNSUPPORTED_DEFAULTS.get(kind, {}))
    unknown = set(group) - known
    if unknown:
        raise ConfigError(f"{kind} options {sorted(unknown)} are not supported")
    args = {k: group[k] for k in keys if k in group}
    for k, v in args.items():
        args[k] = tuple(float(b) for b in v) if k == "betas" else \
            (bool(v) if k == "nesterov" else float(v))
    return OptimizerSpec(kind=kind, **args)
