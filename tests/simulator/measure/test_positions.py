"""simulator.dynamic_timing: the wafer's time follows dynamic depth and the real tokens.

- A Universal Transformer whose positions all halt after step k costs k/max_steps of its
  fixed-depth time plus the fixed costs (the embedding, the head, the loss, the pipeline's fill
  and the update), the fixed costs read off the model by a linear fit over k.
- Doubling the padding of a batch leaves the time unchanged; only the padded baseline grows.
- A model without markers times exactly as before.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import axis_kind, compile_plan, wafer
from compiler.mapping import Mapping
from compiler.frontend import capture, optimizer_spec
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.dynamic_report import dynamic_summary, run_summary
from simulator.measure import layout, step_positions
from simulator.training import Trainer
from wsebench import tasks
from wsebench.universal import universal_transformer, ut_loss

STEPS = 4


def _numpy(module) -> tuple[dict, dict]:
    return ({k: v.detach().numpy().copy() for k, v in module.named_parameters()},
            {k: v.detach().numpy().copy() for k, v in module.named_buffers()})


@pytest.fixture(scope="module")
def ut_plan():
    """A UT on parity whose FFN (pinned to few cores) dominates the step, so the block's work,
    not the pipeline's fill, sets the pace."""
    task = tasks.parity(samples=64, min_len=2, max_len=8, seed=0)
    model = universal_transformer(vocab=task.vocab, d_model=16, heads=2, ffn=64, max_steps=STEPS,
                                  classes=2, max_len=8, seed=0)
    x, y = next(tasks.batches(task, 16, seed=0, pad_to="max"))
    graph = run_pipeline(capture(model, ut_loss(model), (x, y), method="aot"))
    pin = {"block.ffn.fc1": Mapping(2, 1), "block.ffn.fc2": Mapping(2, 1)}
    plan = compile_plan(graph, wafer("classroom"), optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.0)),
                        mapping=pin)
    return plan, model, x.numpy(), y.numpy()


def _halting_after(plan, model, x, y, k: int):
    """One step with every position halting at step k: the halting unit ignores h and says
    p = 1/k + 0.01, so the cumulative p first passes 1 - epsilon at step k."""
    params, buffers = _numpy(model)
    p = min(1.0 / k + 0.01, 0.999)
    params["halt.weight"] = np.zeros_like(params["halt.weight"])
    params["halt.bias"] = np.full_like(params["halt.bias"], math.log(p / (1 - p)))
    return Trainer(plan, params, buffers, get_backend("numpy")).step(x, y)


def test_halting_after_step_k_costs_k_steps_plus_the_fixed_costs(ut_plan):
    runs = {k: _halting_after(*ut_plan, k) for k in range(1, STEPS + 1)}
    for k, (result, timing) in runs.items():
        assert timing.dynamic.active_fraction == (1.0,) * k + (0.0,) * (STEPS - k)
        assert result.mean_ponder_steps == k
    cycles = np.array([runs[k][0].cycles for k in runs])
    fixed = np.array([runs[k][0].fixed_depth_cycles for k in runs])
    # the fixed-depth baseline does not depend on when the positions halted ...
    np.testing.assert_allclose(fixed, fixed[-1], rtol=1e-3)
    # ... and is the run in which every position ran max_steps
    assert cycles[-1] == fixed[-1]
    # cycles(k) = fixed costs + k / max_steps * (fixed-depth time - fixed costs)
    slope, fixed_costs = np.polyfit(np.arange(1, STEPS + 1), cycles, 1)
    predicted = fixed_costs + np.arange(1, STEPS + 1) / STEPS * (fixed[-1] - fixed_costs)
    np.testing.assert_allclose(cycles, predicted, rtol=0.02)
    assert 0 < fixed_costs < 0.25 * fixed[-1]
    assert cycles[0] < 0.3 * fixed[-1]


