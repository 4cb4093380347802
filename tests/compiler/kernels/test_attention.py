"""compiler.kernels.attention: the attention kernel's cost follows from its dataflow, and its
counts (real tokens, running queries) come from the step's tensors (mechanisms, not figures)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import cost
from compiler.estimate import sample_cycles
from compiler.frontend import capture
from compiler.kernels import attention_kernel, build_kernels
from compiler.kernels.attention import (ATTENTION, FORWARD_SCORE_FLOPS, AttentionCounts,
                                        block_sizes, real_lengths)
from compiler.mapping import Mapping
from compiler.optim_spec import from_hyperparameters
from compiler.options import kernel_options
from compiler.passes import run_pipeline
from compiler.target import wafer
from simulator.backend import to_numpy
from simulator.executor import Executor
from simulator.measure import Runs, measure_kernel, variants

TARGET = wafer("classroom")
SGD = from_hyperparameters("sgd", {"lr": 0.1})
ADAM = from_hyperparameters("adam", {"lr": 1e-3})
PER_CORE = ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link", "fwd_in", "bwd_in")


def _kernel(samples=4, heads=2, length=16, head_dim=8):
    return attention_kernel("sdpa", samples, heads, length, head_dim)


def components(kernel, lengths, mapping):
    """One call's components for samples of `lengths` real tokens, (samples, rows, cols)."""
    lengths = np.asarray(lengths)[:, None]
    c = ATTENTION.components(kernel, AttentionCounts(lengths, lengths), mapping, TARGET)
    shape = (lengths.shape[0], 1, mapping.rows, mapping.cols)
    out = {key: np.broadcast_to(getattr(c, key), shape)[:, 0] for key in PER_CORE}
    for p in ("fwd", "bwd"):
        out[f"{p}_recv"] = np.broadcast_to(c.received(p), shape)[:, 0]
        out[f"{p}_reduce"] = np.broadcast_to(getattr(c, f"{p}_reduce"), shape)[:, 0]
    out["macs"] = float(c.macs.sum())
    return out


def per_core(c: dict) -> np.ndarray:
    """Each pass: the core's compute plus a task per wavelet received (FP16: the SRAM ports
    keep up) plus its merges of partials read off the fabric, or its busiest link."""
    work = lambda p: c[f"{p}_compute"] + TARGET.task_cycles * c[f"{p}_recv"] + c[f"{p}_reduce"]  # noqa: E731
    return np.maximum(work("fwd"), c["fwd_link"]) + np.maximum(work("bwd"), c["bwd_link"])


def _one_core(kernel, lengths):
    c = components(kernel, lengths, Mapping(1, 1))
    return {k: v[:, 0, 0] if isinstance(v, np.ndarray) else v for k, v in c.items()}


def test_macs_are_two_l_squared_d_per_head_forward_and_twice_that_backward():
    heads, head_dim = 2, 8
    kernel = _kernel(heads=heads, head_dim=head_dim)
    lengths = np.array([16, 5, 9, 1])
    c = components(kernel, lengths, Mapping(2, 3))
    per_sample = (2 + 4) * lengths ** 2 * head_dim * heads
    assert c["macs"] == per_sample.sum()
    assert ATTENTION.dense_macs(kernel) == per_sample[0]            # 16 tokens: the padded length


def test_backward_compute_is_about_twice_forward():
    """With a wide head the MACs dominate the per-score softmax work: backward ~ 2x forward."""
    c = _one_core(_kernel(heads=1, head_dim=64, length=32), [32])
    assert 1.9 < c["bwd_compute"][0] / c["fwd_compute"][0] < 2.0


@pytest.mark.parametrize("head_dim", [1, 16])
def test_compute_grows_with_the_square_of_the_length(head_dim):
    c = _one_core(_kernel(length=64, head_dim=head_dim), [8, 16, 32, 64])
    for key in ("fwd_compute", "bwd_compute"):
        np.testing.assert_allclose(c[key][1:] / c[key][:-1], 4.0, rtol=0.02)


