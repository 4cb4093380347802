"""The model zoo's argument checks, shared by its modules (`models`, `model_zoo_cnn`)."""
from __future__ import annotations

from compiler.errors import ConfigError


def positive(name: str, value, model: str = "mlp") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{model} {name} must be a positive integer, got {value!r}")
    return value
