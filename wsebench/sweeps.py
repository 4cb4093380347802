"""Sweeps: one experiment per point of a grid, on any `concurrent.futures.Executor`.

    import wsebench as wb
    table = wb.sweep(wb.default_config(), {"model.hidden": [32, 64], "sparsity.harvest": [True, False]},
                     store="runs/hidden")               # a local process pool by default
    table.plot("model.hidden", "samples_per_s", by="sparsity.harvest")

    from dask.distributed import Client                 # the same sweep on a Dask cluster
    table = wb.sweep(base, grid, executor=Client("tcp://scheduler:8786").get_executor(), store=...)

A grid maps dotted config keys ("model.hidden", "wafer.sram_bytes", "optimizer.lr", "seed") to
lists of values; the points are their cartesian product, in order. Every point gets its own seed,
derived from the base config's seed and the point's values (`derive_seed`), unless the grid sets
"seed" itself or `seeds="base"` gives every point the base seed (same init and dropout masks
across points, e.g. to compare harvesting on and off). A point's store key is the hash of its
full config, seed included, so nothing stochastic is reused because its arguments look alike.
Each finished point is written to the store by this process (workers need no shared disk) as
soon as it arrives, so an interrupted sweep keeps every point it finished, and a re-run with the
same store runs only the points that are missing. Sweeps that share a store claim each point
before running it (`wsebench.store_claims`), so two at once run every point once between them:
a point another live sweep holds is waited for and read from the store when it lands.

The config and the grid are checked before anything is expanded: their size (a YAML alias
bomb is small on disk and huge once copied), the number of points, and every point's config.
"""
from __future__ import annotations

import datetime
import os
import platform
import socket
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, wait
from dataclasses import asdict

from compiler import ConfigError

from .errors import UserError
from . import store_claims as claims
from .store import KIND, FORMAT, Results, Store, StoreEntryError, canonical, dumps, row_of
from .sweep_grid import (MAX_POINTS, SEED_MODES, Point, derive_seed, expand_grid,  # noqa: F401
                         plan_points, set_key)
from .sweep_pool import InlineExecutor, default_workers, process_pool, stop_pool  # noqa: F401

POLL_SECONDS = 0.5             # how often a sweep looks for points another sweep runs
ERROR_MODES = ("record", "raise")


class SweepError(UserError, RuntimeError):
    """A point of a sweep failed and the sweep was asked to stop (errors="raise")."""


# ----------------------------------------------------------------------------- one experiment

_RUN_LOCK = threading.Lock()   # runs share torch's global RNG: a thread pool runs them one by one


