"""compiler.kernels.matmul: per-core components from counts, weights and memory per core.

Property-style checks run over a seeded NumPy generator (many random cases per test), so they
are deterministic and fast. Counts are injected directly (`MatmulCounts`): a harvested count is
the non-zeros, a dense one (harvesting off) every value of the tile.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler.cost import compressed_weight_bytes, index_bytes, tile_sizes
from compiler.kernels import matmul_kernel
from compiler.kernels.matmul import MATMUL
from compiler.kernels.matmul.counts import MatmulCounts, assumed, tile_nonzeros
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
SGD_M = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
ADAM = OptimizerSpec("adam", lr=1e-3)
CASES = 60
PER_CORE = ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link")


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
    return dict(nnz_x=nnz_x, nnz_dy=nnz_dy, k=k, n=n, tokens=tokens)


def mm(nnz_x, nnz_dy, k, n, target=T, harvest=True, tokens=1, pairs=None, computes_dx=True,
       work=None) -> dict:
    """The matmul kind's components for one variant of counts, broadcast to (samples, rows,
    cols), with `macs` the step's total. `harvest=False` counts every value (the dense run)."""
    nnz_x, nnz_dy = np.asarray(nnz_x, dtype=float), np.asarray(nnz_dy, dtype=float)
    samples, rows, cols = nnz_x.shape[0], nnz_x.shape[1], nnz_dy.shape[1]
    kernel = matmul_kernel("fc", k, n, samples, tokens, dx=computes_dx)
    if not harvest:
        nnz_x = np.tile(tile_sizes(k, rows) * tokens, (samples, 1)).astype(float)
        nnz_dy = np.tile(tile_sizes(n, cols) * tokens, (samples, 1)).astype(float)
        pairs = work = None
    masked = {} if work is None else dict(
        {key: np.asarray(work[key], dtype=float) for key in ("fwd", "dx", "dw")},
        worked=np.ones(samples, dtype=bool))
    counts = MatmulCounts(nnz_x, nnz_dy, np.full(samples, float(tokens)),
                          None if pairs is None else np.asarray(pairs, dtype=float), **masked)
    c = MATMUL.components(kernel, counts, Mapping(rows, cols), target)
    out = {key: np.broadcast_to(getattr(c, key), (samples, 1, rows, cols))[:, 0] for key in PER_CORE}
    out["macs"] = float(c.macs.sum())
    return out


def components(case, **kw):
    c = dict(case)
    return mm(c.pop("nnz_x"), c.pop("nnz_dy"), c.pop("k"), c.pop("n"), tokens=c.pop("tokens"), **kw)


def tiles(case):
    return tile_sizes(case["k"], case["nnz_x"].shape[1]), tile_sizes(case["n"], case["nnz_dy"].shape[1])


def test_component_shapes_and_signs():
    r = rng(2)
    for _ in range(CASES):
        case = random_case(r)
        for harvest in (True, False):
            c = components(case, harvest=harvest)
            for key in PER_CORE:
                assert (c[key] >= 0).all()


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
        tk, tn = tiles(case)
        full = dict(case, nnz_x=np.tile(tk * case["tokens"], (samples, 1)),
                    nnz_dy=np.tile(tn * case["tokens"], (samples, 1)))
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
    tk = tiles(case)[0][None, :, None]
    expected = case["nnz_dy"][:, None, :] * np.ceil(tk / T.simd)    # an FMAC a dY value
    np.testing.assert_array_equal(none["bwd_compute"], np.broadcast_to(expected, none["bwd_compute"].shape))


def test_halving_density_halves_forward_compute():
    k, n, rows, cols = 4096, 4096, 4, 4
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    dense = mm(tk[None] * 1.0, tn[None] * 1.0, k, n)
    half = mm(tk[None] * 0.5, tn[None] * 1.0, k, n)
    ratio = half["fwd_compute"].sum() / dense["fwd_compute"].sum()
    assert ratio == pytest.approx(0.5, rel=0.01)
    assert half["macs"] < dense["macs"]


