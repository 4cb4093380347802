"""The notebooks executed headless, each in a Jupyter kernel of its own, in the background.

A kernel is a process of its own and the test process only waits on it, while the test
process itself runs one test at a time on one core. So `start` runs the notebooks on the
cores the tests leave idle, from the run's first test on (tests/conftest.py), and
tests/test_notebooks.py checks each one's outputs when it gets there.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + \
    sorted((ROOT / "notebooks" / "teacher").glob("*.ipynb"))


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def execute(path: Path, fast: bool = True):
    """Run the notebook at `path` top to bottom, with WSEBENCH_FAST=1 unless `fast` is False
    (the student's sizes); returns it with its outputs (nbclient raises CellExecutionError on
    the first cell that fails)."""
    import nbclient
    import nbformat
    nb = nbformat.read(path, as_version=4)
    # The kernel runs this interpreter from the repository root, so `import wsebench` resolves
    # to this checkout whether or not it is pip-installed. It runs beside the tests, one core
    # each: one thread for torch's and NumPy's kernels, as the tests use (tests/conftest.py).
    env = {**os.environ, "WSEBENCH_FAST": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(
               [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if not fast:
        env.pop("WSEBENCH_FAST")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.km = client.create_kernel_manager()
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute(env=env)
    return nb


def start(paths: list[Path], workers: int) -> tuple[ThreadPoolExecutor, dict[Path, Future]]:
    """Execute `paths`, `workers` at a time, in the background; a notebook's result (or its
    error) is its future's."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="notebook")
    return pool, {path: pool.submit(execute, path) for path in paths}


def main(argv: list[str] | None = None) -> int:
    """Time notebooks headless, one at a time, as the tests run them but at the student's
    sizes (`--fast` for the tests' sizes):
    `PYTHONPATH=. python -m tests.notebook_runs [--fast] [notebooks/NAME.ipynb ...]`."""
    import argparse
    import time
    parser = argparse.ArgumentParser(prog="python -m tests.notebook_runs", description=main.__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all of them)")
    parser.add_argument("--fast", action="store_true", help="WSEBENCH_FAST=1, as the tests run")
    args = parser.parse_args(argv)
    for path in args.paths or NOTEBOOKS:
        start = time.perf_counter()
        execute(path.resolve(), fast=args.fast)
        print(f"{path.name:<32}{time.perf_counter() - start:8.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
