"""Shared fixtures: one tiny run (a few steps of a small ReLU MLP) serves the plot/HTML tests."""
from __future__ import annotations

import warnings

import pytest

from run_configs import tiny_config
from wsebench import config as cfg


@pytest.fixture(scope="session")
def tiny_run() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg.run(tiny_config(), progress=False)
