"""compiler.cost: tiles, per-core cycle components, update cost, memory per core, Mapping.

Property-style checks run over a seeded NumPy generator (many random cases per test), so they
are deterministic and fast.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler.cost import (Mapping, compressed_weight_bytes, dense_sample_cycles,
                           estimate_sample_cycles, generated_components, generated_cycles,
                           index_bytes, matmul_components, matmul_cycles, memory_per_core,
                           tile_sizes, update_cycles, update_flops, weights_per_core)
from compiler.optim_spec import OptimizerSpec
from compiler.errors import ConfigError
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
SGD_M = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
ADAM = OptimizerSpec("adam", lr=1e-3)
ADAMW = OptimizerSpec("adamw", lr=1e-3, weight_decay=0.01)
CASES = 60


def rng(seed=0):
    return np.random.default_rng(seed)


def random_case(r):
    """Random tiles of a random layer, random tokens, random non-zero counts within the tiles."""
    k, n = int(r.integers(1, 300)), int(r.integers(1, 300))
    rows, cols = int(r.integers(1, min(k, 16) + 1)), int(r.integers(1, min(n, 16) + 1))
    samples, tokens = int(r.integers(1, 5)), int(r.integers(1, 4))
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    nnz_x = np.floor(r.random((samples, rows)) * (tk * tokens + 1))
    nnz_dy = np.floor(r.random((samples, cols)) * (tn * tokens + 1))
    return dict(nnz_x=nnz_x, nnz_dy=nnz_dy, tile_k=tk, tile_n=tn, tokens=tokens)


PER_CORE = ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link")


def full(c: dict, samples: int, rows: int, cols: int) -> dict:
    """Per-core components broadcast to (samples, rows, cols); `macs` as the step's total."""
    out = {key: np.broadcast_to(c[key], (samples, rows, cols)) for key in PER_CORE}
    out["macs"] = float(np.sum(c["macs"]))
    return out


def components(case, **kw):
    c = dict(case)
    nnz_x, nnz_dy, tk, tn = c.pop("nnz_x"), c.pop("nnz_dy"), c.pop("tile_k"), c.pop("tile_n")
    raw = matmul_components(nnz_x, nnz_dy, tk, tn, T, tokens=c.pop("tokens"), **kw)
    return full(raw, nnz_x.shape[0], len(tk), len(tn))


def mm(nnz_x, nnz_dy, tk, tn, target=T, **kw):
    raw = matmul_components(nnz_x, nnz_dy, tk, tn, target, **kw)
    return full(raw, np.shape(nnz_x)[0], len(tk), len(tn))


# ---------------------------------------------------------------- tile_sizes


def test_tile_sizes_partition_the_extent():
    r = rng(1)
    for _ in range(200):
        extent, parts = int(r.integers(1, 2000)), int(r.integers(1, 64))
        tiles = tile_sizes(extent, parts)
        assert len(tiles) == parts
        assert tiles.sum() == extent
        assert (tiles >= 0).all()
        assert tiles.max() == math.ceil(extent / parts)
        # contiguous: full tiles first, then at most one partial tile, then empties
        assert (np.diff(tiles) <= 0).all()


def test_tile_sizes_even_split():
    assert tile_sizes(12, 4).tolist() == [3, 3, 3, 3]
    assert tile_sizes(10, 1).tolist() == [10]


# ---------------------------------------------------------------- matmul_components


def test_component_shapes():
    r = rng(2)
    for _ in range(CASES):
        case = random_case(r)
        shape = (case["nnz_x"].shape[0], len(case["tile_k"]), len(case["tile_n"]))
        for harvest in (True, False):
            c = matmul_components(case["nnz_x"], case["nnz_dy"], case["tile_k"], case["tile_n"], T,
                                  harvest=harvest, tokens=case["tokens"])
            for key in PER_CORE:
                assert np.broadcast_shapes(np.shape(c[key]), shape) == shape, key
                assert (np.asarray(c[key]) >= 0).all()