def versions() -> dict:
    import numpy
    import torch

    from . import __version__
    return {"wsebench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def run_point(config: dict) -> dict:
    """Run one experiment (in a worker); return {"record": JSON data, "arrays": {name: array}},
    or {"error": "Type: message", "traceback": ...} rather than raising (some errors do not
    survive pickling back to the caller)."""
    import traceback

    import numpy as np

    from .config import run
    with _RUN_LOCK:
        started = _now()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = run(config, progress=False)
        except Exception as err:  # noqa: BLE001 - reported per point; the sweep goes on
            return {"error": f"{type(err).__name__}: {' '.join(str(err).split())}",
                    "traceback": traceback.format_exc()}
        report, history = result["report"], result["history"]
        record = {"config": config, "seed": config["seed"], "versions": versions(),
                  "backend": result["session"].backend,
                  "history": [asdict(r) for r in history], "summary": report.summary,
                  "kernels": report.kernels, "final_loss": result["final_loss"],
                  "accuracy": result["accuracy"], "wall_seconds": result["wall_seconds"],
                  "started": started, "finished": _now(), "host": socket.gethostname(),
                  "pid": os.getpid(),
                  "warnings": sorted({str(w.message) for w in caught})}
        horizontal, vertical = report.link_load if len(report.link_load) == 2 else (None, None)
        arrays = {"core_utilization": report.core_utilization, "sram_per_core": report.sram_per_core,
                  "kernel_grid": report.kernel_grid, "kernel_names": np.array(report.kernel_names),
                  "losses": np.array([r.loss for r in history]),
                  "cycles": np.array([r.cycles for r in history]),
                  "dense_cycles": np.array([r.dense_cycles for r in history])}
        if horizontal is not None:
            arrays.update(link_load_horizontal=np.asarray(horizontal),
                          link_load_vertical=np.asarray(vertical))
        return {"record": canonical(record), "arrays": {k: np.asarray(v) for k, v in arrays.items()}}


# ----------------------------------------------------------------------------- executors

# ----------------------------------------------------------------------------- the sweep

def sweep(base_config: dict | None = None, grid: dict | None = None, executor: Executor | None = None,
          store=None, *, workers: int | None = None, repeats: int = 1, seeds: str = "derived",
          progress: bool = True, errors: str = "record") -> Results:
    """Run one experiment per point of `grid` over `base_config`; return a Results table.

    executor: any concurrent.futures.Executor (e.g. `dask.distributed.Client(...).get_executor()`);
        None starts a local process pool of `workers` processes (default: one per CPU core).
    store: a folder; finished points are written there as they arrive and skipped on re-runs.
    repeats: runs per grid point, each with its own seed. seeds: "derived" (each point its own
        seed) or "base" (every point the base config's seed). errors: "record" lists a failed
        point in `results.errors` and goes on; "raise" stops the sweep with SweepError.
    """
    if errors not in ERROR_MODES:
        raise ConfigError(f"errors must be one of {', '.join(ERROR_MODES)}, got {errors!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    points = plan_points(base_config, grid, repeats, seeds)
    db = None if store is None else Store(store)
    table = Results(store=None if db is None else db.path)
    rows, notes = {}, []
    if db is not None:
        notes += [f"sweep: removed {name}, left by a crashed writer" for name in claims.clean_stale(db.path)]
    todo = []
    for p in points:
        found = _stored(db, p, notes)
        if found is not None:
            rows[p.index] = found
            table.skipped.append(p.key)
        else:
            todo.append(p)
    from tqdm.auto import tqdm
    bar = tqdm(total=len(points), initial=len(rows), desc="sweep", unit="run", disable=not progress)
    for note in notes:
        bar.write(note, file=sys.stderr)
    run = _Run(db, todo, table, rows, bar, errors)
    own = executor is None and bool(todo)
    if own:
        executor = process_pool(min(workers or default_workers(), len(todo)))
    clean = False
    try:
        run.loop(executor)
        clean = True
    except KeyboardInterrupt:
        table.interrupted = True
        where = f"; they are in {db.path}, re-run to finish the rest" if db is not None else ""
        bar.write(f"sweep interrupted: {len(rows)} of {len(points)} points finished{where}",
                  file=sys.stderr)
    finally:
        run.abandon()
        bar.close()
        if own:
            stop_pool(executor, now=not clean)
    table.extend(rows[i] for i in sorted(rows))
    if table.errors and progress:
        print(f"sweep: {len(table.errors)} of {len(points)} points failed; see results.errors",
              file=sys.stderr)
    return table


class _Run:
    """The points of one sweep in flight: claimed and queued, submitted, or waited for (held by
    another sweep on the same store)."""

    def __init__(self, db, todo, table, rows, bar, errors):
        self.db, self.table, self.rows, self.bar, self.errors = db, table, rows, bar, errors
        self.queue, self.waiting, self.pending, self.claimed = deque(todo), [], {}, set()

    def _claim(self, p: Point) -> bool:
        """Claim `p` just before it runs (not all at the start: sweeps sharing a store then
        take turns); a point another sweep holds is waited for."""
        if self.db is None:
            return True
        if p.key in self.claimed or claims.try_claim(self.db.path, p.key):
            self.claimed.add(p.key)
            found = _stored(self.db, p, [])
            if found is None:
                return True
            # another sweep stored it after this one listed its points and before the claim
            self._release(p.key)
            self._skip(p, found)
            return False
        self.waiting.append(p)
        return False

    def _skip(self, p: Point, row: dict) -> None:
        self.rows[p.index] = row
        self.table.skipped.append(p.key)
        self.bar.update(1)

    def loop(self, executor) -> None:
        limit = getattr(executor, "max_in_flight", None) or len(self.queue) or 1
        while self.queue or self.pending or self.waiting:
            while self.queue and len(self.pending) < limit:
                p = self.queue.popleft()
                if self._claim(p):
                    self.pending[executor.submit(run_point, p.config)] = p
            if self.pending:
                done, _ = wait(list(self.pending), timeout=POLL_SECONDS if self.waiting else None,
                               return_when=FIRST_COMPLETED)
            else:
                done = ()
                time.sleep(POLL_SECONDS)
            for fut in done:
                self._finish(self.pending.pop(fut), _outcome(fut))
            self._look_at_waiting()

    def _finish(self, p: Point, out: dict) -> None:
        if "error" in out:
            self.table.errors.append({"point": p.values, "key": p.key, "seed": p.seed,
                                      "error": out["error"], "traceback": out.get("traceback")})
            self.bar.write(f"sweep: point {dumps(p.values)} failed: {out['error']}", file=sys.stderr)
            if self.errors == "raise":
                raise SweepError(f"point {dumps(p.values)} failed: {out['error']}")
        else:
            record = _finish_record(out["record"], p)
            if self.db is not None:
                self.db.put(record, out["arrays"])
            self.rows[p.index] = row_of(record)
            if self.db is None:                  # with a store, arrays are read from disk
                self.table._arrays[p.key] = out["arrays"]
            self.table.ran.append(p.key)
        self._release(p.key)
        self.bar.update(1)

    def _look_at_waiting(self) -> None:
        """A point another sweep held: read it once it is stored, or take it over if that
        sweep died."""
        if self.db is not None and self.claimed:
            claims.touch(self.db.path, self.claimed)
        for p in list(self.waiting):
            found = _stored(self.db, p, [])
            if found is not None:
                self.waiting.remove(p)
                self._skip(p, found)
            elif claims.try_claim(self.db.path, p.key):
                self.waiting.remove(p)
                self.claimed.add(p.key)
                self.queue.append(p)

    def _release(self, key: str) -> None:
        if self.db is not None and key in self.claimed:
            self.claimed.discard(key)
            claims.release(self.db.path, [key])

    def abandon(self) -> None:
        """Cancel what has not run and drop this sweep's claims, so another sweep can take them."""
        for fut in self.pending:
            fut.cancel()
        if self.db is not None and self.claimed:
            claims.release(self.db.path, list(self.claimed))
            self.claimed.clear()


def _stored(db: Store | None, p: Point, notes: list) -> dict | None:
    """The row of point `p` if the store holds it intact; a damaged entry is noted and re-run."""
    if db is None or not db.has(p.key):
        return None
    try:
        record, _ = db.get(p.key)
    except StoreEntryError as err:
        notes.append(f"sweep: re-running the damaged entry {err}")
        return None
    if record["config"] != p.config:
        notes.append(f"sweep: re-running {p.key}.json, its config differs from the point's")
        return None
    return row_of({**record, "point": p.values})


def _outcome(fut) -> dict:
    try:
        out = fut.result()
    except CancelledError:
        return {"error": "CancelledError: the executor cancelled this point"}
    except Exception as err:  # noqa: BLE001 - e.g. a worker process died (BrokenProcessPool)
        return {"error": f"{type(err).__name__}: {err}"}
    if not isinstance(out, dict) or not ("record" in out or "error" in out):
        return {"error": f"the executor returned {type(out).__name__}, not a result"}
    return out


def _finish_record(record: dict, p: Point) -> dict:
    return {"format": FORMAT, "kind": KIND, "key": p.key, "point": p.values, **record,
            "config": p.config}
