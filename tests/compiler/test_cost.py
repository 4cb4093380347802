"""compiler.cost: the kind-agnostic evaluation (components -> per-core cycles), tiles, links,
the update with its all-reduce, resident and compressed bytes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler import cost
from compiler.cost import Components, tile_sizes, update_cycles, update_flops
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer

T = wafer("classroom")
SGD = OptimizerSpec("sgd", lr=0.1)
SGD_M = OptimizerSpec("sgd", lr=0.1, momentum=0.9)
ADAM = OptimizerSpec("adam", lr=1e-3)
ADAMW = OptimizerSpec("adamw", lr=1e-3, weight_decay=0.01)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- tile_sizes and wavelets


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


def test_wavelets_pick_the_cheaper_packing():
    dense = 3 * cost.dense_wavelets(10, T)
    assert dense == 3 * math.ceil(10 / T.dense_values_per_wavelet)
    assert cost.wavelets(30, dense) == dense                      # every value: packed densely
    assert cost.wavelets(4, dense) == 4                           # few non-zeros: one each
    assert cost.wavelets(0, dense) == 0


# ---------------------------------------------------------------- the evaluation


def _components(r, shape):
    terms = [r.integers(0, 50, size=shape).astype(float) for _ in range(6)]
    return Components(*terms, macs=np.zeros(shape[0]))


def test_per_core_cycles_are_the_slower_of_compute_and_link_each_pass_summed_over_calls():
    r = rng(2)
    for calls in (1, 3):
        shape = (5, calls, 3, 4)
        c = _components(r, shape)
        core = cost.per_core_cycles(c, shape)
        fwd = np.maximum(np.maximum(c.fwd_compute, c.fwd_in), c.fwd_out)
        bwd = np.maximum(np.maximum(c.bwd_compute, c.bwd_in), c.bwd_out)
        want = (fwd + bwd).sum(axis=1)
        np.testing.assert_array_equal(core, want)
        np.testing.assert_array_equal(cost.busiest_core(core), want.max(axis=(1, 2)))


def test_per_core_cycles_broadcast_per_sample_terms_over_the_cores():
    small = np.full((2, 1, 1, 1), 1.0)
    c = Components(np.full((2, 1, 1, 1), 5.0), small, small,
                   np.full((2, 1, 1, 1), 2.0), np.full((2, 1, 1, 1), 7.0), small, np.zeros(2))
    core = cost.per_core_cycles(c, (2, 1, 3, 4))
    assert core.shape == (2, 3, 4) and (core == 12).all()


def test_split_bounds_the_per_core_cycles():
    r = rng(3)
    shape = (4, 2, 3, 3)
    c = _components(r, shape)
    compute, link = cost.split(c, shape)
    core = cost.per_core_cycles(c, shape).max(axis=(1, 2))
    assert (np.maximum(compute, link) <= core + 1e-9).all()
    assert (core <= compute + link + 1e-9).all()


def test_replica_busy_puts_sample_s_on_replica_s_mod_r():
    core = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    busy = cost.replica_busy(core, np.arange(5), Mapping(2, 3, 2), 10.0)
    np.testing.assert_array_equal(busy[:, :3], core[0::2].sum(axis=0) + 10)
    np.testing.assert_array_equal(busy[:, 3:], core[1::2].sum(axis=0) + 10)


# ---------------------------------------------------------------- the update


def test_update_flops_by_optimizer():
    assert update_flops(SGD) < update_flops(SGD_M) < update_flops(ADAM) <= update_flops(ADAMW)


def test_update_cycles_grow_with_state_and_fall_with_cores():
    sgd, sgdm, adam = (update_cycles(1024, Mapping(4, 4), T, o) for o in (SGD, SGD_M, ADAM))
    assert 0 < sgd < sgdm < adam
    assert update_cycles(256, Mapping(8, 8), T, ADAM) < update_cycles(4096, Mapping(2, 2), T, ADAM)


def test_replicas_add_an_allreduce():
    one, two, four = (update_cycles(1024, Mapping(4, 4, r), T, SGD) for r in (1, 2, 4))
    assert one < two < four
    assert update_cycles(0, Mapping(2, 2, 3), T, ADAM) == 0.0     # nothing held: nothing to do


@pytest.mark.parametrize("replicas", [1, 3])
def test_per_core_update_of_full_tiles_equals_the_uniform_update(replicas):
    m = Mapping(4, 8, replicas)
    for opt in (SGD, SGD_M, ADAM):
        full = np.full((4, 8), 192)
        per_core = update_cycles(full, m, T, opt)
        assert per_core.shape == (4, 8)
        assert (per_core == update_cycles(192, m, T, opt)).all()
        assert (update_cycles(full // 4, m, T, opt) < per_core).all()


def test_empty_cores_do_no_update_and_no_allreduce():
    weights = np.full((4, 8), 10)
    weights[1] = 0
    cycles = update_cycles(weights, Mapping(4, 8, 2), T, ADAM)
    assert (cycles[1] == 0).all() and (cycles[0] > 0).all()


def test_resident_bytes_count_weight_gradient_and_state():
    for opt in (SGD, SGD_M, ADAM):
        assert cost.resident_bytes(10, T, opt) == 10 * (T.weight_bytes + 4 * (1 + opt.state_slots))


def _run(work, out):
    """Components of a forward pass only: FMAC `work` and sums `out` (distinct, rows, cols)."""
    work, out = (np.asarray(a, dtype=float)[:, None] for a in (work, out))
    return Components(work, 0.0, out, 0.0, 0.0, 0.0, np.zeros(len(work))), (len(work), 1) + work.shape[2:]


def test_a_run_takes_its_busiest_cores_sum_not_the_sum_of_each_samples_busiest():
    """Two cores, two samples: each core is the busier one for one sample. Decoupled cores
    take the run in the busier core's sum (core 1: 4 + 3 = 7 against core 0's 5 + 1), not
    the sum of each sample's busiest (5 + 3 = 8)."""
    c, shape = _run([[[5.0, 4.0]], [[1.0, 3.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]])
    got = cost.run_cycles(c, shape, np.array([[0, 1], [1, 1]]))
    np.testing.assert_array_equal(got[0], [4.0, 3.0])         # core 1: 4 + 3 = 7 > 5 + 1
    np.testing.assert_array_equal(got[1], [3.0, 3.0])         # variant 1: samples 1, 1
    one = np.array([[0, 0, 0]])                               # one distinct sample: its busiest
    np.testing.assert_array_equal(cost.run_cycles(c, shape, one)[0], [5.0] * 3)


def test_a_cores_work_overlaps_the_last_samples_sends_over_a_run():
    """One core: sample 0 works 4 cycles and sends 8 sums, sample 1 works 16 and sends 8.
    Per sample max(work, link) charges 8 + 16; the PE works on sample 1 while the router sends
    sample 0's sums, so the run takes max(4 + 16, 8 + 8) = 20, shared as 8 : 16."""
    c, shape = _run([[[4.0]], [[16.0]]], [[[8.0]], [[8.0]]])
    got = cost.run_cycles(c, shape, np.array([[0, 1]]))[0]
    assert got.sum() == 20.0 < cost.busiest_core(cost.per_core_cycles(c, shape)).sum() == 24.0
    np.testing.assert_allclose(got, [20 * 8 / 24, 20 * 16 / 24])
