"""The model zoo: plain PyTorch modules whose parameter-owning modules name the wafer's kernels."""
from __future__ import annotations

import torch.nn as nn

from compiler.target import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "identity": nn.Identity}


class MLP(nn.Module):
    """`depth` Linear layers named fc1..fc{depth}; activation and dropout between them."""

    def __init__(self, in_features: int, hidden: int, out_features: int, depth: int,
                 activation: str, dropout: float):
        super().__init__()
        widths = [in_features] + [hidden] * (depth - 1) + [out_features]
        self.depth = depth
        for i in range(depth):
            self.add_module(f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
            if i < depth - 1:
                self.add_module(f"act{i + 1}", ACTIVATIONS[activation]())
                if dropout:
                    self.add_module(f"drop{i + 1}", nn.Dropout(dropout))

    def forward(self, x):
        for i in range(1, self.depth + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.depth:
                x = getattr(self, f"act{i}")(x)
                if hasattr(self, f"drop{i}"):
                    x = getattr(self, f"drop{i}")(x)
        return x


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"mlp {name} must be a positive integer, got {value!r}")
    return value


def mlp(in_features: int = 16, hidden: int = 64, out_features: int = 4, depth: int = 3,
        activation: str = "relu", dropout: float = 0.0, seed: int | None = None) -> MLP:
    """A multi-layer perceptron; `depth` counts Linear layers (so depth=1 is logistic regression)."""
    for name, value in (("in_features", in_features), ("hidden", hidden),
                        ("out_features", out_features), ("depth", depth)):
        _positive(name, value)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if seed is not None:
        import torch
        torch.manual_seed(seed)
    return MLP(in_features, hidden, out_features, depth, activation, dropout)
