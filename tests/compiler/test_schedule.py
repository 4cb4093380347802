"""compiler.schedule: the wavefront evaluation of the pipeline recurrence, step time over the
timing variants, the rates, and congestion on the directed links."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.schedule import Streaming, pipeline_finish, rates, step, step_cycles


def reference_finish(t, hops):
    """finish[k][s] = max(finish[k-1][s] + hops[k], finish[k][s-1]) + t[k][s], as a double loop."""
    stages, samples = len(t), len(t[0])
    finish = [[0.0] * samples for _ in range(stages)]
    for k in range(stages):
        for s in range(samples):
            above = finish[k - 1][s] if k > 0 else 0.0
            left = finish[k][s - 1] if s > 0 else 0.0
            finish[k][s] = max(above + hops[k], left) + t[k][s]
    return np.array(finish)


def test_matches_reference_on_random_inputs():
    r = np.random.default_rng(0)
    for _ in range(200):
        stages, samples = int(r.integers(1, 9)), int(r.integers(1, 20))
        t = r.integers(0, 50, size=(stages, samples)).astype(float)
        if r.random() < 0.5:
            t = r.exponential(10.0, size=(stages, samples))
        hops = r.integers(0, 10, size=stages).astype(float)
        np.testing.assert_allclose(pipeline_finish(t, hops), reference_finish(t.tolist(), hops.tolist()))


def reference_streamed(t, hops, chunks, waits, shares):
    """The recurrence over every (sample, chunk) as a double loop: a chunk takes its share of
    its sample's stage time; a stage that waits starts a sample's chunks only once the stage
    before has finished the sample's last one."""
    stages, samples = len(t), len(t[0])
    items = samples * chunks
    finish = np.zeros((stages, items))
    for k in range(stages):
        for j in range(items):
            s, c = divmod(j, chunks)
            above = 0.0
            if k > 0:
                above = finish[k - 1][s * chunks + chunks - 1] if waits[k] else finish[k - 1][j]
            left = finish[k][j - 1] if j > 0 else 0.0
            finish[k][j] = max(above + hops[k], left) + t[k][s] * shares[s][c]
    return finish


def test_streamed_chunks_match_reference():
    r = np.random.default_rng(4)
    for _ in range(100):
        stages, samples, chunks = int(r.integers(1, 7)), int(r.integers(1, 6)), int(r.integers(2, 6))
        t = r.integers(0, 60, size=(stages, samples)).astype(float)
        hops = r.integers(0, 5, size=stages).astype(float)
        waits = tuple(bool(w) for w in r.random(stages) < 0.4)
        real = r.random((samples, chunks)) < 0.7
        real[:, 0] = True
        shares = real / real.sum(axis=1, keepdims=True)
        got = pipeline_finish(t, hops, Streaming(chunks, waits), shares)
        np.testing.assert_allclose(got, reference_streamed(t, hops, chunks, waits, shares), atol=1e-9)
        even = np.full((samples, chunks), 1.0 / chunks)
        np.testing.assert_allclose(pipeline_finish(t, hops, Streaming(chunks, waits)),
                                   reference_streamed(t, hops, chunks, waits, even), atol=1e-9)


def test_streaming_tokens_shortens_the_fill_and_waiting_lengthens_it():
    """Deep pipeline, few samples: streaming 16 tokens fills the pipeline in token time; a stage
    that needs whole samples adds back a sample's time; one chunk is the unstreamed step."""
    t = np.full((12, 4), 160.0)
    hops = np.zeros(12)
    whole = step_cycles(t, hops, 0.0, np.zeros(12))
    streamed = step_cycles(t, hops, 0.0, np.zeros(12), Streaming(16, (False,) * 12))
    barrier = step_cycles(t, hops, 0.0, np.zeros(12), Streaming(16, (False,) * 6 + (True,) + (False,) * 5))
    assert whole == 160.0 * (12 + 3)
    assert streamed == pytest.approx(160.0 * 4 + 10.0 * 11)       # the steady rate, plus 11 tokens
    assert streamed < barrier < whole
    assert step_cycles(t, hops, 0.0, np.zeros(12), Streaming(1, (False,) * 12)) == whole


def test_pads_that_take_no_time_change_nothing():
    """Doubling the chunks with pads that take no share of the time leaves every finish as it was
    when there are no hops (a zero-time chunk passes at once)."""
    t = np.random.default_rng(2).integers(1, 50, size=(5, 3)).astype(float)
    waits = (False, True, False, False, True)
    short = pipeline_finish(t, np.zeros(5), Streaming(4, waits))
    padded = np.concatenate([np.full((3, 4), 0.25), np.zeros((3, 4))], axis=1)
    long = pipeline_finish(t, np.zeros(5), Streaming(8, waits), padded)
    assert short[-1, -1] == pytest.approx(long[-1, -1])


def test_shape_and_monotonicity():
    r = np.random.default_rng(1)
    t = r.random((4, 7)) * 10
    f = pipeline_finish(t, np.zeros(4))
    assert f.shape == (4, 7)
    assert (np.diff(f, axis=0) >= t[1:] - 1e-12).all()     # a sample finishes stages in order
    assert (np.diff(f, axis=1) >= t[:, 1:] - 1e-12).all()  # a stage finishes samples in order


