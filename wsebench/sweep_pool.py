"""The sweep's executors: an inline one for debugging, and the local process pool whose
workers die with the sweep.

A worker must not outlive a killed sweep (each holds a loaded torch, hundreds of MB). The
sweep's pid is handed to the workers explicitly (reading `os.getppid()` in the worker is too
late: a sweep killed while the worker starts has already left it to init). Each worker then
(1) on Linux asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG),
(2) exits at once if its parent is already gone, and (3) keeps a thread that checks every
half second, for systems without prctl.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Executor, Future

_PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


class InlineExecutor(Executor):
    """Runs each call in this process as it is submitted: for debugging and tiny sweeps."""
    max_in_flight = 1

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - delivered through the future
            future.set_exception(err)
        return future


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the thread that started it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass                          # not Linux: the watch thread does the job


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:    # the sweep's process died: do not run on as an orphan
            os._exit(1)
        time.sleep(WATCH_SECONDS)


def worker_init(parent: int) -> None:
    """Initializer of every pool worker; `parent` is the sweep's pid, passed by the sweep."""
    _die_with_parent()
    if os.getppid() != parent:        # it died before this worker got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch
    torch.set_num_threads(1)          # one worker per core


def process_pool(workers: int):
    """A process pool whose workers start fresh ("spawn": torch is loaded here) and exit when
    this process dies."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(),))


def stop_pool(pool, now: bool) -> None:
    if not now:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