def test_softmax_work_counts_per_score_and_head():
    """A one-wide head leaves mostly the softmax: its work is per score, so per head and ~L^2."""
    one, two = (_one_core(_kernel(heads=h, head_dim=1, length=32), [32]) for h in (1, 2))
    assert two["fwd_compute"][0] == pytest.approx(2 * one["fwd_compute"][0], rel=0.01)
    assert one["fwd_compute"][0] > 32 * 32 * FORWARD_SCORE_FLOPS / TARGET.simd


def test_padding_costs_nothing():
    """The cost of a sample depends on its real tokens only, not on how far it was padded."""
    lengths = np.array([7, 3, 12, 1])
    short, long = _kernel(length=12), _kernel(length=48)
    for mapping in (Mapping(1, 1), Mapping(3, 4)):
        a, b = components(short, lengths, mapping), components(long, lengths, mapping)
        for key in PER_CORE + ("macs",):
            np.testing.assert_array_equal(a[key], b[key])


def test_rows_split_the_queries_and_columns_split_the_keys():
    kernel = _kernel(length=32, head_dim=16)
    one = per_core(components(kernel, [32], Mapping(1, 1))).max()
    full = _one_core(kernel, [32])
    for rows, cols in [(2, 1), (1, 2), (4, 4), (8, 2)]:
        c = components(kernel, [32], Mapping(rows, cols))
        compute = (c["fwd_compute"] + c["bwd_compute"]).max()
        assert compute == pytest.approx((full["fwd_compute"][0] + full["bwd_compute"][0])
                                        / (rows * cols), rel=0.01)
        assert per_core(c).max() < one
    # K and V are multicast down each column: more rows do not shrink that stream (its tile
    # and the control wavelet that ends it)
    c1, c8 = (components(kernel, [32], Mapping(r, 2)) for r in (1, 8))
    kv = math.ceil(2 * 16 * kernel.nest.extent("h") * kernel.nest.extent("d") / TARGET.dense_values_per_wavelet)
    assert c1["fwd_link"].max() >= kv + 1 and c8["fwd_link"].max() == kv + 1


def test_block_sizes_cover_each_sample():
    blocks = block_sizes([10, 3, 0, 8], 4)
    np.testing.assert_array_equal(blocks.sum(axis=1), [10, 3, 0, 8])
    np.testing.assert_array_equal(blocks.max(axis=1), [3, 1, 0, 2])


def test_estimate_is_a_full_length_sample():
    kernel = _kernel()
    for mapping in (Mapping(1, 1), Mapping(4, 2)):
        c = components(kernel, [16], mapping)
        assert sample_cycles(kernel, mapping, TARGET) == per_core(c).max()


def test_memory_holds_blocks_and_the_stash_no_weights():
    kernel = _kernel(length=32)
    small, large = (ATTENTION.memory_per_core(kernel, m, TARGET, SGD, 3)
                    for m in (Mapping(1, 1), Mapping(4, 4)))
    assert large < small
    assert ATTENTION.memory_per_core(kernel, Mapping(4, 4), TARGET, SGD, 7) > large
    assert ATTENTION.memory_per_core(kernel, Mapping(4, 4), TARGET, ADAM, 3) == large   # no state


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
    assert fastest.sample_cycles < sample_cycles(kernel, Mapping(1, 1), TARGET)


def test_loop_nest_reads_as_attention():
    text = str(_kernel().nest)
    assert text == "for b, h, i, j, d: out[b,h,i,d] += softmax_j(q.k)[b,h,i,j] * v[b,h,j,d]"


# ---------------------------------------------------------------- measured from the tensors


