"""Shared fixtures: torch is the oracle, so every test seeds it."""
import os
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=FutureWarning)

# CI has 2 cores; torch's intra-op threads fight NumPy's BLAS and pytest itself for them, and
# the eager oracle's tiny ops gain nothing from a second thread.
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch():
    import torch
    torch.manual_seed(0)
    yield
