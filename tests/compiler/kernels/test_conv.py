"""compiler.kernels.conv: the convolution kind on the ISPD 2020 contest model, its graph build,
its per-core components (the contest's time on the busiest core), memory, and harvesting (a
zero in x or dY skips its multiplies)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from compiler.frontend import capture
from compiler.kernels import build_kernels
from compiler.kernels.conv import CONV, conv_kernel, conv_of
from compiler.kernels.conv.contest import Conv, args_for, contest_shape, conv_time, conv_weight_words
from compiler.kernels.conv.terms import components, dense_macs, layout
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.passes import run_pipeline
from compiler.target import wafer
from simulator.measure import Runs, measure_kernel, variants

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)


def test_args_fit_the_mapping_and_are_the_fastest_that_do():
    conv = Conv(16, 16, 3, 3, 8, 12)
    for rows, cols in [(2, 3), (8, 6), (20, 9), (32, 36), (7, 4)]:
        h, w, cc, k = args_for(conv, rows, cols)
        height, width = contest_shape((h, w, cc, k))
        assert height <= rows and width <= cols
        best = min(conv_time(conv, hh, ww, c2, k)
                   for hh in range(1, 17) for ww in range(1, 17) for c2 in range(1, 9)
                   if hh * ww * (c2 + 1) <= rows)
        assert conv_time(conv, h, w, cc, k) == best


def test_busiest_core_runs_the_contests_time():
    """Dense forward: a tile's MACs, the contest's `conv_time` for the mapping's parameters
    on the fullest tile, are shared by its three columns; each core's cycles are its share
    over the SIMD width, and every MAC is done once."""
    kernel = conv_kernel(samples=1, channels=6, out_channels=9, size=10)
    for mapping in (Mapping(4, 3), Mapping(12, 9), Mapping(30, 12)):
        counts = CONV.assumed_counts(kernel, mapping, T, 1.0, harvest=False)
        c = components(kernel, counts.values, mapping, T)
        args = args_for(conv_of(kernel), mapping.rows, mapping.cols)
        expected = np.ceil(conv_time(conv_of(kernel), *args) / 3 / T.simd)
        assert np.asarray(c.fwd_compute).max() == expected
        assert layout(kernel, mapping.rows, mapping.cols).tile_macs.sum() == \
            pytest.approx(10 * 10 * 6 * 9 * 9)         # every MAC on exactly one core


def test_more_cores_are_faster_and_hold_less():
    kernel = conv_kernel(samples=2, channels=16, out_channels=16, size=16)
    small, large = Mapping(4, 3), Mapping(40, 24)
    cycles = [np.asarray(components(kernel, CONV.assumed_counts(kernel, m, T, 1.0, False).values,
                                    m, T).fwd_compute).max() for m in (small, large)]
    assert cycles[1] < cycles[0]
    memory = [CONV.memory_per_core(kernel, m, T, SGD, in_flight=2) for m in (small, large)]
    assert memory[1] < memory[0]
    for m in (small, large):      # the contest's weight tile, plus the bias spread over columns
        _, _, cc, k = args_for(conv_of(kernel), m.rows, m.cols)
        assert CONV.weights_per_core(kernel, m) == \
            conv_weight_words(conv_of(kernel), cc, k) + -(-16 // m.cols)


def test_first_layer_has_no_dx_pass():
    with_dx, first = conv_kernel(dx=True), conv_kernel(dx=False)
    assert dense_macs(with_dx) * 2 == dense_macs(first) * 3
    m = Mapping(6, 6)
    bwd = [np.asarray(components(k, CONV.assumed_counts(k, m, T, 1.0, False).values, m, T).bwd_compute).max()
           for k in (with_dx, first)]
    assert bwd[1] < bwd[0]


def _measure(kernel, x, dy, mapping, harvest=True):
    runs = Runs(np, variants(harvest, False), None, {})
    env = {kernel.stream["x"]: x, kernel.stream["dy"]: dy}
    return measure_kernel(kernel, mapping, env, runs, T, SGD, harvest)


def test_harvested_conv_time_follows_input_density():
    """ReLU zeros in x skip their multiplies: the measured compute-bound sample time falls with
    x's density, and the dense run (harvesting off) does not."""
    kernel = conv_kernel(samples=2, channels=32, out_channels=32, size=12, dx=False)
    mapping = Mapping(4, 3)                       # few cores: compute bound
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32) + 3
    dy = rng.standard_normal((2, 32, 12, 12)).astype(np.float32) + 3
    times, dense = [], []
    for density in (1.0, 0.5, 0.25):
        sparse = np.where(rng.random(x.shape) < density, x, 0).astype(np.float32)
        timing = _measure(kernel, sparse, dy, mapping)
        times.append(timing.samples[0].mean())
        dense.append(timing.samples[1].mean())
    assert times[0] > times[1] > times[2]
    assert dense[0] == dense[1] == dense[2] == pytest.approx(times[0])
    # the forward and dW passes scale with the density, the dX pass is absent (first layer)
    assert times[2] / times[0] == pytest.approx(0.25, rel=0.15)


