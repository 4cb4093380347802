"""Shared fixtures: one tiny run (a few steps of a small ReLU MLP) serves the plot/HTML tests."""
from __future__ import annotations

import warnings

import pytest

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


@pytest.fixture(scope="session")
def tiny_run() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg.run(tiny_config(), progress=False)