def _probs(lengths, heads, padded, seed=0):
    """Softmax outputs [B, H, L, L] with each sample's keys past its length masked by -1e9,
    as wsebench's models mask padding."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((len(lengths), heads, padded, padded)).astype(np.float32) * 3
    pad = np.arange(padded)[None, :] >= np.asarray(lengths)[:, None]
    scores = np.where(pad[:, None, None, :], np.float32(-1e9), scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class _Queries:
    """A stand-in for `simulator.measure.StepPositions`: the queries each set of positions runs
    (the padded run: every position, `padded` per sample, when given)."""

    def __init__(self, queries, padded=None):
        self.runs = {run: [np.asarray(queries)] for run in ("actual", "fixed_depth")}
        self.runs["padded"] = [np.asarray(queries if padded is None else padded)]

    def queries(self, kernel):
        return self.runs


def measure(kernel, env, mapping=Mapping(1, 1), harvest=True, positions=None):
    runs = Runs(np, variants(harvest, positions is not None), positions, {})
    return measure_kernel(kernel, mapping, env, runs, TARGET, SGD, harvest)


def _measure(lengths, padded, heads=2, head_dim=16, mapping=Mapping(1, 1), harvest=True):
    kernel = attention_kernel("sdpa", len(lengths), heads, padded, head_dim)
    return measure(kernel, {"probs": _probs(lengths, heads, padded)}, mapping, harvest,
                   _Queries(lengths, [padded] * len(lengths)))


def test_real_lengths_come_from_the_zero_probabilities():
    lengths = [5, 1, 8, 3]
    kernel = attention_kernel("sdpa", 4, 2, 8, 4)
    np.testing.assert_array_equal(real_lengths(np, to_numpy, kernel, {"probs": _probs(lengths, 2, 8)},
                                               "probs"), lengths)


def test_cycles_grow_with_the_square_of_the_real_length():
    """Head dim 64 on one core: compute (L^2) outweighs the links and the streams' task
    activations (L), so the time ~ L^2 (from 32 tokens: at 16, Q, K and V's activations are
    4% of the time)."""
    t = _measure([32, 64, 128, 256], padded=256, head_dim=64)
    work = t.sample_cycles
    np.testing.assert_allclose(work[1:] / work[:-1], 4.0, rtol=0.03)


@pytest.mark.parametrize("mapping", [Mapping(1, 1), Mapping(3, 2), Mapping(2, 2, 2)])
def test_more_padding_does_not_change_the_measured_time(mapping):
    lengths = [9, 4, 12, 2]
    short, long = _measure(lengths, 12, mapping=mapping), _measure(lengths, 40, mapping=mapping)
    np.testing.assert_array_equal(short.sample_cycles, long.sample_cycles)
    np.testing.assert_array_equal(short.core_busy, long.core_busy)
    assert short.executed_macs == long.executed_macs
    # the padded baseline is what grows, and the real run never costs more than it
    padded_short, padded_long = short.variant_cycles("padded"), long.variant_cycles("padded")
    assert (padded_long > padded_short).all()
    assert (short.sample_cycles <= padded_short).all()
    assert (short.sample_cycles < padded_short).any()
    # attention harvests no zeros: its harvest-off baseline is the run itself
    np.testing.assert_array_equal(long.dense_sample_cycles, long.sample_cycles)
    assert long.dense_macs == long.executed_macs


def test_a_full_sample_costs_the_static_estimate():
    """Measurement and estimate share one model: a sample with no padding costs the estimate."""
    kernel = attention_kernel("sdpa", 2, 2, 16, 8)
    t = measure(kernel, {"probs": _probs([16, 16], 2, 16)}, Mapping(4, 2))
    assert t.sample_cycles[0] == sample_cycles(kernel, Mapping(4, 2), TARGET)
    np.testing.assert_array_equal(t.sample_cycles, t.dense_sample_cycles)


def test_harvest_does_not_change_attention():
    a, b = _measure([5, 7], 8, harvest=True), _measure([5, 7], 8, harvest=False)
    np.testing.assert_array_equal(a.sample_cycles, b.sample_cycles)


def test_replicas_split_the_samples():
    t = _measure([4, 8, 4, 8], 8, mapping=Mapping(2, 2, 2))
    left, right = t.core_busy[:, :2], t.core_busy[:, 2:]
    assert t.core_busy.shape == (2, 4)
    assert right.sum() > left.sum()                # replica 1 got the two 8-token samples
    assert t.useful_macs == t.executed_macs


@pytest.mark.parametrize("which", ["manual", "torch"])
def test_real_tokens_of_a_captured_transformer(which):
    """On a real training step the attention kernels find exactly the non-pad tokens."""
    model = wb.models.transformer(vocab=12, d_model=8, heads=2, layers=1, ffn=16, max_len=6,
                                  dropout=0.2, attention=which, seed=0)
    x = torch.tensor([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]])
    y = torch.tensor([0, 1, 1])
    graph = run_pipeline(capture(model, nn.CrossEntropyLoss(), (x, y), method="aot"))
    kernels, _ = build_kernels(graph)
    [sdpa] = [k for k in kernels if k.kind == "attention"]
    params = dict(model.named_parameters())
    rng = np.random.default_rng(0)
    env = {graph.inputs[0]: x.numpy(), graph.inputs[1]: y.numpy()}
    env.update({name: params[fqn].detach().numpy().copy() for name, fqn in graph.params})
    env.update({name: rng.random(graph.type_of[name].shape) >= p for name, p in graph.masks})
    env = Executor(graph, np).run(env)
    np.testing.assert_array_equal(real_lengths(np, to_numpy, sdpa, env, sdpa.stream["probs"]), [3, 6, 1])
    t = measure(sdpa, env, Mapping(2, 3))
    assert t.sample_cycles[2] < t.sample_cycles[0] < t.sample_cycles[1]


def test_halted_queries_cost_nothing_but_their_keys_are_read():
    lengths, padded = [8, 8, 8], 8
    kernel = attention_kernel("sdpa", 3, 2, padded, 16)
    env = {"probs": _probs(lengths, 2, padded)}
    every = measure(kernel, env)
    some = measure(kernel, env, positions=_Queries([8, 3, 0]))
    assert some.sample_cycles[0] == every.sample_cycles[0]
    assert some.sample_cycles[1] < every.sample_cycles[1]
    assert some.sample_cycles[2] == 0                          # nothing runs: nothing sent
    # 3 running queries still read all 8 keys: more than a 3-token sample
    short = _measure([8, 3, 3], padded)
    assert some.sample_cycles[1] > short.sample_cycles[1]
    assert some.executed_macs == pytest.approx(6 * 2 * 16 * (8 * 8 + 3 * 8))


def test_a_block_called_at_every_step_sums_its_calls():
    kernel = attention_kernel("sdpa", 2, 2, 8, 16, probs=("p0", "p1", "p2"))
    one = attention_kernel("sdpa", 2, 2, 8, 16)
    env = {"p0": _probs([8, 5], 2, 8), "p1": _probs([8, 5], 2, 8, seed=1),
           "p2": _probs([8, 5], 2, 8, seed=2), "probs": _probs([8, 5], 2, 8)}
    three, single = measure(kernel, env, Mapping(2, 2)), measure(one, env, Mapping(2, 2))
    np.testing.assert_allclose(three.sample_cycles, 3 * single.sample_cycles)
    assert three.executed_macs == 3 * single.executed_macs
    assert sample_cycles(kernel, Mapping(2, 2), TARGET) == 3 * sample_cycles(one, Mapping(2, 2), TARGET)
    assert ATTENTION.dense_macs(kernel) == 3 * ATTENTION.dense_macs(one)


def test_split_separates_compute_and_links():
    kernel, mapping = _kernel(), Mapping(4, 2)
    c = ATTENTION.components(kernel, ATTENTION.assumed_counts(kernel, mapping, TARGET, 1.0, True).values,
                             mapping, TARGET)
    compute, link = cost.split(c, (1, 1, 4, 2))
    sample = sample_cycles(kernel, mapping, TARGET)
    assert max(compute[0], link[0]) <= sample <= compute[0] + link[0]


def _causal_probs(samples, heads, length, seed=0):
    """Softmax outputs [B, H, L, L] under a causal mask (-inf above the diagonal)."""
    scores = np.random.default_rng(seed).standard_normal((samples, heads, length, length))
    scores = np.where(np.triu(np.ones((length, length), bool), 1), -np.inf, scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def test_a_core_computes_only_the_pairs_the_mask_lets_through():
    from compiler.kernels.attention import computed_pairs
    kernel = attention_kernel("sdpa", 2, 2, 8, 4)
    pairs = computed_pairs(np, to_numpy, kernel, {"probs": _causal_probs(2, 2, 8)}, "probs", 2, 2)
    # blocks of 4 queries x 4 keys: the diagonal's lower triangles, everything below, nothing above
    np.testing.assert_array_equal(pairs, [[[10, 0], [16, 10]]] * 2)
    full = computed_pairs(np, to_numpy, kernel, {"probs": _probs([8, 5], 2, 8)}, "probs", 2, 2)
    np.testing.assert_array_equal(full, [[[16, 16], [16, 16]], [[9, 6], [6, 4]]])


@pytest.mark.parametrize("length", [8, 16])
def test_causal_attention_charges_only_the_computed_half(length):
    """The MACs fall to the lower triangle's (L + 1) / 2L; one core computing every pair
    takes longer, and on a 2 x 2 grid the busiest core still does a whole block."""
    kernel = attention_kernel("sdpa", 2, 2, length, 16)
    causal = {"probs": _causal_probs(2, 2, length)}
    full = {"probs": _probs([length, length], 2, length)}
    one, one_full = measure(kernel, causal), measure(kernel, full)
    assert one.executed_macs / one_full.executed_macs == pytest.approx((length + 1) / (2 * length))
    assert (one.sample_cycles < one_full.sample_cycles).all()
    grid, grid_full = measure(kernel, causal, Mapping(2, 2)), measure(kernel, full, Mapping(2, 2))
    np.testing.assert_array_equal(grid.sample_cycles, grid_full.sample_cycles)
    assert grid.core_busy.sum() < grid_full.core_busy.sum()


def test_pad_queries_do_not_count_as_computed_pairs():
    """Causal over 5 real tokens then 2 pads: the pads' query rows read the real keys, but the
    host never sends a pad, so only the real tokens' lower triangle (15 pairs) is computed."""
    from compiler.kernels.attention import computed_pairs
    probs = _causal_probs(1, 2, 7)
    probs[..., 5:] = 0                                   # pad keys: probability 0 for every query
    probs[..., :5] /= probs[..., :5].sum(-1, keepdims=True)
    kernel = attention_kernel("sdpa", 1, 2, 7, 4)
    assert computed_pairs(np, to_numpy, kernel, {"probs": probs}, "probs", 1, 1).sum() == 15