def test_halted_steps_cost_nothing_per_kernel(ut_plan):
    """Kernel by kernel: a block matmul's work after the halting step is zero, not just less."""
    one = _halting_after(*ut_plan, 1)[1]
    full = _halting_after(*ut_plan, STEPS)[1]
    for name in ("block.attn.q", "block.ffn.fc1", "halt"):
        a = {t.name: t for t in one.kernels}[name]
        b = {t.name: t for t in full.kernels}[name]
        ratio = a.sample_cycles / b.sample_cycles
        np.testing.assert_allclose(ratio, 1 / STEPS, rtol=0.1)
    head_one = {t.name: t for t in one.kernels}["head"]
    head_full = {t.name: t for t in full.kernels}["head"]
    np.testing.assert_array_equal(head_one.sample_cycles, head_full.sample_cycles)


def _transformer_step(task, samples, pad_to):
    batch = tasks.collate(samples, pad_to=pad_to)
    model = wb.models.transformer(vocab=task.vocab, d_model=16, heads=2, layers=1, ffn=32,
                                  max_len=2 * task.max_len, classes=task.classes, seed=0)
    # the same mapping for both paddings, so only the data differs
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(batch.x, batch.y),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy",
                         capture_method="aot", mapping={"*": wb.Mapping(2, 2)})
    return session.step(batch.x, batch.y), session, batch


def test_doubling_the_padding_leaves_the_time_unchanged():
    task = tasks.longtail(samples=32, min_len=2, max_len=12, classes=3, symbols=9, seed=0)
    samples = task.samples[:8]
    short, s_short, b_short = _transformer_step(task, samples, 12)
    long, s_long, b_long = _transformer_step(task, samples, 24)
    # the only kernel that sees the padded length is the position table's lookup: a fixed cost
    assert abs(long.cycles - short.cycles) <= 0.01 * short.cycles
    assert abs(long.dense_cycles - short.dense_cycles) <= 0.01 * short.dense_cycles
    assert long.padded_cycles > 1.5 * short.padded_cycles > 1.5 * short.cycles
    assert short.padding_fraction == pytest.approx(tasks.padding_fraction(b_short))
    assert long.padding_fraction == pytest.approx(tasks.padding_fraction(b_long))
    summary = dynamic_summary(s_long._trainer.last_timing)
    assert summary["speedup_vs_padded"] == pytest.approx(long.padded_cycles / long.cycles)
    assert "mean_ponder_steps" not in summary          # no recurrence in this model


