"""compiler.attention: the attention kernel's cost follows from its dataflow (mechanisms, not figures)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler import attention
from compiler.cost import Mapping
from compiler.kernels import attention_kernel
from compiler.optim_spec import from_hyperparameters
from compiler.options import kernel_options
from compiler.target import wafer

TARGET = wafer("classroom")
SGD = from_hyperparameters("sgd", {"lr": 0.1})
ADAM = from_hyperparameters("adam", {"lr": 1e-3})


def _kernel(samples=4, heads=2, length=16, head_dim=8):
    return attention_kernel("sdpa", samples, heads, length, head_dim)


def _one_core(kernel, lengths):
    c = attention.components(kernel, lengths, Mapping(1, 1), TARGET)
    return {k: v[:, 0, 0] if isinstance(v, np.ndarray) else v for k, v in c.items()}


def test_macs_are_two_l_squared_d_per_head_forward_and_twice_that_backward():
    heads, head_dim = 2, 8
    kernel = _kernel(heads=heads, head_dim=head_dim)
    lengths = np.array([16, 5, 9, 1])
    c = attention.components(kernel, lengths, Mapping(2, 3), TARGET)
    per_sample = (2 + 4) * lengths ** 2 * head_dim * heads
    assert c["macs"] == per_sample.sum()
    assert kernel.dense_macs_per_sample == per_sample[0]            # 16 tokens: the padded length


def test_backward_compute_is_about_twice_forward():
    """With a wide head the MACs dominate the per-score softmax work: backward ~ 2x forward."""
    c = _one_core(_kernel(heads=1, head_dim=64, length=32), [32])
    ratio = c["bwd_compute"][0] / c["fwd_compute"][0]
    assert 1.9 < ratio < 2.0


@pytest.mark.parametrize("head_dim", [1, 16])
def test_compute_grows_with_the_square_of_the_length(head_dim):
    kernel = _kernel(length=64, head_dim=head_dim)
    c = _one_core(kernel, [8, 16, 32, 64])
    for key in ("fwd_compute", "bwd_compute"):
        growth = c[key][1:] / c[key][:-1]
        np.testing.assert_allclose(growth, 4.0, rtol=0.02)


def test_softmax_work_counts_per_score_and_head():
    """A one-wide head leaves mostly the softmax: its work is per score, so per head and ~L^2."""
    one, two = (_one_core(_kernel(heads=h, head_dim=1, length=32), [32]) for h in (1, 2))
    assert two["fwd_compute"][0] == pytest.approx(2 * one["fwd_compute"][0], rel=0.01)
    assert one["fwd_compute"][0] > 32 * 32 * attention.FORWARD_SCORE_FLOPS / TARGET.simd


def test_padding_costs_nothing():
    """The cost of a sample depends on its real tokens only, not on how far it was padded."""
    lengths = np.array([7, 3, 12, 1])
    short, long = _kernel(length=12), _kernel(length=48)
    for mapping in (Mapping(1, 1), Mapping(3, 4)):
        a = attention.components(short, lengths, mapping, TARGET)
        b = attention.components(long, lengths, mapping, TARGET)
        for key in ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link", "macs"):
            np.testing.assert_array_equal(a[key], b[key])


def test_rows_split_the_queries_and_columns_split_the_keys():
    kernel = _kernel(length=32, head_dim=16)
    one = attention.per_core_cycles(attention.components(kernel, [32], Mapping(1, 1), TARGET)).max()
    for rows, cols in [(2, 1), (1, 2), (4, 4), (8, 2)]:
        c = attention.components(kernel, [32], Mapping(rows, cols), TARGET)
        compute = (c["fwd_compute"] + c["bwd_compute"]).max()
        full = _one_core(kernel, [32])
        assert compute == pytest.approx((full["fwd_compute"][0] + full["bwd_compute"][0])
                                        / (rows * cols), rel=0.01)
        assert attention.per_core_cycles(c).max() < one
    # K and V are multicast down each column: more rows do not shrink that stream
    c1, c8 = (attention.components(kernel, [32], Mapping(r, 2), TARGET) for r in (1, 8))
    kv = math.ceil(2 * 16 * kernel.nest.extent("h") * kernel.nest.extent("d") / TARGET.dense_values_per_wavelet)
    assert c1["fwd_link"].max() >= kv and c8["fwd_link"].max() == kv


def test_block_sizes_cover_each_sample():
    blocks = attention.block_sizes([10, 3, 0, 8], 4)
    np.testing.assert_array_equal(blocks.sum(axis=1), [10, 3, 0, 8])
    np.testing.assert_array_equal(blocks.max(axis=1), [3, 1, 0, 2])


def test_estimate_is_a_full_length_sample():
    kernel = _kernel()
    for mapping in (Mapping(1, 1), Mapping(4, 2)):
        c = attention.components(kernel, [16], mapping, TARGET)
        assert attention.estimate_sample_cycles(kernel, mapping, TARGET) == \
            attention.per_core_cycles(c).max() + TARGET.kernel_overhead_cycles
        sample, compute, link = attention.split_cycles(kernel, mapping, TARGET)
        assert max(compute, link) <= sample - TARGET.kernel_overhead_cycles <= compute + link


def test_memory_holds_blocks_and_the_stash_no_weights():
    kernel = _kernel(length=32)
    small, large = (attention.memory_per_core(kernel, m, TARGET, SGD, 3)
                    for m in (Mapping(1, 1), Mapping(4, 4)))
    assert large < small
    more_in_flight = attention.memory_per_core(kernel, Mapping(4, 4), TARGET, SGD, 7)
    assert more_in_flight > large
    assert attention.memory_per_core(kernel, Mapping(4, 4), TARGET, ADAM, 3) == large   # no state


def test_options_unroll_queries_and_keys():
    """The option generator treats the kernel through its nest: rows over i, cols over j (up to
    L x L cores), every option within SRAM, the fastest at least as fast as one core."""
    kernel = _kernel(samples=8, length=16)
    options = kernel_options(kernel, TARGET, SGD, in_flight=3, replicas=(1, 2))
    assert options
    assert all(o.mapping.rows <= 16 and o.mapping.cols <= 16 for o in options)
    assert any(o.mapping.rows * o.mapping.cols > 16 for o in options)
    assert all(o.memory <= TARGET.sram_bytes for o in options)
    assert all(o.step_cycles == 0 for o in options)                   # nothing to update
    fastest = min(options, key=lambda o: o.stage_time(8))
    assert fastest.sample_cycles < attention.estimate_sample_cycles(kernel, Mapping(1, 1), TARGET)


def test_loop_nest_reads_as_attention():
    text = str(_kernel().nest)
    assert text == "for b, h, i, j, d: out[b,h,i,d] += softmax_j(q.k)[b,h,i,j] * v[b,h,j,d]"