def test_dense_baseline_ignores_nnz():
    r = rng(3)
    for _ in range(CASES):
        case = random_case(r)
        a = components(case, harvest=False)
        other = dict(case, nnz_x=np.zeros_like(case["nnz_x"]), nnz_dy=r.permutation(case["nnz_dy"]))
        b = components(other, harvest=False)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_harvest_at_full_density_equals_dense():
    r = rng(4)
    for _ in range(CASES):
        case = random_case(r)
        samples = case["nnz_x"].shape[0]
        full = dict(case, nnz_x=np.tile(case["tile_k"] * case["tokens"], (samples, 1)),
                    nnz_dy=np.tile(case["tile_n"] * case["tokens"], (samples, 1)))
        on, off = components(full, harvest=True), components(full, harvest=False)
        for key in on:
            np.testing.assert_allclose(on[key], off[key])


def test_fewer_nonzeros_never_cost_more():
    r = rng(5)
    for _ in range(CASES):
        case = random_case(r)
        fewer = dict(case, nnz_x=np.floor(case["nnz_x"] * r.random(case["nnz_x"].shape)),
                     nnz_dy=np.floor(case["nnz_dy"] * r.random(case["nnz_dy"].shape)))
        more, less = components(case), components(fewer)
        for key in more:
            assert np.all(less[key] <= more[key]), key
        f_more, b_more = matmul_cycles(case["nnz_x"], case["nnz_dy"], case["tile_k"], case["tile_n"],
                                       T, True, case["tokens"])
        f_less, b_less = matmul_cycles(fewer["nnz_x"], fewer["nnz_dy"], case["tile_k"],
                                       case["tile_n"], T, True, case["tokens"])
        assert (f_less <= f_more).all() and (b_less <= b_more).all()


def test_harvest_never_costs_more_than_dense():
    r = rng(6)
    for _ in range(CASES):
        case = random_case(r)
        on, off = components(case, harvest=True), components(case, harvest=False)
        for key in on:
            assert np.all(on[key] <= off[key] + 1e-9), key


def test_zeros_are_skipped():
    case = random_case(rng(7))
    dense = components(case, harvest=True)
    none = components(dict(case, nnz_x=np.zeros_like(case["nnz_x"])), harvest=True)
    assert (none["fwd_compute"] == 0).all()
    assert none["macs"] <= dense["macs"]
    # what is left is exactly the dX pass, driven by dY alone
    tk = case["tile_k"][None, :, None]
    expected = np.ceil(case["nnz_dy"][:, None, :] * tk / T.simd)
    np.testing.assert_array_equal(none["bwd_compute"], np.broadcast_to(expected, none["bwd_compute"].shape))


def test_halving_density_halves_forward_compute():
    k, n, rows, cols = 4096, 4096, 4, 4
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    dense = mm(tk[None] * 1.0, tn[None] * 1.0, tk, tn)
    half = mm(tk[None] * 0.5, tn[None] * 1.0, tk, tn)
    ratio = half["fwd_compute"].sum() / dense["fwd_compute"].sum()
    assert ratio == pytest.approx(0.5, rel=0.01)
    assert half["macs"] < dense["macs"]


def test_forward_compute_is_macs_over_simd():
    tk, tn = tile_sizes(64, 2), tile_sizes(48, 3)
    nnz = np.array([[10.0, 20.0]])
    c4 = mm(nnz, tn[None] * 1.0, tk, tn)
    c8 = mm(nnz, tn[None] * 1.0, tk, tn, wafer("classroom", simd=8))
    assert (c8["fwd_compute"] <= c4["fwd_compute"]).all()
    assert c8["fwd_compute"].sum() == pytest.approx(c4["fwd_compute"].sum() / 2, rel=0.1)


def test_first_layer_skips_dx():
    r = rng(8)
    for _ in range(CASES):
        case = random_case(r)
        with_dx, no_dx = components(case, computes_dx=True), components(case, computes_dx=False)
        assert np.all(no_dx["bwd_compute"] <= with_dx["bwd_compute"])
        assert no_dx["macs"] <= with_dx["macs"]
        np.testing.assert_array_equal(no_dx["fwd_compute"], with_dx["fwd_compute"])
    # dense: the dX pass is exactly one third of the layer's MACs
    tk, tn = tile_sizes(32, 2), tile_sizes(32, 2)
    a = mm(tk[None] * 1.0, tn[None] * 1.0, tk, tn, harvest=False)
    b = mm(tk[None] * 1.0, tn[None] * 1.0, tk, tn, harvest=False, computes_dx=False)
    assert b["macs"] == pytest.approx(a["macs"] * 2 / 3)


