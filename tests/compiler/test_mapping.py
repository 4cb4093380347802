"""compiler.mapping (Mapping, pins, in-flight samples) and the minimal rectangles under SRAM
(`compiler.options.minimal_mapping`)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from compiler.errors import WaferFitError
from compiler.estimate import memory_per_core
from compiler.mapping import Mapping, in_flight, pinned_mappings
from compiler.options import minimal_mapping, shape_for_area
from compiler.optim_spec import OptimizerSpec
from compiler.errors import ConfigError
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
ADAM = OptimizerSpec("adam", lr=1e-3)


def _numbers(text: str) -> list[int]:
    return [int(s.replace(",", "")) for s in re.findall(r"\d[\d,]*", text)]


# ---------------------------------------------------------------- in_flight / shapes


def _extents(kernel):
    return kernel.nest.extents


def test_in_flight():
    # the last stage turns a sample round at once; earlier stages hold more
    assert in_flight(2, 3, 64) == 1
    assert [in_flight(i, 4, 64) for i in range(4)] == sorted(
        [in_flight(i, 4, 64) for i in range(4)], reverse=True)
    assert in_flight(0, 100, 8) == 8             # never more than the batch
    assert in_flight(0, 1, 1) == 1


def test__extents(make_matmul, make_generated):
    assert _extents(make_matmul(k=12, n=34)) == (12, 34)
    assert _extents(make_generated(elements=50)) == (50, 50)


def test_shape_for_area_stays_within_bounds(make_matmul, make_generated):
    r = np.random.default_rng(0)
    for _ in range(200):
        k, n = int(r.integers(1, 2000)), int(r.integers(1, 2000))
        kern = make_matmul(k=k, n=n) if r.random() < 0.7 else make_generated(elements=k)
        area = int(r.integers(1, T.cores + 1))
        m = shape_for_area(kern, area, T)
        max_r, max_c = _extents(kern)
        assert 1 <= m.rows <= min(max_r, T.rows) and 1 <= m.cols <= min(max_c, T.cols)
        assert m.rows * m.cols <= max(area, 1)
        assert m.replicas == 1


def test_shape_follows_the_layer(make_matmul):
    big = wafer("wse2")
    tall, wide = make_matmul(k=1024, n=64), make_matmul(k=64, n=1024)
    mt, mw = shape_for_area(tall, 256, big), shape_for_area(wide, 256, big)
    assert mt.rows > mt.cols and mw.cols > mw.rows
    mt = shape_for_area(make_matmul(k=32, n=8), 64, T)
    assert mt.rows > mt.cols
    square = shape_for_area(make_matmul(k=512, n=512), 256, T)
    assert square.rows == square.cols == 16


# ---------------------------------------------------------------- minimal_mapping


def test_minimal_mapping_fits_sram(make_matmul, make_generated):
    r = np.random.default_rng(1)
    for _ in range(80):
        stages = int(r.integers(1, 6))
        index = int(r.integers(0, stages))
        opt = [SGD, ADAM][int(r.integers(0, 2))]
        if r.random() < 0.8:
            kern = make_matmul(k=int(r.integers(1, 1200)), n=int(r.integers(1, 1200)),
                               samples=int(r.integers(1, 64)), tokens=int(r.integers(1, 4)))
        else:
            kern = make_generated(elements=int(r.integers(1, 50000)), samples=int(r.integers(1, 64)))
        m = minimal_mapping(kern, index, stages, T, opt)
        flight = in_flight(index, stages, kern.samples)
        assert memory_per_core(kern, m, T, opt, flight) <= T.sram_bytes
        assert m.rows <= T.rows and m.cols <= T.cols
        if m.rows * m.cols > 1:   # it grew only because one core was not enough
            assert memory_per_core(kern, Mapping(1, 1), T, opt, flight) > T.sram_bytes


def test_small_kernel_gets_one_core(make_matmul, make_generated):
    assert minimal_mapping(make_matmul(k=8, n=8), 0, 2, T, SGD) == Mapping(1, 1)
    assert minimal_mapping(make_generated(elements=10), 1, 2, T, SGD) == Mapping(1, 1)


def test_minimal_mapping_grows_with_state(make_matmul):
    k = make_matmul(k=1024, n=1024)
    sgd, adam = minimal_mapping(k, 0, 2, T, SGD), minimal_mapping(k, 0, 2, T, ADAM)
    assert adam.cores > sgd.cores


def test_minimal_mapping_shrinks_with_more_sram(make_matmul):
    k = make_matmul(k=1024, n=1024)
    big = wafer("classroom", sram_bytes=4 * T.sram_bytes)
    assert minimal_mapping(k, 0, 2, big, SGD).cores < minimal_mapping(k, 0, 2, T, SGD).cores


def test_layer_too_big_for_the_classroom(make_matmul):
    k = make_matmul(name="huge", k=4096, n=4096)
    with pytest.raises(WaferFitError) as err:
        minimal_mapping(k, 0, 2, T, SGD)
    msg = str(err.value)
    assert "huge" in msg and "classroom" in msg
    assert f"{T.sram_bytes:,}" in msg
    nums = _numbers(msg)
    # the bytes needed are reported and exceed the SRAM of a core
    m = re.search(r"spread over (\d+) x (\d+) cores", msg)
    assert m, msg
    mapping = Mapping(int(m.group(1)), int(m.group(2)))
    need = memory_per_core(k, mapping, T, SGD, in_flight(0, 2, k.samples))
    assert need > T.sram_bytes
    assert need in nums
    # ... and it does fit on a big enough wafer
    assert minimal_mapping(k, 0, 2, wafer("wse2"), SGD).cores <= wafer("wse2").cores


def test_wafer_fit_error_is_a_value_error():
    assert issubclass(WaferFitError, ValueError)


# ---------------------------------------------------------------- pinned_mappings


@pytest.fixture
def kernels(make_matmul, make_generated):
    return (make_matmul("fc1", k=64, n=32, dx=False), make_matmul("fc2", k=32, n=16),
            make_matmul("layers.3", k=16, n=16), make_generated("log_softmax", elements=16))


@pytest.mark.parametrize("mapping", ["auto", None])
def test_auto_pins_nothing(kernels, mapping):
    assert pinned_mappings(kernels, mapping) == {}


def test_globs_resolve(kernels):
    pinned = pinned_mappings(kernels, {"fc*": Mapping(4, 4)})
    assert pinned == {"fc1": Mapping(4, 4), "fc2": Mapping(4, 4)}
    pinned = pinned_mappings(kernels, {"layers.?": Mapping(2, 2, 3), "log_softmax": Mapping(1, 1)})
    assert pinned == {"layers.3": Mapping(2, 2, 3), "log_softmax": Mapping(1, 1)}


def test_glob_is_case_sensitive(kernels):
    with pytest.raises(ConfigError):
        pinned_mappings(kernels, {"FC*": Mapping(1, 1)})


def test_first_matching_glob_wins(kernels):
    pinned = pinned_mappings(kernels, {"fc1": Mapping(2, 2), "fc*": Mapping(4, 4)})
    assert pinned["fc1"] == Mapping(2, 2) and pinned["fc2"] == Mapping(4, 4)


def test_unknown_glob_is_refused(kernels):
    with pytest.raises(ConfigError) as err:
        pinned_mappings(kernels, {"conv*": Mapping(2, 2)})
    msg = str(err.value)
    assert "conv*" in msg
    for k in kernels:
        assert k.name in msg


def test_oversize_mapping_is_refused(kernels):
    with pytest.raises(ConfigError) as err:
        pinned_mappings(kernels, {"fc2": Mapping(64, 4)})     # fc2 has only 32 rows to unroll
    msg = str(err.value)
    assert "fc2" in msg and "32 x 16" in msg


@pytest.mark.parametrize("bad", ["manual", {"fc1": (4, 4)}, {"fc1": {"rows": 4, "cols": 4}}])
def test_bad_mapping_values_are_refused(kernels, bad):
    with pytest.raises(ConfigError):
        pinned_mappings(kernels, bad)


# ---------------------------------------------------------------- Mapping


def test_mapping_geometry():
    m = Mapping(3, 4, 2)
    assert m.cores == 24 and m.width == 8
    assert Mapping(3, 4).replicas == 1
    assert m.replica == Mapping(3, 4) and Mapping(3, 4).replica == Mapping(3, 4)


def test_mapping_accepts_numpy_ints():
    assert Mapping(np.int64(2), np.int32(3)).cores == 6


@pytest.mark.parametrize("args", [(0, 1), (1, 0), (1, 1, 0), (-2, 2), (True, 2), (2, 2.0),
                                  (2, "2"), (None, 1)])
def test_mapping_rejects_bad_values(args):
    with pytest.raises(ConfigError) as err:
        Mapping(*args)
    assert "positive integer" in str(err.value)
    assert repr(next(a for a in args if isinstance(a, bool) or not isinstance(a, int) or a < 1)) \
        in str(err.value)
