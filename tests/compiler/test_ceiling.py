"""compiler.ceiling: the utilization ceiling bounds every plan's estimate, rises as a step's
samples amortize its fill, and its two bounds (the least stage time, the least fill by weak
duality) are exact on fronts small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler.ceiling import ceiling, cores_for, front, least_fill, least_stage_time, segments


def _plan(model, x, y, **kwargs):
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs).plan


def _transformer_plan(batch: int):
    model = wb.models.transformer(vocab=16, d_model=32, heads=2, layers=2, ffn=64, max_len=16,
                                  seed=0)
    return _plan(model, torch.randint(1, 16, (batch, 16)), torch.randint(0, 2, (batch,)))


@pytest.fixture(scope="module")
def transformer_plan():
    return _transformer_plan(4)


def test_the_ceiling_bounds_the_plans_own_utilization(transformer_plan):
    plan = transformer_plan
    c = ceiling(plan)
    estimate = plan.estimate()
    assert 0.0 < estimate["compute_utilization_pct"] <= c.utilization_pct <= c.steady_pct
    assert c.step_cycles <= estimate["cycles"]
    assert c.step_cycles == pytest.approx(c.fill_cycles + (c.samples - 1) * c.stage_cycles)
    # the slowest stage of the plan is no faster than the fastest any split of the wafer allows
    assert c.stage_cycles <= max(estimate["per_sample_cycles"].values())


def test_an_mlp_moves_whole_samples_so_every_stage_is_a_segment():
    model = wb.models.mlp(32, 64, 4, depth=3, seed=0)
    plan = _plan(model, torch.randn(16, 32), torch.randint(0, 4, (16,)))
    assert [len(s) for s in segments(plan)] == [1] * len(plan.kernels)
    c = ceiling(plan)
    assert plan.estimate()["compute_utilization_pct"] <= c.utilization_pct


def test_the_segments_end_where_a_stage_waits(transformer_plan):
    runs = segments(transformer_plan)
    waits = transformer_plan.streaming.waits
    assert len(runs) == 1 + sum(waits[1:])
    assert [k for run in runs for k in run] == list(transformer_plan.kernels)
    assert all(waits[transformer_plan.kernels.index(run[0])] for run in runs[1:])


def test_more_samples_amortize_the_fill():
    few, many = ceiling(_transformer_plan(2)), ceiling(_transformer_plan(8))
    assert many.utilization_pct > few.utilization_pct
    assert many.fill_cycles / many.step_cycles < few.fill_cycles / few.step_cycles


def test_the_front_is_the_cheapest_mapping_for_each_time(transformer_plan):
    kernel = next(k for k in transformer_plan.kernels if k.kind == "matmul")
    cores, cycles = front(kernel, transformer_plan)
    assert len(cores) > 1 and np.all(np.diff(cores) > 0) and np.all(np.diff(cycles) < 0)
    # the plan's own mapping is on or above the front
    chosen = transformer_plan.mapping[kernel.name].replica
    own = transformer_plan.estimate()["per_sample_cycles"][kernel.name]
    at = np.searchsorted(cores, chosen.cores, side="right") - 1
    assert cycles[at] <= own * transformer_plan.mapping[kernel.name].replicas


FRONT = (np.array([1.0, 2.0, 4.0, 8.0]), np.array([8.0, 4.0, 2.0, 1.0]))


def test_cores_for_takes_the_first_option_fast_enough_and_replicas_share_samples():
    assert cores_for([FRONT], np.array([8.0, 3.0, 2.0, 0.5])).tolist() == [1.0, 4.0, 4.0, np.inf]
    # two replicas of 1 core at 8 cycles reach 4 cycles a sample on 2 cores, as 1 core of 2 does
    assert cores_for([FRONT], np.array([4.0]), replicas=2).tolist() == [2.0]
    assert cores_for([FRONT, FRONT], np.array([2.0])).tolist() == [8.0]


def test_least_stage_time_is_the_fastest_split_that_fits():
    assert least_stage_time([FRONT], 4, samples=1) == 2.0
    assert least_stage_time([FRONT], 3, samples=1) == 4.0
    assert least_stage_time([FRONT, FRONT], 8, samples=1) == 2.0
    # replicas: two of 8 cores at 1 cycle each... none faster than 1 / 2 on 16 cores
    assert least_stage_time([FRONT], 16, samples=2) == 0.5
    with pytest.raises(ValueError, match="fits"):
        least_stage_time([FRONT], 0, samples=1)


def test_least_fill_is_tight_on_a_convex_front_and_never_above_the_best_split():
    # two segments sharing 8 cores: 4 + 4 gives 2 + 2 cycles, the best split
    assert least_fill([[FRONT], [FRONT]], 8) == pytest.approx(4.0)
    # whatever the capacity, the bound is at most the best split found by trying every one
    for capacity in (2, 3, 5, 9, 12):
        best = min(FRONT[1][i] + FRONT[1][j] for i in range(4) for j in range(4)
                   if FRONT[0][i] + FRONT[0][j] <= capacity)
        assert least_fill([[FRONT], [FRONT]], capacity) <= best + 1e-9
