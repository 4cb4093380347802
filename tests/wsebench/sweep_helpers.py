"""Shared pieces of the sweep, store, checkpoint and CLI-sweep tests (a module with a unique
name: several test folders have a conftest.py)."""
from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

from tests.configs import tiny_config
from wsebench.sweeps import InlineExecutor

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GRID = {"model.hidden": [8, 16], "sparsity.harvest": [True, False]}


def sweep_config(**overrides) -> dict:
    """One experiment in about a second: MLP hidden 16, depth 2, dropout, 64 samples, 5 steps."""
    return tiny_config(**{"hidden": 16, "depth": 2, "samples": 64, "batch_size": 16, "steps": 5,
                          **overrides})


class CountingExecutor(InlineExecutor):
    """Runs in this process, one point at a time, and remembers every config it was given."""

    def __init__(self):
        self.configs = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.configs.append(args[0])
        return super().submit(fn, *args, **kwargs)


def child_env() -> dict:
    """Environment for a subprocess that imports wsebench and these helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    return env


def local_cluster(n_workers: int = 2):
    """A Dask LocalCluster of worker processes on loopback, without the dashboard."""
    from dask.distributed import LocalCluster
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None)