def test_pairs_drive_dw():
    tk, tn = tile_sizes(32, 2), tile_sizes(32, 2)
    x, dy = np.array([[8.0, 8.0]]), np.array([[8.0, 8.0]])
    base = mm(x, dy, tk, tn)
    fewer = mm(x, dy, tk, tn, pairs=np.zeros((1, 2, 2)))
    assert (fewer["bwd_compute"] < base["bwd_compute"]).all()
    assert fewer["macs"] < base["macs"]


def test_dense_macs_match_the_loop_nest():
    """Summed over cores and samples, dense MACs are 3 * tokens * K * N per sample (fwd, dX, dW),
    with or without harvesting when every operand is dense."""
    r = rng(9)
    for _ in range(20):
        case = random_case(r)
        samples = case["nnz_x"].shape[0]
        k, n = case["tile_k"].sum(), case["tile_n"].sum()
        expected = samples * 3 * case["tokens"] * k * n
        assert components(case, harvest=False)["macs"] == pytest.approx(expected)
        dense = dict(case, nnz_x=np.tile(case["tile_k"] * case["tokens"], (samples, 1)) * 1.0,
                     nnz_dy=np.tile(case["tile_n"] * case["tokens"], (samples, 1)) * 1.0)
        assert components(dense, harvest=True)["macs"] == pytest.approx(expected)


# ---------------------------------------------------------------- generated kernels


def test_generated_cycles_fall_with_cores():
    m1, m4 = Mapping(1, 1), Mapping(2, 2)
    assert generated_cycles(1024, 3, m4, T) < generated_cycles(1024, 3, m1, T)
    assert generated_cycles(1024, 6, m1, T) > generated_cycles(1024, 3, m1, T)
    c = generated_components(1000, 2, m4, T)
    assert c["flops"] == 2000.0
    assert generated_cycles(1000, 2, m4, T) == max(c["compute"], c["link"])


# ---------------------------------------------------------------- update


def test_update_flops_by_optimizer():
    assert update_flops(SGD) < update_flops(SGD_M) < update_flops(ADAM) <= update_flops(ADAMW)


def test_update_cycles_grow_with_state(make_matmul):
    k, m = make_matmul(k=256, n=256), Mapping(4, 4)
    sgd, sgdm, adam = (update_cycles(k, m, T, o) for o in (SGD, SGD_M, ADAM))
    assert 0 < sgd < sgdm < adam


def test_update_cycles_fall_with_cores(make_matmul):
    k = make_matmul(k=256, n=256)
    assert update_cycles(k, Mapping(8, 8), T, ADAM) < update_cycles(k, Mapping(2, 2), T, ADAM)


def test_replicas_add_an_allreduce(make_matmul):
    k = make_matmul(k=128, n=128)
    one = update_cycles(k, Mapping(4, 4, 1), T, SGD)
    two = update_cycles(k, Mapping(4, 4, 2), T, SGD)
    four = update_cycles(k, Mapping(4, 4, 4), T, SGD)
    assert one < two < four


def test_parameter_free_kernel_has_no_update(make_generated):
    assert update_cycles(make_generated(), Mapping(2, 2, 3), T, ADAM) == 0.0


def test_weights_per_core(make_matmul):
    k = make_matmul(k=100, n=60, bias=True)
    m = Mapping(3, 7)
    w = weights_per_core(k, m)
    assert w >= math.ceil(100 * 60 / 21)
    assert w * m.rows * m.cols >= k.param_numel
    assert weights_per_core(make_matmul(k=100, n=60, bias=False), m) == \
        math.ceil(100 / 3) * math.ceil(60 / 7)


# ---------------------------------------------------------------- memory_per_core