def test_single_stage_is_a_sum():
    t = np.array([[3.0, 1.0, 4.0, 1.0, 5.0]])
    np.testing.assert_allclose(pipeline_finish(t, np.array([2.0]))[0], 2 + np.cumsum(t[0]))


def test_single_sample_is_latency():
    t = np.array([[3.0], [1.0], [4.0]])
    hops = np.array([0.0, 2.0, 5.0])
    assert pipeline_finish(t, hops)[-1, 0] == pytest.approx(t.sum() + hops.sum())


def test_accepts_lists():
    np.testing.assert_allclose(pipeline_finish([[1, 2], [3, 4]], [0, 0]),
                               reference_finish([[1, 2], [3, 4]], [0, 0]))


def test_throughput_is_set_by_the_slowest_stage():
    """With many samples, each extra sample costs the bottleneck stage's time."""
    r = np.random.default_rng(2)
    for _ in range(20):
        stages = int(r.integers(2, 6))
        per_stage = r.integers(1, 40, size=stages).astype(float)
        hops = r.integers(0, 5, size=stages).astype(float)

        def cycles(samples):
            return step_cycles(np.repeat(per_stage[:, None], samples, axis=1), hops, 0.0, np.zeros(stages))

        n = 50
        assert cycles(2 * n) - cycles(n) == pytest.approx(n * per_stage.max())


def test_doubling_the_bottleneck_doubles_the_rate_term():
    per_stage = np.array([5.0, 20.0, 8.0])
    hops = np.zeros(3)
    n = 200

    def cycles(times):
        return step_cycles(np.repeat(times[:, None], n, axis=1), hops, 0.0, np.zeros(3))

    base = cycles(per_stage)
    slower = per_stage.copy()
    slower[1] *= 2
    # the bottleneck's extra time is paid once per sample
    assert cycles(slower) - base == pytest.approx(n * per_stage[1])
    # a non-bottleneck stage that stays below the bottleneck costs only its latency
    faster_side = per_stage.copy()
    faster_side[0] *= 2
    assert cycles(faster_side) - base == pytest.approx(per_stage[0])


def test_step_time_approaches_samples_times_slowest():
    per_stage = np.array([3.0, 11.0, 7.0, 2.0])
    for samples in (100, 1000):
        c = step_cycles(np.repeat(per_stage[:, None], samples, axis=1), np.ones(4), 0.0, np.zeros(4))
        assert c / (samples * per_stage.max()) == pytest.approx(1.0, rel=0.05)


def test_step_adds_return_hops_and_slowest_update():
    t = np.array([[2.0, 3.0], [4.0, 1.0]])
    hops = np.array([0.0, 3.0])
    finish = pipeline_finish(t, hops)[-1, -1]
    assert step_cycles(t, hops, 0.0, np.zeros(2)) == finish
    assert step_cycles(t, hops, 7.0, np.array([5.0, 9.0])) == finish + 7.0 + 9.0


def test_empty_step():
    assert step_cycles(np.zeros((0, 0)), np.zeros(0), 5.0, np.zeros(0)) == 0.0


def test_variants_run_through_the_recurrence_together():
    """The variant axis gives each variant the step it would get alone."""
    r = np.random.default_rng(3)
    per_sample = r.integers(1, 40, size=(3, 4, 6)).astype(float)
    congestion = r.integers(0, 10, size=(3, 4)).astype(float)
    updates = r.integers(0, 30, size=(3, 4)).astype(float)
    hops, replicas = np.array([0.0, 2.0, 1.0, 3.0]), np.array([1, 2, 1, 1])
    together = step(per_sample, replicas, congestion, hops, updates)
    for v in range(3):
        alone = step(per_sample[v:v + 1], replicas, congestion[v:v + 1], hops, updates[v:v + 1])
        assert together[v] == alone[0]
        stage = np.maximum(per_sample[v] / replicas[:, None], congestion[v][:, None])
        first = per_sample[v][:, 0] * (1 - 1 / replicas)     # a replica's whole first sample
        assert alone[0] == step_cycles(stage, hops + first, hops.sum(), updates[v])


def test_replicas_share_the_samples_but_not_the_first_ones_time():
    """A replica takes a whole sample's time: four replicas of a 40-cycle stage pass a sample
    every 10 cycles, but the first still takes 40 to cross it (the fabric model's whole step)."""
    per_sample = np.full((1, 2, 8), [[8.0], [40.0]])
    one = step(per_sample, [1, 4], np.zeros((1, 2)), np.zeros(2), np.zeros((1, 2)))[0]
    assert one == 8 + 40 + 7 * 10                 # the first sample through both, then one per 10
    assert step(per_sample[:, :, :1], [1, 4], np.zeros((1, 2)), np.zeros(2), np.zeros((1, 2)))[0] == 48


def test_rates_are_bound_by_the_slowest_stage_and_transmission_counts_congestion():
    compute = np.array([[[8.0, 8.0], [30.0, 30.0]]])
    link = np.array([[[4.0, 4.0], [5.0, 5.0]]])
    figures = rates(compute, link, [1, 2], np.array([[0.0, 20.0]]), 1e9)
    assert figures.compute_samples_per_s[0] == 1e9 / 15.0        # 30 over 2 replicas
    assert figures.transmission_samples_per_s[0] == 1e9 / 20.0   # the congested link
