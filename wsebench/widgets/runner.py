"""Training in a background thread, with Train / Pause / Step, for the workbench (no widgets here).

    r = Runner(on_step=print)
    r.compile(config)        # build the model, data and optimizer from the config; wb.compile it
    r.train()                # play: train until the config's `steps` (the kernel stays free)
    r.pause(); r.step()      # pause after the step in flight; then exactly one more step
    r.wait()                 # until the worker has nothing left to do
    r.stop()

One worker thread runs every step. It waits on a condition for work: `_play` (an Event, cleared
by Pause) lets it run steps until the target; `step()` queues single steps. Callbacks run in the
worker thread after each step; they must be quick (the workbench throttles its redraws).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from typing import Callable

from .. import config as _config
from ..session import History
from .state import buildable, validate


class Runner:
    def __init__(self, on_step: "Callable | None" = None, on_status: "Callable | None" = None):
        self.on_step, self.on_status = on_step, on_status
        self.session = None
        self.parts = None
        self.compiled_config: dict | None = None
        self.history = History()
        self.target = 0               # train() plays until len(history) reaches this
        self.status = "not compiled"  # not compiled | compiling | ready | running | paused | done | error
        self.error: BaseException | None = None
        self.notes: list[str] = []    # warnings and log lines of a compile (the NumPy fallback)
        self._cond = threading.Condition()
        self._play = threading.Event()   # set: run steps until the target; clear: paused
        self._pending = 0                # single steps asked for by step()
        self._busy = False               # a step is being computed
        self._stop = False
        self._thread: threading.Thread | None = None
        self._compile_lock = threading.Lock()

    # compile ------------------------------------------------------------------------------------
    def compile(self, config: dict):
        """Build and compile `config` (validated); training restarts from step 0."""
        with self._compile_lock:
            self.pause()
            self.wait()
            self._set_status("compiling")
            try:
                with warnings.catch_warnings(record=True) as caught, _logged() as lines:
                    warnings.simplefilter("always")
                    full = validate(config)
                    parts = {**_config.build(buildable(full)), "config": full}
                    session = _config.compile_built(parts)
            except BaseException as err:
                self.error = err
                self.session = None
                self._set_status("error")
                raise
            with self._cond:
                self.notes = sorted({str(w.message) for w in caught
                                     if not issubclass(w.category, (DeprecationWarning,
                                                                    FutureWarning))} | set(lines))
                self.parts, self.session, self.compiled_config = parts, session, full
                self.history = History()
                self.target = full["steps"]
                self.error = None
            self._set_status("ready")
            return session

    @property
    def compiled(self) -> bool:
        return self.session is not None

    # play / pause / step -----------------------------------------------------------------------
    def train(self, steps: int | None = None) -> None:
        """Play: train in the background until `steps` more steps (default: the config's steps
        counted from 0, or another `steps` once those are done). Returns at once."""
        self._need_session()
        with self._cond:
            if steps is not None:
                self.target = len(self.history) + steps
            elif len(self.history) >= self.target:
                self.target = len(self.history) + self.compiled_config["steps"]
            self._play.set()
            self._ensure_thread()
            self._cond.notify_all()
        self._set_status("running")

    def pause(self) -> None:
        """Stop after the step in flight (and drop single steps not yet started)."""
        with self._cond:
            was = self._play.is_set() or self._pending
            self._play.clear()
            self._pending = 0
            self._cond.notify_all()
        if was and self.session is not None:
            self._set_status("paused")

    def step(self, n: int = 1) -> None:
        """Exactly `n` more steps in the background (pauses a running Train first)."""
        self._need_session()
        with self._cond:
            self._play.clear()
            self._pending += n
            self._ensure_thread()
            self._cond.notify_all()
        self._set_status("running")

    def run(self, steps: int | None = None, timeout: float | None = None) -> History:
        """Train and wait until done (what a script or a notebook cell wants)."""
        self.train(steps)
        self.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.history

    def wait(self, timeout: float | None = None) -> bool:
        """Until the worker is idle (paused, done, or nothing asked); False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    @property
    def running(self) -> bool:
        with self._cond:
            return not self._idle()

    def stop(self) -> None:
        """End the worker thread (a later train/step starts a new one)."""
        with self._cond:
            self._stop = True
            self._play.clear()
            self._pending = 0
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._cond:
            self._thread, self._stop = None, False
        if self.session is not None and self.status in ("running", "compiling"):
            self._set_status("paused")

    # worker ---------------------------------------------------------------------------------------
    def _idle(self) -> bool:
        return not self._busy and not self._pending and not self._wants_play()

    def _wants_play(self) -> bool:
        return self._play.is_set() and len(self.history) < self.target

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="wsebench-train", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._pending and not self._wants_play():
                    self._cond.notify_all()
                    self._cond.wait()
                if self._stop:
                    self._cond.notify_all()
                    return
                single = self._pending > 0
                if single:
                    self._pending -= 1
                self._busy = True          # until the views are updated: wait() sees them drawn
            status = None
            try:
                result = self._one_step()
            except BaseException as err:  # noqa: BLE001 - shown in the UI, training stops
                with self._cond:
                    self.error = err
                    self._play.clear()
                    self._pending = 0
                status = "error"
            else:
                if self.on_step is not None:
                    try:
                        self.on_step(result)
                    except Exception as err:  # noqa: BLE001 - a view must never stop training
                        self.notes.append(f"view update failed: {err}")
                with self._cond:
                    if self._play.is_set() and len(self.history) >= self.target:
                        self._play.clear()
                        status = "done"
                    elif single and not self._pending and not self._play.is_set():
                        status = "paused"
            if status is not None:
                self._set_status(status)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _one_step(self):
        x, y = next(self.parts["batches"])
        result = self.session.step(x, y)
        with self._cond:
            self.history.append(result)
        return result

    def _need_session(self) -> None:
        if self.session is None:
            raise RuntimeError("nothing is compiled yet: call compile(config) first")

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:  # noqa: BLE001
                pass


# The simulator's quiet notices (the NumPy fallback: `simulator.backend`), which the workbench
# shows under its plan instead of a warning.
NOTICE_LOGGERS = ("simulator.backend",)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _logged():
    """The INFO and higher messages of `NOTICE_LOGGERS` while the block runs."""
    handler, saved = _Lines(), {}
    for name in NOTICE_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
        logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        for name, level in saved.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(level)


def timed(fn, interval: float):
    """`fn(*args, force=False)` that does nothing if it last ran under `interval` s ago."""
    last = [0.0]

    def call(*args, force: bool = False):
        now = time.monotonic()
        if force or now - last[0] >= interval:
            last[0] = now
            fn(*args)
            return True
        return False
    return call
