"""simulator.attention_timing: attention's measured time counts real tokens only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import attention
from compiler.cost import Mapping
from compiler.frontend import capture
from compiler.kernels import attention_kernel, build_kernels
from compiler.passes import run_pipeline
from compiler.target import wafer
from simulator.attention_timing import measure_attention, real_lengths
from simulator.executor import Executor

TARGET = wafer("classroom")


def _probs(lengths, heads, padded, seed=0):
    """Softmax outputs [B, H, L, L] with each sample's keys past its length masked by -1e9,
    as wsebench's models mask padding."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((len(lengths), heads, padded, padded)).astype(np.float32) * 3
    pad = np.arange(padded)[None, :] >= np.asarray(lengths)[:, None]
    scores = np.where(pad[:, None, None, :], np.float32(-1e9), scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _measure(lengths, padded, heads=2, head_dim=16, mapping=Mapping(1, 1), harvest=True):
    kernel = attention_kernel("sdpa", len(lengths), heads, padded, head_dim)
    env = {"probs": _probs(lengths, heads, padded)}
    return measure_attention(np, kernel, mapping, env, TARGET, harvest)


def test_real_lengths_come_from_the_zero_probabilities():
    lengths = [5, 1, 8, 3]
    kernel = attention_kernel("sdpa", 4, 2, 8, 4)
    np.testing.assert_array_equal(real_lengths(np, kernel, {"probs": _probs(lengths, 2, 8)}), lengths)


def test_cycles_grow_with_the_square_of_the_real_length():
    """Head dim 64 on one core: compute (L^2) outweighs the links (L), so the time ~ L^2."""
    t = _measure([16, 32, 64, 128], padded=128, head_dim=64)
    work = t.sample_cycles - TARGET.kernel_overhead_cycles
    np.testing.assert_allclose(work[1:] / work[:-1], 4.0, rtol=0.03)


@pytest.mark.parametrize("mapping", [Mapping(1, 1), Mapping(3, 2), Mapping(2, 2, 2)])
def test_more_padding_does_not_change_the_measured_time(mapping):
    lengths = [9, 4, 12, 2]
    short, long = _measure(lengths, 12, mapping=mapping), _measure(lengths, 40, mapping=mapping)
    np.testing.assert_array_equal(short.sample_cycles, long.sample_cycles)
    np.testing.assert_array_equal(short.core_busy, long.core_busy)
    assert short.macs == long.macs
    # the padded baseline is what grows, and the real run never costs more than it
    assert (long.padded_sample_cycles > short.padded_sample_cycles).all()
    assert (short.sample_cycles <= short.padded_sample_cycles).all()
    assert (short.sample_cycles < short.padded_sample_cycles).any()
    # attention harvests no zeros: its harvest-off baseline is the run itself
    np.testing.assert_array_equal(long.dense_sample_cycles, long.sample_cycles)
    assert long.dense_macs == long.macs


def test_a_full_sample_costs_the_static_estimate():
    """Measurement and estimate share one model: a sample with no padding costs the estimate."""
    kernel = attention_kernel("sdpa", 2, 2, 16, 8)
    t = measure_attention(np, kernel, Mapping(4, 2), {"probs": _probs([16, 16], 2, 16)}, TARGET)
    assert t.sample_cycles[0] == attention.estimate_sample_cycles(kernel, Mapping(4, 2), TARGET)
    np.testing.assert_array_equal(t.sample_cycles, t.dense_sample_cycles)
    np.testing.assert_array_equal(t.sample_cycles, t.padded_sample_cycles)


def test_harvest_does_not_change_attention():
    a, b = _measure([5, 7], 8, harvest=True), _measure([5, 7], 8, harvest=False)
    np.testing.assert_array_equal(a.sample_cycles, b.sample_cycles)


def test_replicas_split_the_samples():
    t = _measure([4, 8, 4, 8], 8, mapping=Mapping(2, 2, 2))
    left, right = t.core_busy[:, :2], t.core_busy[:, 2:]
    assert t.core_busy.shape == (2, 4)
    assert right.sum() > left.sum()                # replica 1 got the two 8-token samples
    assert t.useful_macs == t.macs


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
    np.testing.assert_array_equal(real_lengths(np, sdpa, env), [3, 6, 1])
    t = measure_attention(np, sdpa, Mapping(2, 3), env, TARGET)
    assert t.sample_cycles[2] < t.sample_cycles[0] < t.sample_cycles[1]


class _Queries:
    """A stand-in for `simulator.dynamic_timing.StepPositions`: the queries of each run."""

    def __init__(self, queries):
        self.runs = {run: [np.asarray(queries)] for run in ("actual", "fixed_depth", "padded")}

    def queries(self, kernel):
        return self.runs


def test_halted_queries_cost_nothing_but_their_keys_are_read():
    lengths, padded = [8, 8, 8], 8
    kernel = attention_kernel("sdpa", 3, 2, padded, 16)
    env = {"probs": _probs(lengths, 2, padded)}
    every = measure_attention(np, kernel, Mapping(1, 1), env, TARGET)
    some = measure_attention(np, kernel, Mapping(1, 1), env, TARGET, positions=_Queries([8, 3, 0]))
    assert some.sample_cycles[0] == every.sample_cycles[0]
    assert some.sample_cycles[1] < every.sample_cycles[1]
    assert some.sample_cycles[2] == TARGET.kernel_overhead_cycles     # nothing runs: nothing sent
    # 3 running queries still read all 8 keys: more than a 3-token sample
    short = _measure([8, 3, 3], padded)
    assert some.sample_cycles[1] > short.sample_cycles[1]
    assert some.macs == pytest.approx(6 * 2 * 16 * (8 * 8 + 3 * 8))


def test_a_block_called_at_every_step_sums_its_calls():
    kernel = attention_kernel("sdpa", 2, 2, 8, 16, probs=("p0", "p1", "p2"))
    one = attention_kernel("sdpa", 2, 2, 8, 16)
    env = {"p0": _probs([8, 5], 2, 8), "p1": _probs([8, 5], 2, 8, seed=1),
           "p2": _probs([8, 5], 2, 8, seed=2), "probs": _probs([8, 5], 2, 8)}
    three = measure_attention(np, kernel, Mapping(2, 2), env, TARGET)
    single = measure_attention(np, one, Mapping(2, 2), env, TARGET)
    overhead = TARGET.kernel_overhead_cycles
    np.testing.assert_allclose(three.sample_cycles - overhead, 3 * (single.sample_cycles - overhead))
    assert three.macs == 3 * single.macs
    assert attention.estimate_sample_cycles(kernel, Mapping(2, 2), TARGET) - overhead == \
        3 * (attention.estimate_sample_cycles(one, Mapping(2, 2), TARGET) - overhead)
    assert kernel.dense_macs_per_sample == 3 * one.dense_macs_per_sample
