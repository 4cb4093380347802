"""simulator.backend: choosing NumPy or CuPy, the fallback said once in the log, and the one exit to NumPy."""
from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import pytest

from simulator import backend
from simulator.backend import cuda_available, get_backend, to_numpy
from simulator.ops import run_op


@pytest.fixture
def no_cupy(monkeypatch):
    """Pretend CuPy is not installed, with the per-process caches cleared around the test."""
    backend._probe_cupy.cache_clear()
    backend._auto_backend.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    yield
    backend._probe_cupy.cache_clear()
    backend._auto_backend.cache_clear()


def test_auto_falls_back_to_numpy_saying_why_once_in_the_log(no_cupy, caplog):
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="simulator.backend"):
        warnings.simplefilter("error")          # quietly: no UserWarning (red in a notebook)
        first, second = get_backend("auto"), get_backend()
    assert first.name == second.name == "numpy" and first.xp is np
    assert "cupy not installed" in first.reason
    fallbacks = [r for r in caplog.records if r.name == "simulator.backend"]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.INFO
    assert "NumPy" in fallbacks[0].getMessage() and "cupy not installed" in fallbacks[0].getMessage()


def test_cupy_requested_without_cupy_raises(no_cupy):
    with pytest.raises(RuntimeError, match="backend='numpy'.*cupy-cuda12x"):
        get_backend("cupy")
    assert not cuda_available()


def test_numpy_by_name_never_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = get_backend("numpy")
    assert b.name == "numpy" and b.xp is np


def test_invalid_name_raises_naming_it():
    with pytest.raises(ValueError, match="'torch'.*'auto'.*'numpy'.*'cupy'"):
        get_backend("torch")


def test_backend_is_frozen():
    with pytest.raises(AttributeError):
        get_backend("numpy").name = "cupy"


def test_to_numpy_round_trips():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert to_numpy(a) is a
    np.testing.assert_array_equal(to_numpy([1, 2]), np.array([1, 2]))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA device")
def test_cupy_ops_match_numpy():
    cp = get_backend("cupy").xp
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 4)).astype(np.float32)
    idx = rng.integers(0, 8, 5)
    cases = [
        ("aten.mm.default", (x, w), {}), ("aten.gelu.default", (x,), {}),
        ("aten.gelu.default", (x,), {"approximate": "tanh"}), ("aten._log_softmax.default", (x, 1, False), {}),
        ("aten.sum.dim_IntList", (x, []), {}), ("aten.add.Tensor", (x, x), {"alpha": 0.3}),
        ("aten.mul.Tensor", (x, 0.4), {}), ("aten.where.self", (x > 0, x, x * 2), {}),
        ("aten.index_put.default", (np.zeros((8, 16), np.float32), [idx], x[:5], True), {}),
        ("aten.gather.default", (x, 1, rng.integers(0, 16, (8, 3))), {}),
    ]
    for name, args, kwargs in cases:
        dev_args = tuple(cp.asarray(a) if isinstance(a, np.ndarray) else
                         [cp.asarray(i) for i in a] if isinstance(a, list) else a for a in args)
        mine = to_numpy(run_op(cp, name, dev_args, kwargs))
        ref = run_op(np, name, args, kwargs)
        assert mine.dtype == ref.dtype, name
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6, err_msg=name)