def test_forward_compute_is_macs_over_simd():
    tn = tile_sizes(48, 3)
    nnz = np.array([[10.0, 20.0]])
    c4 = mm(nnz, tn[None] * 1.0, 64, 48)
    c8 = mm(nnz, tn[None] * 1.0, 64, 48, wafer("classroom", simd=8))
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
    a = mm(tk[None] * 1.0, tn[None] * 1.0, 32, 32, harvest=False)
    b = mm(tk[None] * 1.0, tn[None] * 1.0, 32, 32, harvest=False, computes_dx=False)
    assert b["macs"] == pytest.approx(a["macs"] * 2 / 3)


def test_pairs_drive_dw():
    x, dy = np.array([[8.0, 8.0]]), np.array([[8.0, 8.0]])
    base = mm(x, dy, 32, 32)
    fewer = mm(x, dy, 32, 32, pairs=np.zeros((1, 2, 2)))
    assert (fewer["bwd_compute"] < base["bwd_compute"]).all()
    assert fewer["macs"] < base["macs"]


def test_dense_macs_match_the_loop_nest():
    """Summed over cores and samples, dense MACs are 3 * tokens * K * N per sample (fwd, dX, dW),
    with or without harvesting when every operand is dense."""
    r = rng(9)
    for _ in range(20):
        case = random_case(r)
        samples = case["nnz_x"].shape[0]
        expected = samples * 3 * case["tokens"] * case["k"] * case["n"]
        assert components(case, harvest=False)["macs"] == pytest.approx(expected)
        tk, tn = tiles(case)
        dense = dict(case, nnz_x=np.tile(tk * case["tokens"], (samples, 1)) * 1.0,
                     nnz_dy=np.tile(tn * case["tokens"], (samples, 1)) * 1.0)
        assert components(dense, harvest=True)["macs"] == pytest.approx(expected)
        assert MATMUL.dense_macs(matmul_kernel(k=case["k"], n=case["n"], tokens=case["tokens"])) * \
            samples == pytest.approx(expected)


def test_tile_nonzeros_counts_each_contiguous_tile():
    """Against a loop over the tiles of `tile_sizes`: whole tiles, a short last one, and
    empty trailing ones (more parts than a whole number of tiles needs), by the BLAS count and
    by the bit count of word-wide tiles; NaN and infinities count, -0 does not."""
    r = rng(21)
    cases = [(256, 32), (256, 11), (10, 4), (5, 4), (7, 7), (1, 1), (3, 1),
             (256, 16), (128, 2), (151, 10), (64, 9)]      # tiles of 8, 16, 32, 64 bits: counted
    for features, parts in cases:                         # as words, padded, an empty last tile
        values = r.standard_normal((3, 2, features)).astype(np.float32)
        values[r.random(values.shape) < 0.5] = 0
        values.flat[r.integers(0, values.size, 4)] = [np.nan, np.inf, -0.0, -np.inf]
        got = tile_nonzeros(np, values, parts)
        sizes, start, expected = tile_sizes(features, parts), 0, []
        for size in sizes:
            expected.append(np.count_nonzero(values[..., start:start + size], axis=-1))
            start += size
        np.testing.assert_array_equal(got, np.stack(expected, axis=-1))


def test_assumed_counts_scale_with_density_and_ignore_it_without_harvest():
    kernel, m = matmul_kernel(k=40, n=24, tokens=3), Mapping(4, 3)
    tk = tile_sizes(40, 4)
    half = assumed(kernel, m, (0.5, 0.25), True).values
    np.testing.assert_allclose(half.x[0], 0.5 * tk * 3)
    np.testing.assert_allclose(half.dy[0], 0.25 * tile_sizes(24, 3) * 3)
    off = assumed(kernel, m, (0.5, 0.25), False).values
    np.testing.assert_allclose(off.x[0], tk * 3)


# ---------------------------------------------------------------- masked (compressed) weights

