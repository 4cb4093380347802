"""simulator.weight_sparsity: config validation, schedules, the four mask algorithms, and the
Trainer keeping masked weights and optimizer state at exactly zero."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from compiler import ConfigError, compile_plan, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.training import Trainer
from simulator.weight_sparsity import Schedule, WeightSparsity, WeightSparsityEngine, keep_count
import wsebench as wb

SHAPES = {"embed.weight": (50, 16), "pos.weight": (8, 16), "layers.0.ln1.weight": (16,),
          "layers.0.attn.q.weight": (16, 16), "layers.0.attn.q.bias": (16,),
          "layers.0.norm.weight": (16, 16), "head.weight": (4, 16), "head.bias": (4,)}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("config, message", [
    ({"algorithm": "static", "sparsity": -0.1}, r"sparsity must be a number in \[0, 1\)"),
    ({"algorithm": "static", "sparsity": 1.0}, r"sparsity must be a number in \[0, 1\)"),
    ({"algorithm": "static", "sparsity": True}, r"sparsity must be a number"),
    ({"algorithm": "static", "sparsity": "half"}, r"sparsity must be a number"),
    ({"algorithm": "static"}, r"needs 'sparsity'"),
    ({"algorithm": "lottery", "sparsity": 0.5}, r"unknown weight sparsity algorithm 'lottery'.*rigl"),
    ({"algorithm": "static", "sparsity": 0.5, "init_method": "normal"}, r"unknown init_method 'normal'"),
    ({"algorithm": "static", "sparsity": 0.5, "sparsty": 0.5}, r"unknown weight sparsity key.*sparsty"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": {"freq": 0}}, r"update 'freq' must be an integer >= 1"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": {"freq": 1.5}}, r"update 'freq'"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": {"start": -1}}, r"update 'start' must be an integer >= 0"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": {"start": 5, "stop": 5}}, r"'stop' \(5\) must be after 'start' \(5\)"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": {"every": 5}}, r"unknown update key.*every"),
    ({"algorithm": "gmp", "sparsity": 0.5, "update": 3}, r"update must be a dict"),
    ({"algorithm": "static", "sparsity": 0.5, "update": {"freq": 2}}, r"'static' never updates"),
    ({"algorithm": "rigl", "sparsity": 0.5, "update": {"freq": 2}}, r"rigl .* give update \{'stop'"),
    ({"algorithm": "set", "sparsity": {"type": "linear", "final": 0.5, "end": 9}}, r"schedule needs algorithm 'gmp'"),
    ({"algorithm": "gmp", "sparsity": {"type": "exp", "final": 0.5, "end": 9}}, r"unknown sparsity schedule type 'exp'"),
    ({"algorithm": "gmp", "sparsity": {"type": "cubic", "end": 9}}, r"needs 'final'"),
    ({"algorithm": "gmp", "sparsity": {"type": "cubic", "final": 0.5}}, r"needs 'end'"),
    ({"algorithm": "gmp", "sparsity": {"type": "cubic", "final": 0.5, "begin": 9, "end": 9}}, r"'end' \(9\) must be after 'begin' \(9\)"),
    ({"algorithm": "gmp", "sparsity": {"type": "cubic", "final": 1.2, "end": 9}}, r"'final' must be a number in \[0, 1\)"),
    ({"algorithm": "gmp", "sparsity": {"type": "cubic", "init": -0.2, "final": 0.5, "end": 9}}, r"'init' must be"),
    ({"algorithm": "gmp", "sparsity": {"type": "constant", "final": 0.5, "end": 9}}, r"takes only 'final'"),
    ({"algorithm": "gmp", "sparsity": {"type": "linear", "final": 0.5, "end": 9, "step": 1}}, r"unknown sparsity schedule key.*step"),
    ({"algorithm": "gmp", "sparsity": 0.5, "drop_fraction": 0.2}, r"drop_fraction applies to set and rigl only"),
    ({"algorithm": "set", "sparsity": 0.5, "drop_fraction": 0.0}, r"drop_fraction must be a number in \(0, 1\]"),
    ({"algorithm": "static", "sparsity": 0.5, "param_filter": []}, r"param_filter must be a glob"),
    ({"algorithm": "static", "sparsity": 0.5, "param_filter": 3}, r"param_filter must be a glob"),
    ({"algorithm": "static", "sparsity": 0.5, "seed": -1}, r"'seed' must be an integer >= 0"),
])
def test_bad_configs_are_refused_with_a_clear_message(config, message):
    with pytest.raises(ConfigError, match=message):
        WeightSparsity.from_dict(config)


def test_not_a_dict_is_refused():
    with pytest.raises(ConfigError, match="weight sparsity must be a dict"):
        WeightSparsity.from_dict([("algorithm", "static")])


def test_filter_matching_no_parameter_names_the_glob_and_the_parameters():
    ws = WeightSparsity.from_dict({"sparsity": 0.5, "param_filter": ["head.weight", "fc*.weight"]})
    with pytest.raises(ConfigError, match=r"'fc\*.weight' matches no parameter.*head.bias"):
        ws.select(SHAPES)


def test_default_filter_skips_embeddings_norms_and_vectors():
    ws = WeightSparsity.from_dict({"sparsity": 0.5})
    assert ws.select(SHAPES) == ["layers.0.attn.q.weight", "head.weight"]
    # knowing which parameters feed a matmul narrows it further
    assert ws.select(SHAPES, maskable={"head.weight"}) == ["head.weight"]
    with pytest.raises(ConfigError, match="no parameter is a multi-dimensional"):
        ws.select({"embed.weight": (5, 4), "b": (3,)})


def test_globs_select_in_parameter_order():
    ws = WeightSparsity.from_dict({"sparsity": 0.5, "param_filter": "*.weight"})
    assert ws.select(SHAPES) == [n for n in SHAPES if n.endswith(".weight")]


@pytest.mark.parametrize("config", [
    {"algorithm": "static", "sparsity": 0.25, "init_method": "topk", "param_filter": ["a*", "b"], "seed": 3},
    {"algorithm": "gmp", "sparsity": {"type": "cubic", "init": 0.1, "final": 0.9, "begin": 2, "end": 20},
     "update": {"freq": 2, "start": 2, "stop": 30}},
    {"algorithm": "set", "sparsity": 0.5, "update": {"freq": 3}, "drop_fraction": 0.2},
    {"algorithm": "rigl", "sparsity": 0.8, "update": {"freq": 3, "start": 0, "stop": 9}},
])
def test_to_dict_round_trips(config):
    ws = WeightSparsity.from_dict(config)
    assert WeightSparsity.from_dict(ws.to_dict()) == ws


# ------------------------------------------------------------------ schedules


@pytest.mark.parametrize("kind", ["linear", "cosine", "cubic"])
def test_schedules_run_from_init_to_final_monotonically(kind):
    s = Schedule.parse({"type": kind, "init": 0.1, "final": 0.8, "begin": 4, "end": 14})
    values = [s.at(t) for t in range(0, 20)]
    assert values[:5] == [pytest.approx(0.1)] * 5 and values[14:] == [pytest.approx(0.8)] * 6
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_schedule_formulas():
    lin = Schedule.parse({"type": "linear", "final": 0.8, "begin": 0, "end": 10})
    cos = Schedule.parse({"type": "cosine", "final": 0.8, "begin": 0, "end": 10})
    cub = Schedule.parse({"type": "cubic", "final": 0.8, "begin": 0, "end": 10})
    assert lin.at(5) == pytest.approx(0.4)
    assert cos.at(5) == pytest.approx(0.4)                      # cosine's midpoint is the mean
    assert cub.at(5) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)     # Zhu & Gupta: s_f (1 - (1 - p)^3)
    assert Schedule.parse(0.3).at(1000) == 0.3


# ------------------------------------------------------------------ the engine


def _params(rng, shapes=((40, 30), (25, 40))):
    return {f"l{i}.weight": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}


def _states(params):
    return {n: {"exp_avg": np.ones_like(p), "exp_avg_sq": np.ones_like(p)} for n, p in params.items()}


def _train_engine(config, steps=30, seed=0):
    """Drive an engine with random updates (a stand-in optimizer) and random dense gradients."""
    rng = np.random.default_rng(seed)
    params = _params(rng)
    engine = WeightSparsityEngine(WeightSparsity.from_dict(config), np, params)
    states = _states(params)
    engine.apply(params, states)
    history = []
    for step in range(1, steps + 1):
        grads = {n: rng.standard_normal(p.shape).astype(np.float32) for n, p in params.items()}
        for n in params:
            params[n] = params[n] - 0.1 * grads[n]      # dense update: masked positions move too
            states[n] = {k: v + 1 for k, v in states[n].items()}
        before = dict(engine.masks)
        snapshot = {n: p.copy() for n, p in params.items()}
        changed = engine.after_update(step, params, states, grads)
        history.append((step, changed, before, snapshot, grads))
        for n in engine.names:
            keep = engine.masks[n]
            assert (params[n][~keep] == 0).all(), (step, n)
            for v in states[n].values():
                assert (v[~keep] == 0).all(), (step, n)
    return engine, params, states, history


@pytest.mark.parametrize("config", [
    {"algorithm": "static", "sparsity": 0.7},
    {"algorithm": "static", "sparsity": 0.7, "init_method": "topk"},
    {"algorithm": "gmp", "sparsity": {"type": "cubic", "final": 0.9, "begin": 1, "end": 20},
     "update": {"freq": 2}},
    {"algorithm": "set", "sparsity": 0.7, "update": {"freq": 3}},
    {"algorithm": "rigl", "sparsity": 0.7, "update": {"freq": 3, "stop": 25}},
])
def test_each_algorithm_keeps_the_target_sparsity(config):
    engine, params, _, _ = _train_engine(config)
    for name, d in engine.density(params).items():
        assert abs(d["actual"] - d["target"]) <= 0.01, name
        assert d["nonzero"] <= d["actual"]
        target = config["sparsity"] if isinstance(config["sparsity"], float) else 0.9
        assert d["target"] == pytest.approx(1 - target)
        assert int(engine.masks[name].sum()) == keep_count(params[name].size, target)


def test_topk_init_keeps_the_largest_initial_magnitudes():
    rng = np.random.default_rng(1)
    params = _params(rng)
    engine = WeightSparsityEngine(WeightSparsity.from_dict({"sparsity": 0.6, "init_method": "topk"}), np, params)
    for n, keep in engine.masks.items():
        a = np.abs(params[n])
        assert a[keep].min() > a[~keep].max()


def test_random_init_is_seeded_and_uniform():
    rng = np.random.default_rng(2)
    params = _params(rng)
    one = WeightSparsityEngine(WeightSparsity.from_dict({"sparsity": 0.5, "seed": 4}), np, params)
    two = WeightSparsityEngine(WeightSparsity.from_dict({"sparsity": 0.5, "seed": 4}), np, params)
    other = WeightSparsityEngine(WeightSparsity.from_dict({"sparsity": 0.5, "seed": 5}), np, params)
    for n in params:
        np.testing.assert_array_equal(one.masks[n], two.masks[n])
        assert (one.masks[n] != other.masks[n]).any()
        assert 0.3 < one.masks[n].mean(axis=0).mean() < 0.7


def test_gmp_prunes_smallest_magnitudes_and_never_regrows():
    config = {"algorithm": "gmp", "sparsity": {"type": "linear", "final": 0.8, "begin": 0, "end": 12},
              "update": {"freq": 3, "start": 3, "stop": 13}}
    engine, _, _, history = _train_engine(config, steps=20)
    cfg = WeightSparsity.from_dict(config)
    for step, changed, before, snapshot, _ in history:
        assert changed == cfg.update.due(step)
        after = engine_masks_at(history, step, engine)
        for n in before:
            assert not (after[n] & ~before[n]).any()          # pruned stay pruned
            if changed:
                assert after[n].sum() == keep_count(after[n].size, cfg.sparsity.at(step))
                dropped = before[n] & ~after[n]
                if dropped.any():
                    a = np.abs(snapshot[n])
                    assert a[dropped].max() <= a[after[n]].min()


def engine_masks_at(history, step, engine):
    """The masks after `step`: the next step's `before`, or the engine's current ones."""
    later = [h for h in history if h[0] == step + 1]
    return later[0][2] if later else engine.masks


@pytest.mark.parametrize("algorithm", ["set", "rigl"])
def test_set_and_rigl_drop_by_magnitude_and_regrow_at_zero(algorithm):
    config = {"algorithm": algorithm, "sparsity": 0.6, "update": {"freq": 2, "stop": 21}}
    engine, _, _, history = _train_engine(config, steps=24)
    cfg = WeightSparsity.from_dict(config)
    updates = 0
    for step, changed, before, snapshot, grads in history:
        after = engine_masks_at(history, step, engine)
        if not changed:
            assert all((after[n] == before[n]).all() for n in before)
            continue
        updates += 1
        fraction = cfg.drop_fraction
        if algorithm == "rigl":
            fraction *= 0.5 * (1 + math.cos(math.pi * step / cfg.update.stop))
        for n in before:
            active = int(before[n].sum())
            drop = int(round(fraction * active))
            assert after[n].sum() == active                     # as many regrown as dropped
            a = np.abs(snapshot[n])
            ranked = np.sort(a[before[n]])
            survivors = before[n] & (a > ranked[drop - 1]) if drop else before[n]
            assert survivors.sum() == active - drop
            assert (after[n] >= survivors).all()               # the largest magnitudes survive
            grown = after[n] & ~survivors
            assert grown.sum() == drop
            if algorithm == "rigl":                            # grown where |grad| is largest
                g = np.abs(grads[n])
                if drop:
                    assert g[grown].min() >= g[~survivors & ~grown].max()
    assert updates == 10


def test_regrown_weights_start_at_zero_with_zero_state():
    rng = np.random.default_rng(3)
    params = _params(rng)
    engine = WeightSparsityEngine(WeightSparsity.from_dict(
        {"algorithm": "rigl", "sparsity": 0.5, "update": {"freq": 1, "stop": 100}}), np, params)
    states = _states(params)
    engine.apply(params, states)
    before = dict(engine.masks)
    grads = {n: rng.standard_normal(p.shape).astype(np.float32) for n, p in params.items()}
    assert engine.after_update(1, params, states, grads)
    for n in params:
        grown = engine.masks[n] & ~engine.survivors[n]
        assert grown.any() and (grown & ~before[n]).any()
        assert (params[n][grown] == 0).all()
        assert all((v[grown] == 0).all() for v in states[n].values())
        assert (params[n][engine.survivors[n]] != 0).all()


def test_state_and_restore_resume_identically():
    config = {"algorithm": "set", "sparsity": 0.5, "update": {"freq": 2}}
    rng = np.random.default_rng(9)
    params = _params(rng)
    a = WeightSparsityEngine(WeightSparsity.from_dict(config), np, params)
    pa = {n: v.copy() for n, v in params.items()}
    a.after_update(1, pa, {}, {})
    meta, masks = a.state()
    b = WeightSparsityEngine(WeightSparsity.from_dict(meta["config"]), np, params)
    b.restore(meta, masks)
    pb = {n: v.copy() for n, v in pa.items()}
    for step in (2, 3, 4):
        a.after_update(step, pa, {}, {})
        b.after_update(step, pb, {}, {})
    for n in params:
        np.testing.assert_array_equal(a.masks[n], b.masks[n])
        np.testing.assert_array_equal(pa[n], pb[n])


# ------------------------------------------------------------------ in the Trainer


def make_trainer(model, optimizer, batch, weight_sparsity, harvest=True):
    graph = run_pipeline(capture(model, nn.CrossEntropyLoss(), batch))
    plan = compile_plan(graph, wafer("classroom"), optimizer_spec(optimizer))
    params = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    return Trainer(plan, params, {}, get_backend("numpy"), harvest=harvest,
                   weight_sparsity=weight_sparsity)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("algorithm", ["static", "gmp", "set", "rigl"])
def test_trainer_keeps_masked_weights_and_state_exactly_zero(algorithm, opt):
    model = wb.models.mlp(10, 24, 4, depth=3, activation="relu")
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=0.01)}[opt]
    x, y = wb.data.blobs(16, 10, 4, seed=0)
    config = {"algorithm": algorithm, "sparsity": 0.75}
    if algorithm != "static":
        config["update"] = {"freq": 2, "stop": 9} if algorithm == "rigl" else {"freq": 2}
    if algorithm == "gmp":
        config["sparsity"] = {"type": "cubic", "final": 0.75, "begin": 0, "end": 6}
    trainer = make_trainer(model, make(model.parameters()), (x, y), WeightSparsity.from_dict(config))
    assert set(trainer.weight_masks) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for fqn, keep in trainer.weight_masks.items():
        assert (trainer.params[fqn][~keep] == 0).all()
    for _ in range(10):
        trainer.step(x.numpy(), y.numpy())
        for fqn, keep in trainer.weight_masks.items():
            assert keep.shape == trainer.params[fqn].shape and keep.dtype == bool
            assert (trainer.params[fqn][~keep] == 0).all()
            for slot, value in trainer.opt_state[fqn].items():
                assert value is not None and (value[~keep] == 0).all(), slot
    for fqn, d in trainer.weight_density().items():
        assert d["target"] == pytest.approx(0.25) and abs(d["actual"] - 0.25) <= 0.01, fqn
        assert 0 < d["nonzero"] <= d["actual"]


def test_trainer_without_weight_sparsity_has_no_masks():
    model = wb.models.mlp(10, 24, 4, depth=2)
    x, y = wb.data.blobs(16, 10, 4, seed=0)
    trainer = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), None)
    assert trainer.weight_masks == {} and trainer.weight_density() == {}
    assert trainer.weight_sparsity_state() is None
    with pytest.raises(ValueError, match="weight_sparsity_state needs weight_sparsity"):
        Trainer(trainer.plan, trainer.state_numpy(), {}, get_backend("numpy"),
                weight_sparsity_state=({}, {}))


def test_trainer_state_round_trip_resumes_identically():
    model = wb.models.mlp(10, 24, 4, depth=3, activation="relu")
    x, y = wb.data.blobs(16, 10, 4, seed=0)
    ws = WeightSparsity.from_dict({"algorithm": "set", "sparsity": 0.5, "update": {"freq": 2}})
    a = make_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), ws)
    for _ in range(3):
        a.step(x.numpy(), y.numpy())
    meta, masks = a.weight_sparsity_state()
    meta = json.loads(json.dumps(meta))                   # a checkpoint stores it as JSON
    params = {k: v.copy() for k, v in a.params.items()}
    b = Trainer(a.plan, params, {}, get_backend("numpy"),
                weight_sparsity=WeightSparsity.from_dict(meta["config"]),
                weight_sparsity_state=(meta, masks))
    for fqn in a.params:                                  # construction kept every saved weight
        np.testing.assert_array_equal(a.params[fqn], b.params[fqn])
    b.step_count = a.step_count
    for _ in range(4):
        a.step(x.numpy(), y.numpy())
        b.step(x.numpy(), y.numpy())
    for fqn in a.weight_masks:
        np.testing.assert_array_equal(a.weight_masks[fqn], b.weight_masks[fqn])
        np.testing.assert_array_equal(a.params[fqn], b.params[fqn])
