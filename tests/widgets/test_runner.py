"""The background trainer without any widget: play, pause, single steps, errors, determinism."""
from __future__ import annotations

import threading
import time

import pytest

from tests.configs import tiny_config
from tests.simulator.test_backend import no_cupy  # noqa: F401 - the fixture: CuPy missing
from wsebench.widgets.runner import Runner


def tiny(**overrides) -> dict:
    return tiny_config(**{"hidden": 16, "depth": 2, "samples": 128, "batch_size": 16, "steps": 5,
                          **overrides})


@pytest.fixture(scope="module")
def compiled():
    r = Runner()
    r.compile(tiny())
    yield r
    r.stop()


def test_needs_a_compile_first():
    with pytest.raises(RuntimeError, match="compile"):
        Runner().train()


def test_run_plays_to_the_config_steps_and_again(compiled):
    statuses = []
    compiled.on_status = statuses.append
    steps = []
    compiled.on_step = lambda result: steps.append(result.step)
    start = len(compiled.history)
    compiled.run(timeout=60)
    assert len(compiled.history) == (5 if start < 5 else start + 5)
    assert compiled.status == "done" and statuses[-1] == "done"
    assert steps == [r.step for r in compiled.history[start:]]


def test_callbacks_run_in_the_worker_thread(compiled):
    threads = []
    compiled.on_step = lambda result: threads.append(threading.current_thread().name)
    compiled.run(2, timeout=60)
    assert threads == ["wsebench-train"] * 2


def test_single_steps_are_exact(compiled):
    compiled.on_step = None
    n = len(compiled.history)
    compiled.step(3)
    assert compiled.wait(60)
    assert len(compiled.history) == n + 3 and compiled.status == "paused"


def test_pause_stops_a_long_run(compiled):
    compiled.on_step = lambda result: time.sleep(0.005)
    compiled.train(100_000)
    deadline = time.monotonic() + 60
    while len(compiled.history) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    compiled.pause()
    assert compiled.wait(30)
    n = len(compiled.history)
    time.sleep(0.3)
    assert len(compiled.history) == n and compiled.status == "paused" and not compiled.running


def test_an_error_in_a_step_stops_training_and_is_kept():
    r = Runner()
    r.compile(tiny())
    r.parts["batches"] = iter([])                       # the data runs out
    r.train()
    assert r.wait(30)
    assert r.status == "error" and isinstance(r.error, StopIteration)
    with pytest.raises(StopIteration):
        r.run()
    r.stop()


def test_recompiling_restarts_from_step_zero_with_the_same_losses():
    r = Runner()
    r.compile(tiny())
    first = r.run(timeout=60).losses
    r.compile(tiny())
    assert len(r.history) == 0
    assert r.run(timeout=60).losses == first
    r.stop()


def test_the_numpy_fallback_is_a_note_not_a_warning(no_cupy):
    import warnings
    r = Runner()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        r.compile(tiny(backend="auto"))
    assert r.session.backend == "numpy"
    assert [n for n in r.notes if "falling back to NumPy (cupy not installed)" in n]
    r.stop()
