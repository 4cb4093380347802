"""simulator.measure.step: one step's timing from the tensors, every variant on one axis. With
masked weights the per-core work equals a brute-force count; harvesting off stays the dense
baseline; each variant equals the same variant measured alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import compile_plan, cost, in_flight, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.kernels.matmul import MATMUL, computes_dx
from compiler.kernels.matmul.masked import mask_tiles
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.measure import Runs, measure_step, variants
from simulator.training import Trainer
from simulator.weight_sparsity import WeightSparsity
from tests.compiler.kernels.test_matmul_masked import brute_force

T = wafer("classroom")


# ------------------------------------------------------------------ measure_step on a Trainer


def _trainer(weight_sparsity, harvest=True, batch=12, hidden=20, seed=0):
    torch.manual_seed(seed)
    model = wb.models.mlp(9, hidden, 4, depth=3, activation="relu")
    x, y = wb.data.blobs(batch, 9, 4, seed=seed)
    graph = run_pipeline(capture(model, nn.CrossEntropyLoss(), (x, y)))
    plan = compile_plan(graph, T, optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)))
    params = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    trainer = Trainer(plan, params, {}, get_backend("numpy"), harvest=harvest,
                      weight_sparsity=weight_sparsity)
    return trainer, x.numpy(), y.numpy()


def _env(trainer, x, y):
    return trainer.executor.run(trainer._environment(x, y, trainer.draw_masks()))


def _measure(trainer, env, harvest=True, weight_masks=None):
    return measure_step(trainer.context, np, env, harvest, weight_masks=weight_masks)


def _components(trainer, kernel, env, masks):
    """The matmul kind's harvested components of `kernel`, measured as the step measures them."""
    m = trainer.plan.mapping[kernel.name]
    runs = Runs(np, variants(True, False), None, {kernel.name: trainer.context.tiles(np, kernel, masks)})
    counts = MATMUL.measured_counts(kernel, m, env, runs)
    c = MATMUL.components(kernel, counts.values, m, T)
    rows = counts.rows[0]                               # the harvested variant's samples
    return {key: getattr(c, key)[rows, 0] for key in ("fwd_compute", "bwd_compute")}


