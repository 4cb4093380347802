"""One small experiment config for every test folder (`from tests.configs import tiny_config`)."""
from __future__ import annotations

from wsebench import config as cfg


def tiny_config(hidden: int = 24, depth: int = 3, samples: int = 256, batch_size: int = 32,
                steps: int = 4, **overrides) -> dict:
    """A run that compiles and trains in about a second: small MLP, a few steps, NumPy."""
    c = cfg.default_config()
    c["model"].update(hidden=hidden, depth=depth)
    c["data"].update(samples=samples, batch_size=batch_size)
    c["steps"] = steps
    c["backend"] = "numpy"
    c.update(overrides)
    return c