def test_masked_work_sets_compute_and_macs():
    r = rng(11)
    for _ in range(CASES):
        case = random_case(r)
        samples, rows, cols = case["nnz_x"].shape[0], case["nnz_x"].shape[1], case["nnz_dy"].shape[1]
        tk, tn = tiles(case)
        full_tile = tk[None, :, None] * tn[None, None, :] * case["tokens"]
        work = {key: np.floor(r.random((samples, rows, cols)) * (full_tile + 1)) for key in ("fwd", "dx", "dw")}
        for computes_dx in (True, False):
            c = components(case, work=work, computes_dx=computes_dx)
            plain = components(case, computes_dx=computes_dx)
            # each streamed value one FMAC over the tile, rounded as the dense tile's: MACs / tile
            # values, ceil(tile / simd) cycles each; dW per dY value over the x it meets
            def per_value(macs_, tile):          # MACs over the tile (none on an empty tile)
                tile = np.broadcast_to(tile, macs_.shape)
                values = np.divide(macs_, tile, out=np.zeros_like(macs_), where=tile > 0)
                return values * np.ceil(tile / T.simd)
            tk3, tn3 = tk[None, :, None] * 1.0, tn[None, None, :] * 1.0
            np.testing.assert_allclose(c["fwd_compute"], np.ceil(per_value(work["fwd"], tn3)))
            dy = np.broadcast_to(case["nnz_dy"][:, None, :], work["dw"].shape)
            per_dy = np.round(np.divide(work["dw"], dy, out=np.zeros_like(dy), where=dy > 0), 6)
            bwd = dy * np.ceil(per_dy / T.simd) + (per_value(work["dx"], tk3) if computes_dx else 0)
            np.testing.assert_allclose(c["bwd_compute"], np.ceil(bwd))
            # the streams are still sent: links follow nnz(x) and nnz(dY) as without a mask
            np.testing.assert_array_equal(c["fwd_link"], plain["fwd_link"])
            np.testing.assert_array_equal(c["bwd_link"], plain["bwd_link"])
            want = work["fwd"].sum() + work["dw"].sum() + (work["dx"].sum() if computes_dx else 0)
            assert c["macs"] == pytest.approx(want)


def test_work_is_ignored_with_harvest_off():
    case = random_case(rng(12))
    samples, rows, cols = case["nnz_x"].shape[0], case["nnz_x"].shape[1], case["nnz_dy"].shape[1]
    work = {key: np.zeros((samples, rows, cols)) for key in ("fwd", "dx", "dw")}
    dense, with_work = components(case, harvest=False), components(case, harvest=False, work=work)
    for key in PER_CORE:
        np.testing.assert_array_equal(dense[key], with_work[key])
    assert dense["macs"] == with_work["macs"]


# ---------------------------------------------------------------- weights and memory per core

def test_weights_per_core():
    k = matmul_kernel(k=100, n=60, bias=True)
    m = Mapping(3, 7)
    w = MATMUL.weights_per_core(k, m)
    assert w >= math.ceil(100 * 60 / 21)
    assert w * m.rows * m.cols >= k.param_numel
    assert MATMUL.weights_per_core(matmul_kernel(k=100, n=60, bias=False), m) == \
        math.ceil(100 / 3) * math.ceil(60 / 7)


def memory(kernel, mapping, opt, flight, **kw):
    return MATMUL.memory_per_core(kernel, mapping, T if "target" not in kw else kw.pop("target"),
                                  opt, flight, **kw)


def test_memory_falls_as_the_mapping_grows():
    k = matmul_kernel(k=512, n=512)
    for opt in (SGD, ADAM):
        mems = [memory(k, Mapping(s, s), opt, 3) for s in (1, 2, 4, 8, 16, 32)]
        assert all(a > b for a, b in zip(mems, mems[1:])), mems
        rows = [memory(k, Mapping(r, 4), opt, 3) for r in (1, 2, 4, 8)]
        assert all(a > b for a, b in zip(rows, rows[1:])), rows


def test_memory_grows_with_state_and_in_flight():
    k, m = matmul_kernel(k=128, n=128), Mapping(4, 4)
    assert memory(k, m, SGD, 1) < memory(k, m, SGD_M, 1) < memory(k, m, ADAM, 1)
    assert memory(k, m, SGD, 1) < memory(k, m, SGD, 5)


