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


def pytest_collection_modifyitems(items):
    """The notebook tests run last, so that the notebooks have the whole run to execute in the
    background (`notebook_runs`); the other tests keep their order."""
    items.sort(key=lambda item: item.path.name == "test_notebooks.py")


@pytest.fixture(scope="session", autouse=True)
def notebook_runs(request):
    """The notebooks this run checks (tests/test_notebooks.py), started with its first test on
    the cores the test process leaves idle (tests/notebook_runs.py); all of them when the run
    checks nothing else. Path -> Future of the executed notebook."""
    items = request.session.items
    wanted = [item.callspec.params["path"] for item in items
              if getattr(item, "originalname", "") == "test_notebook_runs_headless"]
    if not wanted:
        yield {}
        return
    from tests import notebook_runs as runs
    alone = all(item.path.name == "test_notebooks.py" for item in items)
    pool, futures = runs.start(wanted, min(len(wanted), runs.cores() - (not alone)))
    try:
        yield futures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
