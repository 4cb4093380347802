"""Every notebook runs top to bottom, headless, and shows what it promises (figures, reports).

The kernel gets WSEBENCH_FAST=1, which the notebooks read to shrink their runs. Each notebook
runs in a kernel process of its own and the test process only waits on it, so the notebooks
run side by side, one per core (`executed`): the suite's slowest file takes half the time on
two cores, and every notebook is still checked on its own."""
from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: pip install -e .[dev]")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e .[dev]")
pytest.importorskip("ipykernel", reason="ipykernel is not installed: pip install -e .[dev]")


def _execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    # The kernel runs this interpreter from the repository root, so `import wsebench` resolves
    # to this checkout whether or not it is pip-installed.
    env = {**os.environ, "WSEBENCH_FAST": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.km = client.create_kernel_manager()
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute(env=env)
    return nb


@pytest.fixture(scope="module")
def executed(request) -> "dict[Path, Future]":
    """The notebooks this run's tests check, executed as many at once as this process may use
    cores; a notebook's error is raised by its own test (`Future.result`)."""
    wanted = [item.callspec.params["path"] for item in request.session.items
              if item.originalname == "test_notebook_runs_headless"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(len(wanted), cores or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="notebook") as pool:
        return {path: pool.submit(_execute, path) for path in wanted}


def _outputs(nb, mime: str) -> int:
    return sum(mime in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_says_what_it_teaches_and_sums_up(path):
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "teaches" in first.source.lower(), \
        f"{path.name} must start with what it teaches"
    assert last.cell_type == "markdown" and "summary" in last.source.lower(), \
        f"{path.name} must end with a short summary"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_headless(path, executed):
    stored = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), \
        f"{path.name} is committed with outputs; strip them"
    nb = executed[path].result()
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert _outputs(nb, "image/png") >= 1, f"{path.name} showed no figure"
    if "report()" in "".join(c.source for c in nb.cells):
        assert _outputs(nb, "text/html") >= 1, f"{path.name} calls report() but shows no HTML"
    if "Workbench" in "".join(c.source for c in nb.cells):
        assert _outputs(nb, "application/vnd.jupyter.widget-view+json") >= 1, \
            f"{path.name} makes a Workbench but displays no widget"