def test_ut_act_training_reports_halting_and_both_baselines():
    task = tasks.parity(samples=64, min_len=1, max_len=8, seed=0)
    model = universal_transformer(vocab=task.vocab, d_model=8, heads=2, ffn=16, max_steps=3,
                                  classes=2, max_len=8, seed=0)
    batches = tasks.batches(task, 8, seed=0, pad_to="max")
    x, y = next(tasks.batches(task, 8, seed=0, pad_to="max"))
    session = wb.compile(model, ut_loss(model), example=(x, y), capture_method="aot",
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    history = session.train(batches, steps=3, progress=False)
    for r in history:
        assert r.cycles <= r.fixed_depth_cycles and r.cycles < r.padded_cycles
        assert 1.0 <= r.mean_ponder_steps <= 3.0
    summary = dynamic_summary(session._trainer.last_timing)
    fractions = summary["active_fraction_per_step"]
    assert fractions[0] == 1.0 and fractions == sorted(fractions, reverse=True)
    assert summary["mean_ponder_steps"] == pytest.approx(sum(fractions))
    assert summary["max_steps"] == 3
    total = run_summary(history)
    assert total["speedup_vs_fixed_depth"] >= 1.0 and total["speedup_vs_padded"] > 1.0
    report = session.report()                        # the public report carries the same figures
    assert report.summary["active_fraction_per_step"] == fractions
    assert report.summary["padded_step_cycles"] > report.summary["step_cycles"]
    assert all(row["padded_cycles"] >= row["cycles"] for row in report.kernels)
    page = report._repr_html_()
    assert "Speedup over fixed depth" in page and "Padding share of the batch" in page


def test_without_markers_the_timing_is_unchanged():
    model = wb.models.mlp(8, 16, 3, depth=2, seed=0)
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    r = session.step(x, y)
    timing = session._trainer.last_timing
    assert timing.dynamic is None and timing.fixed_depth_cycles is None and timing.padded_cycles is None
    assert r.fixed_depth_cycles == r.padded_cycles == r.cycles and r.mean_ponder_steps is None
    assert dynamic_summary(timing) == {}
    assert step_positions(session.plan, {}, layout(session.plan)) is None


@pytest.mark.parametrize("shape, kind", [
    ((24, 5), "tokens"), ((5, 24), "tokens"), ((4, 6, 5), "tokens"), ((4, 2, 6, 3), "tokens"),
    ((4, 6), "tokens"), ((6, 5), "positions"), ((6,), "positions"), ((4, 5), None), ((3, 4), None),
])
def test_axis_kind(shape, kind):
    """Batch 4, 6 positions: which values carry the mask's positions."""
    assert axis_kind(shape, 4, 6) == kind


def test_links_carrying_every_row_load_as_the_compiler_says():
    """With every position computing, the link loads are the compiler's congestion exactly;
    with half the rows, the token traffic halves."""
    task = tasks.longtail(samples=32, min_len=2, max_len=12, classes=3, symbols=9, seed=0)
    _, session, batch = _transformer_step(task, task.samples[:8], 12)
    plan = session.plan
    lay = layout(plan)
    names = [k.name for k in plan.kernels]

    def congestion(env):
        shares = step_positions(plan, env, lay).route_shares("actual")
        return dict(zip(names, plan.congestion_array(shares)[0]))
    full = {name: np.ones(batch.x.shape, dtype=bool) for name in lay.markers.masks}
    compiled = plan.congestion()
    assert congestion(full) == compiled
    half = {name: np.arange(batch.x.shape[1])[None, :].repeat(8, 0) < 6 for name in lay.markers.masks}
    loads = congestion(half)
    assert all(loads[k] <= compiled[k] for k in compiled)
    assert loads["layers.0.ffn.fc1"] < compiled["layers.0.ffn.fc1"]


@pytest.mark.parametrize("harvest", [True, False])
def test_each_variant_on_the_axis_equals_that_variant_measured_alone(ut_plan, harvest):
    """The timing variants are one array axis: every kernel's per-sample cycles, MACs and
    update of each variant are what that variant gives when it is measured by itself."""
    from compiler.kernels import Variant
    from simulator.measure import PlanContext, Runs, measure_kernel, variants
    plan, model, x, y = ut_plan
    params, buffers = _numpy(model)
    trainer = Trainer(plan, params, buffers, get_backend("numpy"), harvest=harvest)
    env = trainer.executor.run(trainer._environment(x, y, trainer.draw_masks()))
    context = PlanContext(plan)
    positions = step_positions(plan, env, context.layout)
    every = variants(harvest, True)
    assert [v.name for v in every] == ["harvested", "dense", "fixed_depth", "padded"]
    together = Runs(np, every, positions, {})
    for kernel in plan.kernels:
        mapping = plan.mapping[kernel.name]
        axis = measure_kernel(kernel, mapping, env, together, plan.target, plan.optimizer, harvest)
        for v, variant in enumerate(every):
            alone = Runs(np, (variant, Variant("dense", False)), positions, {})
            one = measure_kernel(kernel, mapping, env, alone, plan.target, plan.optimizer, True)
            np.testing.assert_array_equal(axis.samples[v], one.samples[0], err_msg=kernel.name)
            assert axis.macs[v] == one.macs[0] and axis.updates[v] == one.updates[0]
