"""simulator.timing with masked weights: the per-core work counted from the tensors equals a
brute-force loop over cores, samples and weights; harvesting off stays the dense baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import compile_plan, cost, wafer
from compiler.cost import tile_sizes
from compiler.frontend import capture, optimizer_spec
from compiler.mapping import in_flight
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.timing import measure_step
from simulator.training import Trainer
from simulator.weight_timing import mask_tiles, masked_work, matmul_weights
from simulator.weight_sparsity import WeightSparsity

T = wafer("classroom")


def brute_force(x, dy, mask, rows, cols):
    """Per-sample, per-core MACs of a masked matmul, one core, sample, token and weight at a time."""
    samples, tokens, k = x.shape
    n = dy.shape[2]
    sk, sn = -(-k // rows), -(-n // cols)
    out = {key: np.zeros((samples, rows, cols)) for key in ("fwd", "dx", "dw")}
    for b in range(samples):
        for r in range(rows):
            rows_i = range(r * sk, min(k, (r + 1) * sk))
            for c in range(cols):
                cols_j = range(c * sn, min(n, (c + 1) * sn))
                for t in range(tokens):
                    for i in rows_i:
                        for j in cols_j:
                            if not mask[i, j]:
                                continue
                            out["fwd"][b, r, c] += x[b, t, i] != 0
                            out["dx"][b, r, c] += dy[b, t, j] != 0
                            out["dw"][b, r, c] += (x[b, t, i] != 0) and (dy[b, t, j] != 0)
    return out


def _sparse(rng, shape, density):
    return np.where(rng.random(shape) < density, rng.standard_normal(shape), 0.0).astype(np.float32)


@pytest.mark.parametrize("case", range(12))
def test_masked_work_equals_a_brute_force_count(case):
    rng = np.random.default_rng(case)
    k, n = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    rows, cols = int(rng.integers(1, k + 1)), int(rng.integers(1, n + 1))   # may leave empty tiles
    samples, tokens = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = _sparse(rng, (samples, tokens, k), rng.random())
    dy = _sparse(rng, (samples, tokens, n), rng.random())
    mask = rng.random((k, n)) < rng.random()
    got = masked_work(np, x, dy, mask_tiles(np, mask, rows, cols), chunk=int(rng.integers(1, 200)))
    want = brute_force(x, dy, mask, rows, cols)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    everything = brute_force(np.ones((1, 1, k)), np.ones((1, 1, n)), mask, rows, cols)["dw"][0]
    np.testing.assert_array_equal(mask_tiles(np, mask, rows, cols).kept, everything)


def test_full_mask_costs_what_the_unmasked_harvest_costs():
    rng = np.random.default_rng(3)
    k, n, rows, cols, samples, tokens = 37, 29, 5, 4, 3, 4
    x, dy = _sparse(rng, (samples, tokens, k), 0.4), _sparse(rng, (samples, tokens, n), 0.6)
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    per_row = np.add.reduceat(x != 0, np.arange(rows) * tk[0], axis=2).astype(float)
    per_col = np.add.reduceat(dy != 0, np.arange(cols) * tn[0], axis=2).astype(float)
    nx, ndy = per_row.sum(axis=1), per_col.sum(axis=1)
    pairs = np.einsum("str,stc->src", per_row, per_col)
    work = masked_work(np, x, dy, mask_tiles(np, np.ones((k, n), bool), rows, cols))
    plain = cost.matmul_components(nx, ndy, tk, tn, T, True, tokens=tokens, pairs=pairs)
    masked = cost.matmul_components(nx, ndy, tk, tn, T, True, tokens=tokens, work=work)
    for key in ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link"):
        np.testing.assert_array_equal(*np.broadcast_arrays(masked[key], plain[key]), err_msg=key)
    assert masked["macs"] == plain["macs"]


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


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_measured_cycles_and_macs_follow_the_kept_weights(sparsity):
    ws = WeightSparsity.from_dict({"sparsity": sparsity, "seed": 1})
    trainer, x, y = _trainer(ws)
    env, masks = _env(trainer, x, y), trainer.weight_masks
    timing = measure_step(np, trainer.plan, env, True, weight_masks=masks)
    for kt, kernel in zip(timing.kernels, trainer.plan.kernels):
        if kernel.kind != "matmul":
            continue
        fqn = matmul_weights(trainer.plan)[kernel.name][0]
        mask = masks[fqn].T                         # nn.Linear stores (out, in); the nest is (in, out)
        m = trainer.plan.mapping[kernel.name]
        xs = env[kernel.stream["x"]].reshape(kernel.samples, 1, -1)
        dys = env[kernel.stream["dy"]].reshape(kernel.samples, 1, -1)
        want = brute_force(xs, dys, mask, m.rows, m.cols)
        simd = T.simd
        np.testing.assert_array_equal(kt.components["fwd_compute"], np.ceil(want["fwd"] / simd))
        bwd = np.ceil(want["dw"] / simd) + (np.ceil(want["dx"] / simd) if kernel.computes_dx else 0)
        np.testing.assert_array_equal(kt.components["bwd_compute"], bwd)
        total = want["fwd"].sum() + want["dw"].sum() + (want["dx"].sum() if kernel.computes_dx else 0)
        assert kt.macs == kt.useful_macs == total
        kept = mask_tiles(np, mask, m.rows, m.cols).kept
        assert kept.sum() == mask.sum()
        bias = -(-kernel.nest.extent("j") // m.cols)
        assert kt.update_cycles == cost.update_cycles(kernel, m, T, trainer.plan.optimizer,
                                                      weights=kept + bias).max()
        assert kt.dense_update_cycles == cost.update_cycles(kernel, m, T, trainer.plan.optimizer)
        flight = in_flight(trainer.plan.kernels.index(kernel), len(trainer.plan.kernels), kernel.samples)
        assert kt.memory_per_core == cost.memory_per_core(kernel, m, T, trainer.plan.optimizer, flight,
                                                          weight_nnz=int(kept.max()))


def test_sparser_weights_cost_fewer_cycles_and_less_memory():
    sparsities = [0.0, 0.5, 0.9]
    results = []
    for s in sparsities:
        trainer, x, y = _trainer(WeightSparsity.from_dict({"sparsity": s, "seed": 2}), hidden=64, batch=32)
        timing = measure_step(np, trainer.plan, _env(trainer, x, y), True, weight_masks=trainer.weight_masks)
        results.append({k.name: k for k in timing.kernels})
    dense = trainer.plan.memory_per_core()
    for name in ("fc1", "fc2", "fc3"):
        computes = [r[name].components["fwd_compute"].sum() + r[name].components["bwd_compute"].sum()
                    for r in results]
        assert computes[0] > computes[1] > computes[2], name
        assert results[0][name].macs > results[1][name].macs > results[2][name].macs
        assert results[2][name].memory_per_core < dense[name] < results[0][name].memory_per_core


def test_without_masks_or_harvest_the_dense_path_is_unchanged():
    ws = WeightSparsity.from_dict({"sparsity": 0.8, "seed": 3})
    trainer, x, y = _trainer(ws)
    env = _env(trainer, x, y)
    plain = measure_step(np, trainer.plan, env, True)
    for masks in (None, {}):
        again = measure_step(np, trainer.plan, env, True, weight_masks=masks)
        assert again.cycles == plain.cycles and again.dense_cycles == plain.dense_cycles
    off = measure_step(np, trainer.plan, env, False, weight_masks=trainer.weight_masks)
    base = measure_step(np, trainer.plan, env, False)
    assert off.cycles == base.cycles == base.dense_cycles == off.dense_cycles
    for a, b in zip(off.kernels, base.kernels):
        assert a.macs == b.macs == b.dense_macs and a.update_cycles == b.update_cycles
        assert a.memory_per_core is None
    masked = measure_step(np, trainer.plan, env, True, weight_masks=trainer.weight_masks)
    assert masked.dense_cycles == plain.dense_cycles           # the baseline ignores the masks
    assert masked.cycles <= plain.cycles
    assert sum(k.macs for k in masked.kernels) < sum(k.macs for k in plain.kernels)


def test_trainer_steps_time_with_the_masks_they_ran_with():
    ws = WeightSparsity.from_dict({"algorithm": "set", "sparsity": 0.7, "update": {"freq": 1}})
    trainer, x, y = _trainer(ws)
    before = trainer.weight_masks
    env = _env(trainer, x, y)
    expected = measure_step(np, trainer.plan, env, True, weight_masks=before)
    _, timing = trainer.step(x, y)
    assert any((trainer.weight_masks[n] != before[n]).any() for n in before)   # the mask moved
    assert [k.macs for k in timing.kernels] == [k.macs for k in expected.kernels]
    assert timing.cycles == expected.cycles


def test_cached_mask_tiles_follow_the_mask_passed():
    trainer, x, y = _trainer(WeightSparsity.from_dict({"sparsity": 0.5, "seed": 4}))
    env = _env(trainer, x, y)
    first = trainer.weight_masks
    other = {n: ~m for n, m in first.items()}              # the complement: a different mask
    a = measure_step(np, trainer.plan, env, True, weight_masks=first)
    b = measure_step(np, trainer.plan, env, True, weight_masks=other)
    assert [k.macs for k in a.kernels] != [k.macs for k in b.kernels]
    fresh = {n: m.copy() for n, m in other.items()}
    again = measure_step(np, trainer.plan, env, True, weight_masks=fresh)
    assert [k.macs for k in again.kernels] == [k.macs for k in b.kernels]
    assert [k.macs for k in measure_step(np, trainer.plan, env, True, weight_masks=first).kernels] == \
        [k.macs for k in a.kernels]