def test_a_stash_that_does_not_fit_is_spread_and_multicast_again_in_the_backward():
    """BERT-base's attention (12 heads of 64, 128 tokens, batch 8) on 64 x 32 cores: the stash
    kept where it arrived (every core of a row holding its Q block, of a column its K and V
    blocks) needs more than a core's SRAM with the batch in flight; spread over the row and the
    column it fits, and the backward receives Q, K and V again. A kernel that fits keeps its
    stash, and its backward receives dO only."""
    from compiler.kernels.attention import spreads_stash, stash_values
    wse2 = wafer("wse2")
    bert = attention_kernel("sdpa", 8, 12, 128, 64)
    mapping = Mapping(64, 32)
    assert spreads_stash(bert, mapping, wse2)
    assert stash_values(bert, mapping, True) < stash_values(bert, mapping, False) / 10
    assert ATTENTION.memory_per_core(bert, mapping, wse2, SGD, 8) <= wse2.sram_bytes
    full = np.full((1, 1), 128)
    c = ATTENTION.components(bert, AttentionCounts(full, full), mapping, wse2)
    q, k, width = 2, 4, 12 * 64                       # each core's query and key blocks
    values = wse2.dense_values_per_wavelet
    assert np.max(c.bwd_in) == max(2 * q * width, 2 * k * width) / values
    assert np.max(c.received("bwd")) == (2 * q * width + 2 * k * width) / values
    small = _kernel()
    assert not spreads_stash(small, Mapping(2, 2), TARGET)
    lengths = np.full((1, 1), 16)
    kept = ATTENTION.components(small, AttentionCounts(lengths, lengths), Mapping(2, 2), TARGET)
    assert np.max(kept.bwd_in) == 8 * 2 * 8 / TARGET.dense_values_per_wavelet   # dO: 8 x 16


def test_a_stash_is_spread_only_where_that_makes_it_fit():
    """One core holds every block either way: nothing to spread, and a kernel too big for
    either is left for the memory check to refuse."""
    from compiler.kernels.attention import spreads_stash
    wse2 = wafer("wse2")
    bert = attention_kernel("sdpa", 8, 12, 128, 64)
    assert not spreads_stash(bert, Mapping(1, 1), wse2)
    assert ATTENTION.memory_per_core(bert, Mapping(1, 1), wse2, SGD, 8) > wse2.sram_bytes