def _per_value(macs_, tile):
    """FMAC cycles of a masked tile's MACs: MACs over the tile values, ceil(tile / simd) each."""
    tile = np.broadcast_to(tile, macs_.shape)
    values = np.divide(macs_, tile, out=np.zeros_like(macs_), where=tile > 0)
    return values * np.ceil(tile / T.simd)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_measured_cycles_and_macs_follow_the_kept_weights(sparsity):
    ws = WeightSparsity.from_dict({"sparsity": sparsity, "seed": 1})
    trainer, x, y = _trainer(ws)
    env, masks = _env(trainer, x, y), trainer.weight_masks
    timing = _measure(trainer, env, weight_masks=masks)
    for kt, kernel in zip(timing.kernels, trainer.plan.kernels):
        if kernel.kind != "matmul":
            continue
        fqn = trainer.context.weight_views[kernel.name][0]
        mask = masks[fqn].T                         # nn.Linear stores (out, in); the nest is (in, out)
        m = trainer.plan.mapping[kernel.name]
        xs = env[kernel.stream["x"]].reshape(kernel.samples, 1, -1)
        dys = env[kernel.stream["dy"]].reshape(kernel.samples, 1, -1)
        want = brute_force(xs, dys, mask, m.rows, m.cols)
        simd = T.simd
        got = _components(trainer, kernel, env, masks)
        # each streamed value one FMAC over its tile, rounded up as the dense tile's: the MACs
        # over the tile are values, ceil(tile / simd) cycles each; dW an FMAC per dY value
        tk, tn = (cost.tile_sizes(kernel.nest.extent(d), p) * 1.0 for d, p in
                  (("i", m.rows), ("j", m.cols)))
        tk, tn = tk[None, :, None], tn[None, None, :]
        np.testing.assert_array_equal(got["fwd_compute"], np.ceil(_per_value(want["fwd"], tn)))
        dx = computes_dx(kernel)
        nnz_dy = np.add.reduceat(dys[:, 0] != 0, np.arange(m.cols) * int(tn.max()), axis=1)
        dy = np.broadcast_to(nnz_dy[:, None, :] * 1.0, want["dw"].shape)
        per_dy = np.round(np.divide(want["dw"], dy, out=np.zeros_like(dy), where=dy > 0), 6)
        bwd = dy * np.ceil(per_dy / simd) + (_per_value(want["dx"], tk) if dx else 0)
        np.testing.assert_array_equal(got["bwd_compute"], np.ceil(bwd))
        total = want["fwd"].sum() + want["dw"].sum() + (want["dx"].sum() if dx else 0)
        assert kt.executed_macs == kt.useful_macs == total
        kept = mask_tiles(np, np.asarray, mask, m.rows, m.cols).kept
        assert kept.sum() == mask.sum()
        bias = -(-kernel.nest.extent("j") // m.cols)
        opt = trainer.plan.optimizer
        assert kt.update_cycles == cost.update_cycles(kept + bias, m, T, opt).max()
        assert kt.dense_update_cycles == cost.update_cycles(MATMUL.weights_per_core(kernel, m), m, T, opt)
        flight = in_flight(trainer.plan.kernels.index(kernel), len(trainer.plan.kernels), kernel.samples)
        assert kt.memory_per_core == MATMUL.memory_per_core(kernel, m, T, opt, flight, kept=int(kept.max()))


def test_sparser_weights_cost_fewer_cycles_and_less_memory():
    sparsities = [0.0, 0.5, 0.9]
    results = []
    for s in sparsities:
        trainer, x, y = _trainer(WeightSparsity.from_dict({"sparsity": s, "seed": 2}), hidden=64, batch=32)
        timing = _measure(trainer, _env(trainer, x, y), weight_masks=trainer.weight_masks)
        results.append({k.name: k for k in timing.kernels})
    dense = trainer.plan.memory_per_core()
    for name in ("fc1", "fc2", "fc3"):
        computes = [r[name].split()[0][0].sum() for r in results]
        assert computes[0] > computes[1] > computes[2], name
        assert results[0][name].executed_macs > results[1][name].executed_macs > results[2][name].executed_macs
        assert results[2][name].memory_per_core < dense[name] < results[0][name].memory_per_core


def test_without_masks_or_harvest_the_dense_path_is_unchanged():
    ws = WeightSparsity.from_dict({"sparsity": 0.8, "seed": 3})
    trainer, x, y = _trainer(ws)
    env = _env(trainer, x, y)
    plain = _measure(trainer, env, True)
    for masks in (None, {}):
        again = _measure(trainer, env, True, weight_masks=masks)
        assert again.cycles == plain.cycles and again.dense_cycles == plain.dense_cycles
    off = _measure(trainer, env, False, weight_masks=trainer.weight_masks)
    base = _measure(trainer, env, False)
    assert off.cycles == base.cycles == base.dense_cycles == off.dense_cycles
    for a, b in zip(off.kernels, base.kernels):
        assert a.executed_macs == b.executed_macs == b.dense_macs and a.update_cycles == b.update_cycles
        assert a.memory_per_core is None
    masked = _measure(trainer, env, True, weight_masks=trainer.weight_masks)
    assert masked.dense_cycles == plain.dense_cycles           # the baseline ignores the masks
    assert masked.cycles <= plain.cycles
    assert sum(k.executed_macs for k in masked.kernels) < sum(k.executed_macs for k in plain.kernels)


def test_trainer_steps_time_with_the_masks_they_ran_with():
    ws = WeightSparsity.from_dict({"algorithm": "set", "sparsity": 0.7, "update": {"freq": 1}})
    trainer, x, y = _trainer(ws)
    before = trainer.weight_masks
    env = _env(trainer, x, y)
    expected = _measure(trainer, env, True, weight_masks=before)
    _, timing = trainer.step(x, y)
    assert any((trainer.weight_masks[n] != before[n]).any() for n in before)   # the mask moved
    assert [k.executed_macs for k in timing.kernels] == [k.executed_macs for k in expected.kernels]
    assert timing.cycles == expected.cycles


def test_cached_mask_tiles_follow_the_mask_passed():
    trainer, x, y = _trainer(WeightSparsity.from_dict({"sparsity": 0.5, "seed": 4}))
    env = _env(trainer, x, y)
    first = trainer.weight_masks
    other = {n: ~m for n, m in first.items()}              # the complement: a different mask
    a = _measure(trainer, env, True, weight_masks=first)
    b = _measure(trainer, env, True, weight_masks=other)
    assert [k.executed_macs for k in a.kernels] != [k.executed_macs for k in b.kernels]
    fresh = {n: m.copy() for n, m in other.items()}
    again = _measure(trainer, env, True, weight_masks=fresh)
    assert [k.executed_macs for k in again.kernels] == [k.executed_macs for k in b.kernels]
    assert [k.executed_macs for k in _measure(trainer, env, True, weight_masks=first).kernels] == \
        [k.executed_macs for k in a.kernels]


# ------------------------------------------------- kernels whose counts do not depend on data


def test_a_kernel_counted_without_the_data_keeps_its_evaluation_and_the_others_are_remeasured():
    """An element-wise kernel without markers counts every element: the same `Counts` each
    step, so its last evaluation is kept; a matmul counts the step's non-zeros afresh, and the
    step's cycles equal those of a context that has measured nothing before."""
    trainer, x, y = _trainer(None)
    first = _measure(trainer, _env(trainer, x, y))
    env = _env(trainer, x[::-1].copy(), y[::-1].copy())
    second = _measure(trainer, env)
    kinds = {k.name: k.kind for k in trainer.plan.kernels}
    kept = [a.cycles is b.cycles for a, b in zip(first.kernels, second.kernels)]
    assert any(kept) and not all(kept)
    assert all(kept_one == (kinds[a.name] == "generated") for kept_one, a in zip(kept, first.kernels))
    fresh = measure_step(type(trainer.context)(trainer.plan), np, env, True)
    np.testing.assert_array_equal(second.step_cycles, fresh.step_cycles)
    assert [t.busy_total for t in second.kernels] == [t.busy_total for t in fresh.kernels]


@pytest.mark.parametrize("sparsity", [None, 0.5])
def test_busy_total_is_every_cores_busy_cycles_summed(sparsity):
    """The trainer's utilization sums each kernel's busy cycles from the per-sample sums; the
    report's per-core map (`core_busy`) must add up to the same."""
    ws = WeightSparsity.from_dict({"sparsity": sparsity, "seed": 4}) if sparsity else None
    trainer, x, y = _trainer(ws)
    timing = _measure(trainer, _env(trainer, x, y), weight_masks=trainer.weight_masks if sparsity else None)
    for kt in timing.kernels:
        assert kt.busy_total == pytest.approx(float(kt.core_busy.sum()), rel=1e-9)


# ------------------------------------------------------------------ what the links carry


def test_the_sender_filters_zeros_so_link_load_falls_with_density():
    """A route carries its value's non-zeros as (value, index) wavelets where that is fewer
    than two dense values to a wavelet: half zeros still fill every dense wavelet, a quarter
    of non-zeros sends half of them; the dense variant's congestion is the full load."""
    from simulator.measure.step import sent_shares
    trainer, x, y = _trainer(None)
    plan, context = trainer.plan, trainer.context
    values = [rt.edge.value for rt in plan.sample_routes]
    shapes = {v: plan.graph.type_of[v].shape for v in values}

    def env_with(density):
        rng = np.random.default_rng(0)
        return {v: (rng.random(shape) < density).astype(np.float32) for v, shape in shapes.items()}

    for density in (0.6, 0.25, 0.1):
        env = env_with(density)
        expected = [min(1.0, 2 * np.count_nonzero(env[v]) / env[v].size) for v in values]
        got = sent_shares(context, np, env)
        np.testing.assert_allclose(got if got is not None else 1.0, expected)
    assert sent_shares(context, np, env_with(1.0)) is None            # nothing to filter
    loads = [plan.congestion_array(sent_shares(context, np, env_with(d)))[0].max() for d in (0.4, 0.2, 0.05)]
    assert loads[0] > loads[1] > loads[2]


def test_congestion_worked_out_later_is_this_steps():
    """Where the full load binds no stage the step does not wait for the exact link loads; asked
    for after the next step has run, they are still this step's, and equal to working them
    out at once (with the routes' values too big to hold, they are)."""
    import simulator.measure.step as step_module
    trainer, x, y = _trainer(None)
    env = _env(trainer, x, y)
    lazy = measure_step(trainer.context, np, env)
    assert callable(lazy.congestion_of)
    for name in trainer.context.route_values[0]:          # the next step's tensors
        env[name] = np.zeros_like(env[name])
    original = _env(trainer, x, y)
    saved, step_module.HOLD_BYTES = step_module.HOLD_BYTES, 0
    try:
        eager = measure_step(trainer.context, np, original)
    finally:
        step_module.HOLD_BYTES = saved
    assert not callable(eager.congestion_of)
    np.testing.assert_array_equal(lazy.congestion, eager.congestion)
    np.testing.assert_array_equal(lazy.step_cycles, eager.step_cycles)
