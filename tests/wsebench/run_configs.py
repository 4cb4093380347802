"""Small run configs for the wsebench tests (a module with a unique name, since several test
folders have a conftest.py and `import conftest` would find whichever was imported last)."""
from __future__ import annotations

from wsebench import config as cfg


def tiny_config(**overrides) -> dict:
    """A run that compiles and trains in about a second: small MLP, a few steps."""
    c = cfg.default_config()
    c["model"].update(hidden=24, depth=3)
    c["data"].update(samples=256, batch_size=32)
    c["steps"] = 4
    c["backend"] = "numpy"
    c.update(overrides)
    return c