def test_measured_counts_are_tile_densities():
    kernel = conv_kernel(samples=1, channels=4, out_channels=6, size=8)
    mapping = Mapping(10, 6)
    h, w, cc, k = args_for(conv_of(kernel), mapping.rows, mapping.cols)
    x = np.ones((1, 4, 8, 8), dtype=np.float32)
    x[:, :, :4] = 0                              # the top half of the image is zero
    dy = np.ones((1, 6, 8, 8), dtype=np.float32)
    runs = Runs(np, variants(True, False), None, {})
    counts = CONV.measured_counts(kernel, mapping, {"conv_x": x, "conv_dy": dy}, runs).values
    assert counts.x.shape == (2, h, w, cc) and counts.dy.shape == (2, h, w, k)
    assert counts.x_all[0] == pytest.approx(0.5) and counts.x_all[1] == 1.0
    if h > 1:
        assert counts.x[0, 0].max() < counts.x[0, -1].min()


def test_built_from_the_graph_with_streams_and_first_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.Flatten(), nn.Linear(6 * 16, 2))
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 2, (2,))
    graph = run_pipeline(capture(model, nn.CrossEntropyLoss(), (x, y), method="aot"))
    kernels = {k.name: k for k in build_kernels(graph)[0]}
    first, second = kernels["0"], kernels["2"]
    assert first.kind == second.kind == "conv"
    assert conv_of(first) == Conv(8, 8, 3, 3, 3, 4, 2, 2)
    assert conv_of(second) == Conv(4, 4, 3, 3, 2, 6, 1, 1)       # groups: 2 channels per output
    assert "dx" not in first.stream and "dx" in second.stream
    assert graph.type_of[first.stream["x"]].shape == (2, 3, 8, 8)
    assert graph.type_of[second.stream["dy"]].shape == (2, 6, 4, 4)
    assert first.params == ("0.weight", "0.bias")


def test_assumed_density_lowers_the_estimate():
    kernel = conv_kernel(samples=2, channels=16, out_channels=16, size=8)
    m = Mapping(4, 3)
    full, half = (np.asarray(components(kernel, CONV.assumed_counts(kernel, m, T, d, True).values,
                                        m, T).fwd_compute).max() for d in (1.0, 0.5))
    assert half == pytest.approx(full / 2, abs=1)


def test_the_contest_and_training_read_one_set_of_formulas():
    from compiler.ispd import library
    from compiler.kernels.conv import contest
    for name in ("Conv", "conv_time", "conv_memory", "contest_shape"):
        assert getattr(library, name) is getattr(contest, name), name
    conv = Conv(28, 28, 3, 3, 64, 64)       # the vectorized option search evaluates the same lines
    ks = np.array([1, 2, 5, 64])
    np.testing.assert_array_equal(conv_time(conv, 4, 2, 8, ks), [conv_time(conv, 4, 2, 8, int(k)) for k in ks])


def test_cores_outside_the_contest_rectangle_idle():
    kernel = conv_kernel(samples=1, channels=3, out_channels=4, size=4)
    mapping = Mapping(40, 20)                     # more than the layer can use
    h, w, cc, k = args_for(conv_of(kernel), mapping.rows, mapping.cols)
    height, width = contest_shape((h, w, cc, k))
    c = components(kernel, CONV.assumed_counts(kernel, mapping, T, 1.0, False).values, mapping, T)
    from compiler.cost import per_core_cycles
    busy = per_core_cycles(c, (1, 1, mapping.rows, mapping.cols))[0]
    assert (busy[height:] == 0).all() and (busy[:, width:] == 0).all()
    assert (busy[:height, :width] > 0).all()
