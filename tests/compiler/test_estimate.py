"""compiler.estimate: the static estimate is the cost model on assumed counts. On dense data it
equals the measurement for every kernel kind; on sparse data the two differ only through the
counts (measured counts injected into the estimate give the measurement)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import estimate
from compiler.kernels import KINDS, attention_kernel, generated_kernel, kind_of, matmul_kernel
from compiler.kernels.conv import conv_kernel
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer
from simulator.measure import Runs, measure_kernel, variants

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)


def _probs(samples, heads, length, real=None, seed=0):
    """Softmax outputs with each sample's keys past `real` masked out (every key real by default)."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((samples, heads, length, length)).astype(np.float32)
    if real is not None:
        pad = np.arange(length)[None, :] >= np.asarray(real)[:, None]
        scores = np.where(pad[:, None, None, :], np.float32(-1e9), scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _dense_case(kind: str, rng):
    """(kernel, env of dense tensors, mapping) of one kind."""
    if kind == "matmul":
        k, n, tokens, samples = 40, 24, 3, 5
        kernel = matmul_kernel("fc", k, n, samples, tokens)
        env = {"fc_x": rng.standard_normal((samples * tokens, k)).astype(np.float32) + 5,
               "fc_dy": rng.standard_normal((samples * tokens, n)).astype(np.float32) + 5}
        return kernel, env, Mapping(3, 4)
    if kind == "attention":
        kernel = attention_kernel("sdpa", 4, 2, 12, 8)
        return kernel, {"probs": _probs(4, 2, 12)}, Mapping(3, 2)
    if kind == "conv":
        kernel = conv_kernel("conv", samples=3, channels=4, out_channels=6, size=8)
        env = {"conv_x": rng.standard_normal((3, 4, 8, 8)).astype(np.float32) + 5,
               "conv_dy": rng.standard_normal((3, 6, 8, 8)).astype(np.float32) + 5}
        return kernel, env, Mapping(6, 6)
    return generated_kernel("gen", 100, 4, 3), {}, Mapping(2, 5)


def _measure(kernel, env, mapping, harvest=True):
    runs = Runs(np, variants(harvest, False), None, {})
    return measure_kernel(kernel, mapping, env, runs, T, SGD, harvest)


@pytest.mark.parametrize("kind", list(KINDS))
def test_on_dense_data_the_estimate_equals_the_measurement(kind):
    kernel, env, mapping = _dense_case(kind, np.random.default_rng(0))
    measured = _measure(kernel, env, mapping)
    assumed = estimate.sample_cycles(kernel, mapping, T, 1.0)
    np.testing.assert_allclose(measured.sample_cycles, assumed, rtol=0.01)
    np.testing.assert_allclose(measured.dense_sample_cycles, estimate.dense_sample_cycles(kernel, mapping, T),
                               rtol=0.01)
    assert measured.executed_macs == pytest.approx(KINDS[kind].dense_macs(kernel) * kernel.samples,
                                                   rel=0.01)


@pytest.mark.parametrize("kind", list(KINDS))
def test_sample_cycles_is_the_kernels_run_of_its_assumed_sample(kind):
    """The search's shortcut (the busiest core, no run, no table) is `kernel_cycles`' figure,
    on every mapping tried, at any density, harvesting or not."""
    kernel, _, mapping = _dense_case(kind, np.random.default_rng(0))
    for rows, cols in ((1, 1), (mapping.rows, mapping.cols), (2, 3), (5, 1)):
        m = Mapping(rows, cols)
        for density, harvest in ((1.0, True), (0.37, True), ((0.3, 0.8), True), (0.5, False)):
            want = float(estimate.kernel_cycles(kernel, m, T, density, harvest).sample.max())
            assert estimate.sample_cycles(kernel, m, T, density, harvest) == want


def _sparse_case(kind: str, rng):
    kernel, env, mapping = _dense_case(kind, rng)
    if kind in ("matmul", "conv"):
        env = {name: np.where(rng.random(v.shape) < 0.3, v, 0).astype(np.float32) for name, v in env.items()}
    elif kind == "attention":
        env = {"probs": _probs(4, 2, 12, real=[12, 5, 9, 1])}
    return kernel, env, mapping


@pytest.mark.parametrize("kind", list(KINDS))
def test_on_sparse_data_they_differ_only_through_the_counts(kind):
    """Measured counts injected into the estimate give exactly the measurement."""
    kernel, env, mapping = _sparse_case(kind, np.random.default_rng(1))
    runs = Runs(np, variants(True, False), None, {})
    counts = KINDS[kind].measured_counts(kernel, mapping, env, runs)
    injected = estimate.kernel_cycles(kernel, mapping, T, counts=counts)
    measured = measure_kernel(kernel, mapping, env, runs, T, SGD, True)
    np.testing.assert_array_equal(injected.sample, measured.samples)
    assert counts.rows.shape == (2, kernel.samples)
    np.testing.assert_array_equal(injected.macs, measured.macs)
    if kind in ("matmul", "conv"):   # zeros were skipped: the measurement beat the dense estimate
        assert (measured.sample_cycles < estimate.sample_cycles(kernel, mapping, T, 1.0)).all()


def test_harvest_off_estimates_dense_work_whatever_the_density():
    kernel, mapping = matmul_kernel(k=256, n=256), Mapping(4, 4)
    assert estimate.sample_cycles(kernel, mapping, T, 0.25, harvest=False) == \
        estimate.dense_sample_cycles(kernel, mapping, T)
    assert estimate.sample_cycles(kernel, mapping, T, 0.25) < estimate.dense_sample_cycles(kernel, mapping, T)


def test_estimate_falls_with_density_and_area():
    k = matmul_kernel(k=1024, n=1024)
    d = [estimate.sample_cycles(k, Mapping(4, 4), T, density) for density in (1.0, 0.5, 0.25)]
    assert d[0] > d[1] > d[2]
    cycles = [estimate.dense_sample_cycles(k, Mapping(s, s), T) for s in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(cycles, cycles[1:])), cycles


def test_every_wavelet_received_activates_a_task():
    """A core pays `task_cycles` per wavelet it receives: with links fast enough not to bound
    the pass, one more cycle per task adds each pass's received wavelets on the busiest core."""
    k, m = matmul_kernel(k=64, n=64), Mapping(2, 2)
    a = estimate.dense_sample_cycles(k, m, T)
    b = estimate.dense_sample_cycles(k, m, wafer("classroom", task_cycles=T.task_cycles + 1))
    # x rows forward, dY columns backward, each tile ended by a control wavelet
    received = 2 * (32 / T.dense_values_per_wavelet + 1)
    assert b - a == received


def test_sram_ports_bound_the_core_when_values_are_wider():
    """Four FP16 lanes use the two 64-bit read ports and the 64-bit write port exactly; FP32
    values need twice the SRAM cycles, so compute-bound work takes twice as long."""
    from compiler.cost import sram_factor
    assert sram_factor(T) == 1.0
    wide = wafer("classroom", value_bits=32, link_bits=32)
    assert sram_factor(wide) == 2.0
    k, m = matmul_kernel(k=512, n=512), Mapping(1, 1)
    c = estimate.kernel_cycles(k, m, T).split()[0]
    assert estimate.kernel_cycles(k, m, wide).split()[0] > 1.9 * c


def test_parameter_free_kernels_have_no_update():
    assert estimate.update_cycles(generated_kernel(), Mapping(2, 2, 3), T, SGD) == 0.0
    assert estimate.update_cycles(attention_kernel("a", 4, 2, 8, 4), Mapping(2, 2), T, SGD) == 0.0


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_a_dense_model_measures_its_estimate(activation):
    """A whole step on data with no zeros to skip: the measurement equals the estimate."""
    torch.manual_seed(0)
    model = wb.models.mlp(12, 32, 4, depth=3, activation=activation, dropout=0.0, seed=0)
    x, y = wb.data.blobs(16, 12, 4, seed=0)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    session.step(x, y)
    summary = session.report().summary
    assert summary["estimate_vs_measured"] == pytest.approx(1.0, rel=0.01)
    est = session.plan.estimate()
    assert summary["transmission_samples_per_s"] == pytest.approx(est["transmission_samples_per_s"],
                                                                  rel=0.01)
    assert summary["compute_samples_per_s"] == pytest.approx(est["compute_samples_per_s"], rel=0.01)


def test_speedup_follows_density_on_a_compute_bound_chain():
    """A matmul chain whose cores are compute bound: the forward and dW work scale with the
    density of x, the dX work does not, so the cycles are linear in the density and the
    speedup over dense is (a + b) / (a d + b), the mechanism behind every harvest figure."""
    k, m = matmul_kernel(k=1024, n=1024), Mapping(2, 2)
    at = {d: estimate.sample_cycles(k, m, T, (d, 1.0)) for d in (1.0, 0.75, 0.5, 0.25, 0.0)}
    assert at[1.0] > at[0.75] > at[0.5] > at[0.25] > at[0.0] > 0
    for d in (0.75, 0.5, 0.25):
        assert at[d] == pytest.approx(at[0.0] + d * (at[1.0] - at[0.0]), rel=0.01)


def test_the_estimates_utilization_counts_the_macs_its_densities_execute():
    """A plan sized for sparse densities executes fewer MACs than dense: its estimated compute
    utilization counts those (as the measurement counts the useful ones), so it never passes
    100% of the peak and sits below the dense-MAC figure of the same plan (which it once was)."""
    import dataclasses

    import torch
    import torch.nn as nn

    import wsebench as wb
    model = wb.models.mlp(16, 128, 4, depth=4, dropout=0.3, seed=0)
    x, y = wb.data.blobs(32, 16, 4, seed=0)
    plan = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                      densities="calibrate").plan
    est = plan.estimate()
    dense_macs = sum(kind_of(k).dense_macs(k) for k in plan.kernels) * plan.kernels[0].samples
    dense_pct = 100.0 * 2 * dense_macs / (plan.target.peak_flops * est["cycles"] / plan.target.clock_hz)
    assert est["compute_utilization_pct"] < dense_pct
    assert est["compute_utilization_pct"] <= 100.0
    assert dataclasses.replace(plan, harvest=False).estimate()["compute_utilization_pct"] > \
        est["compute_utilization_pct"]