def test_memory_falls_as_the_mapping_grows(make_matmul):
    k = make_matmul(k=512, n=512)
    for opt in (SGD, ADAM):
        mems = [memory_per_core(k, Mapping(s, s), T, opt, 3) for s in (1, 2, 4, 8, 16, 32)]
        assert all(a > b for a, b in zip(mems, mems[1:])), mems
        rows = [memory_per_core(k, Mapping(r, 4), T, opt, 3) for r in (1, 2, 4, 8)]
        assert all(a > b for a, b in zip(rows, rows[1:])), rows


def test_memory_grows_with_state_and_in_flight(make_matmul):
    k, m = make_matmul(k=128, n=128), Mapping(4, 4)
    assert memory_per_core(k, m, T, SGD, 1) < memory_per_core(k, m, T, SGD_M, 1) \
        < memory_per_core(k, m, T, ADAM, 1)
    assert memory_per_core(k, m, T, SGD, 1) < memory_per_core(k, m, T, SGD, 5)


def test_memory_holds_at_least_the_weights(make_matmul):
    k, m = make_matmul(k=64, n=32), Mapping(2, 2)
    w = weights_per_core(k, m)
    assert memory_per_core(k, m, T, SGD, 1) >= w * T.weight_bytes


def test_generated_memory_falls_with_cores(make_generated):
    k = make_generated(elements=4096)
    assert memory_per_core(k, Mapping(4, 4), T, SGD, 2) < memory_per_core(k, Mapping(1, 1), T, SGD, 2)


def test_memory_uses_target_byte_sizes(make_matmul):
    k, m = make_matmul(k=64, n=64), Mapping(2, 2)
    base = memory_per_core(k, m, T, SGD, 1)
    assert memory_per_core(k, m, wafer("classroom", weight_bytes=8), SGD, 1) > base
    assert memory_per_core(k, m, wafer("classroom", activation_bytes=4), SGD, 1) > base


def test_activation_memory_is_linear_in_tokens(make_matmul):
    m, flight = Mapping(2, 2), 3

    def activations(tokens):
        k = make_matmul(k=64, n=64, tokens=tokens)
        resident = weights_per_core(k, m) * (T.weight_bytes + 4 * (1 + SGD.state_slots))
        return memory_per_core(k, m, T, SGD, flight) - resident

    one = activations(1)
    for tokens in (2, 4, 8):
        assert activations(tokens) == tokens * one


# ---------------------------------------------------------------- estimates


def test_estimate_falls_with_density(make_matmul):
    k, m = make_matmul(k=1024, n=1024), Mapping(4, 4)
    d = [estimate_sample_cycles(k, m, T, density) for density in (1.0, 0.5, 0.25)]
    assert d[0] > d[1] > d[2]
    assert estimate_sample_cycles(k, m, T, 1.0) == dense_sample_cycles(k, m, T)
    assert estimate_sample_cycles(k, m, T, 0.25, harvest=False) == dense_sample_cycles(k, m, T)


def test_estimate_falls_with_area(make_matmul):
    """More cores, fewer cycles per sample (the talk's 'area x time' trade)."""
    k = make_matmul(k=1024, n=1024)
    cycles = [dense_sample_cycles(k, Mapping(s, s), T) for s in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(cycles, cycles[1:])), cycles


def test_estimate_includes_overhead(make_matmul):
    k, m = make_matmul(k=64, n=64), Mapping(2, 2)
    a = dense_sample_cycles(k, m, T)
    b = dense_sample_cycles(k, m, wafer("classroom", kernel_overhead_cycles=T.kernel_overhead_cycles + 100))
    assert b - a == 100


# ---------------------------------------------------------------- Mapping


def test_mapping_geometry():
    m = Mapping(3, 4, 2)
    assert m.cores == 24 and m.width == 8
    assert Mapping(3, 4).replicas == 1


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


# ---------------------------------------------------------------- masked (compressed) weights


