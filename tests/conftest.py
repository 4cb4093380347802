"""Shared fixtures: torch is the oracle, so every test seeds it."""
import os
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch
    torch.manual_seed(0)
    yield