def test_memory_holds_at_least_the_weights():
    k, m = matmul_kernel(k=64, n=32), Mapping(2, 2)
    assert memory(k, m, SGD, 1) >= MATMUL.weights_per_core(k, m) * T.weight_bytes


def test_memory_uses_target_byte_sizes():
    k, m = matmul_kernel(k=64, n=64), Mapping(2, 2)
    base = memory(k, m, SGD, 1)
    assert memory(k, m, SGD, 1, target=wafer("classroom", weight_bytes=8)) > base
    assert memory(k, m, SGD, 1, target=wafer("classroom", activation_bytes=4)) > base


def test_activation_memory_is_linear_in_tokens():
    m, flight = Mapping(2, 2), 3

    def activations(tokens):
        k = matmul_kernel(k=64, n=64, tokens=tokens)
        resident = MATMUL.weights_per_core(k, m) * (T.weight_bytes + 4 * (1 + SGD.state_slots))
        return memory(k, m, SGD, flight) - resident

    one = activations(1)
    for tokens in (2, 4, 8):
        assert activations(tokens) == tokens * one


def test_compressed_memory_counts_values_and_indices():
    k, m = matmul_kernel(k=128, n=96, bias=True), Mapping(4, 4)
    assert index_bytes(T) * 8 == T.link_bits - T.value_bits
    tk, tn = math.ceil(128 / 4), math.ceil(96 / 4)
    for opt in (SGD, SGD_M, ADAM):
        per_weight = T.weight_bytes + 4 * (1 + opt.state_slots) + 2 * index_bytes(T)
        a = memory(k, m, opt, 2, kept=100)
        b = memory(k, m, opt, 2, kept=300)
        assert b - a == 200 * per_weight
        assert compressed_weight_bytes(0, tk, tn, T, opt) == (tk + tn) * index_bytes(T)
        dense = memory(k, m, opt, 2)
        assert memory(k, m, opt, 2, kept=tk * tn // 10) < dense
        assert memory(k, m, opt, 2, kept=tk * tn) > dense   # index overhead
        # the weight tile is what changes: the bias and the stashed activations are as before
        assert dense - memory(k, m, opt, 2, kept=0) == \
            tk * tn * (T.weight_bytes + 4 * (1 + opt.state_slots)) - (tk + tn) * index_bytes(T)


# ---------------------------------------------------------------- the tabulated evaluation

def test_the_table_gives_every_core_the_cycles_of_the_full_evaluation():
    """One token, no mask: each core's cycles, each sample's busiest core and its sum over the
    cores are the full per-core evaluation's, looked up in the table of every count."""
    from compiler import cost
    from compiler.evaluate import KernelCycles
    from compiler.kernels import Counts
    r = rng(13)
    for _ in range(25):
        k, n = int(r.integers(1, 200)), int(r.integers(1, 200))
        rows, cols = int(r.integers(1, min(k, 12) + 1)), int(r.integers(1, min(n, 12) + 1))
        samples = int(r.integers(1, 6))
        kernel = matmul_kernel("fc", k, n, samples, dx=bool(r.integers(0, 2)))
        tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
        x = np.floor(r.random((samples, rows)) * (tk + 1)).astype(np.float32)
        dy = np.floor(r.random((samples, cols)) * (tn + 1)).astype(np.float32)
        counts = MatmulCounts(x, dy, np.ones(samples, dtype=np.float32))
        mapping = Mapping(rows, cols)
        table = MATMUL.tabulate(kernel, counts, mapping, T)
        assert table is not None
        c = MATMUL.components(kernel, counts, mapping, T)
        full = cost.per_core_cycles(c, (samples, 1, rows, cols))
        np.testing.assert_array_equal(table.cores(), full)
        np.testing.assert_array_equal(table.busiest(), cost.busiest_core(full))
        np.testing.assert_allclose(table.sums(), full.reshape(samples, -1).sum(axis=1))
        evaluated = KernelCycles(kernel, Counts(counts, np.arange(samples)[None]), mapping, T)
        # a sample's time: its share of the run (cost.run_cycles), never more in all than the
        # sum of each sample's busiest core
        run = cost.run_cycles(c, (samples, 1, rows, cols), np.arange(samples)[None])[0]
        np.testing.assert_allclose(evaluated.sample[0], run)
        assert run.sum() <= cost.busiest_core(full).sum() + 1e-9
        np.testing.assert_allclose(evaluated.macs[0], c.macs.sum())


def test_counted_pairs_or_a_mask_are_not_tabulated():
    kernel, m = matmul_kernel(k=16, n=8, samples=2, tokens=3), Mapping(2, 2)
    x, dy = np.ones((2, 2), np.float32), np.ones((2, 2), np.float32)
    assert MATMUL.tabulate(kernel, MatmulCounts(x, dy, np.full(2, 3.0, np.float32),
                                                np.ones((2, 2, 2), np.float32)), m, T) is None
    worked = MatmulCounts(x, dy, np.ones(2, np.float32), None, *(np.zeros((2, 2, 2)),) * 3,
                          np.ones(2, dtype=bool))
    assert MATMUL.tabulate(kernel, worked, m, T) is None


def test_the_table_counter_counts_what_measured_counts_counts():
    """A matmul with one token per sample counts each sample's x and dY tiles straight from
    the tensors: the harvested samples of `measured_counts`, its dense sample every value,
    and the `Counts` it rebuilds tabulate to the same table."""
    from compiler.kernels.matmul.counts import counter as make_counter
    from compiler.kernels.matmul.terms import grid_of
    from simulator.measure import Runs, variants
    r = np.random.default_rng(12)
    kernel = matmul_kernel("fc", 37, 23, 5, dx=True)
    mapping = Mapping(4, 3)
    x = np.maximum(r.standard_normal((5, 37)), 0).astype(np.float32)
    dy = (r.standard_normal((5, 23)) * (r.random((5, 23)) < 0.5)).astype(np.float32)
    env = {kernel.calls[0]["x"]: x, kernel.calls[0]["dy"]: dy}
    counted = make_counter(kernel, mapping, grid_of(kernel, mapping, T))
    found = MATMUL.measured_counts(kernel, mapping, env, Runs(np, variants(True, False), None, {}))
    nx, ndy = counted.count(np, env)
    np.testing.assert_array_equal(nx, found.values.x[:5])
    np.testing.assert_array_equal(ndy, found.values.dy[:5])
    np.testing.assert_array_equal(counted.dense[0], found.values.x[5])
    np.testing.assert_array_equal(counted.dense[1], found.values.dy[5])
    rebuilt = counted.counts(found.values.x, found.values.dy, found.rows)
    assert MATMUL.tabulate(kernel, rebuilt.values, mapping, T).grid is counted.grid
    assert make_counter(matmul_kernel("seq", 8, 8, 2, tokens=3), mapping, None) is None


def test_sample_cycles_grid_is_sample_cycles_of_every_mapping():
    """The search's whole-grid shortcut equals `estimate.sample_cycles` mapping by mapping,
    bit for bit: chains of one core and longer, short and empty last tiles, one token and
    several, with and without a dX pass, FP16 and FP32, any density, harvesting or not."""
    from compiler import estimate
    from compiler.options import unroll_counts
    rng = np.random.default_rng(3)
    for trial in range(24):
        k, n = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        kernel = matmul_kernel("fc", k, n, 4, int(rng.integers(1, 5)), dx=bool(trial % 2))
        target = wafer(("classroom", "wse2")[trial % 2], precision=("fp16", "fp32")[trial % 3 > 1])
        rows, cols = unroll_counts(k, target.rows)[:12], unroll_counts(n, target.cols)[-12:]
        density = (1.0, 0.37, (0.3, 0.8))[trial % 3]
        harvest = bool(rng.integers(2))
        got = MATMUL.sample_cycles_grid(kernel, rows, cols, target, density, harvest)
        want = [[estimate.sample_cycles(kernel, Mapping(r, c), target, density, harvest)
                 for c in cols] for r in rows]
        np.testing.assert_array_equal(got, want)