def test_masked_work_sets_compute_and_macs():
    r = rng(11)
    for _ in range(CASES):
        case = random_case(r)
        samples, rows, cols = case["nnz_x"].shape[0], len(case["tile_k"]), len(case["tile_n"])
        full_tile = case["tile_k"][None, :, None] * case["tile_n"][None, None, :] * case["tokens"]
        work = {key: np.floor(r.random((samples, rows, cols)) * (full_tile + 1)) for key in ("fwd", "dx", "dw")}
        for computes_dx in (True, False):
            c = components(case, work=work, computes_dx=computes_dx)
            plain = components(case, computes_dx=computes_dx)
            np.testing.assert_array_equal(c["fwd_compute"], np.ceil(work["fwd"] / T.simd))
            bwd = np.ceil(work["dw"] / T.simd) + (np.ceil(work["dx"] / T.simd) if computes_dx else 0)
            np.testing.assert_array_equal(c["bwd_compute"], bwd)
            # the streams are still sent: links follow nnz(x) and nnz(dY) as without a mask
            np.testing.assert_array_equal(c["fwd_link"], plain["fwd_link"])
            np.testing.assert_array_equal(c["bwd_link"], plain["bwd_link"])
            want = work["fwd"].sum() + work["dw"].sum() + (work["dx"].sum() if computes_dx else 0)
            assert c["macs"] == pytest.approx(want)


def test_work_is_ignored_with_harvest_off():
    case = random_case(rng(12))
    samples, rows, cols = case["nnz_x"].shape[0], len(case["tile_k"]), len(case["tile_n"])
    work = {key: np.zeros((samples, rows, cols)) for key in ("fwd", "dx", "dw")}
    dense, with_work = components(case, harvest=False), components(case, harvest=False, work=work)
    for key in PER_CORE:
        np.testing.assert_array_equal(dense[key], with_work[key])
    assert dense["macs"] == with_work["macs"]


@pytest.mark.parametrize("replicas", [1, 3])
def test_per_core_update_of_full_tiles_equals_the_dense_update(make_matmul, replicas):
    for opt in (SGD, SGD_M, ADAM):
        k, m = make_matmul(k=96, n=64, bias=False), Mapping(4, 8, replicas)
        full = np.full((4, 8), weights_per_core(k, m))
        per_core = update_cycles(k, m, T, opt, weights=full)
        assert per_core.shape == (4, 8)
        assert (per_core == update_cycles(k, m, T, opt)).all()
        fewer = update_cycles(k, m, T, opt, weights=full // 4)
        assert (fewer < per_core).all()


def test_empty_cores_do_no_update_and_no_allreduce(make_matmul):
    k, m = make_matmul(k=96, n=64, bias=False), Mapping(4, 8, 2)
    weights = np.full((4, 8), 10)
    weights[1] = 0
    cycles = update_cycles(k, m, T, ADAM, weights=weights)
    assert (cycles[1] == 0).all() and (cycles[0] > 0).all()


def test_compressed_memory_counts_values_and_indices(make_matmul):
    k, m = make_matmul(k=128, n=96, bias=True), Mapping(4, 4)
    assert index_bytes(T) * 8 == T.link_bits - T.value_bits
    tk, tn = math.ceil(128 / 4), math.ceil(96 / 4)
    for opt in (SGD, SGD_M, ADAM):
        per_weight = T.weight_bytes + 4 * (1 + opt.state_slots) + 2 * index_bytes(T)
        a = memory_per_core(k, m, T, opt, 2, weight_nnz=100)
        b = memory_per_core(k, m, T, opt, 2, weight_nnz=300)
        assert b - a == 200 * per_weight
        assert compressed_weight_bytes(0, tk, tn, T, opt) == (tk + tn) * index_bytes(T)
        dense = memory_per_core(k, m, T, opt, 2)
        assert memory_per_core(k, m, T, opt, 2, weight_nnz=tk * tn // 10) < dense
        assert memory_per_core(k, m, T, opt, 2, weight_nnz=tk * tn) > dense   # index overhead
        # the weight tile is what changes: the bias and the stashed activations are as before
        assert dense - memory_per_core(k, m, T, opt, 2, weight_nnz=0) == \
            tk * tn * (T.weight_bytes + 4 * (1 + opt.state_slots)) - (tk + tn) * index_bytes(T)
