"""wb.Sparsity: parsing and errors, applying it to a model, schedules, the report's densities,
and harvesting of induced zeros in the measured timing (checked against brute-force counts)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import ConfigError
from compiler.kernels.matmul import MATMUL, computes_dx
from simulator.measure import Runs, measure_step, variants
from wsebench import sparsity as sp


def _mlp(activation="relu", hidden=40, depth=3, seed=0, **kw):
    return wb.models.mlp(20, hidden, 6, depth=depth, activation=activation, seed=seed, **kw)


def _data(batch=16, seed=0):
    return wb.data.blobs(batch, 20, 6, seed=seed)


def _compile(model, sparsity, batch=16, **kw):
    x, y = _data(batch)
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), sparsity=sparsity, **kw)


# ---- parsing ----

def test_parse_dict_yaml_string_file_and_instance_agree(tmp_path):
    spec = {"harvest": True, "relu": ["act*"],
            "drop": [{"targets": ["fc1"], "fraction": 0.5, "where": "both",
                      "schedule": "linear", "initial": 0.1, "steps": 10}]}
    text = ("relu: [act*]\ndrop:\n  - targets: [fc1]\n    fraction: 0.5\n    where: both\n"
            "    schedule: linear\n    initial: 0.1\n    steps: 10\n")
    path = tmp_path / "sparsity.yaml"
    path.write_text(text)
    parsed = sp.Sparsity.parse(spec)
    assert sp.Sparsity.parse(text) == parsed == sp.Sparsity.parse(path) == sp.Sparsity.parse(str(path))
    assert sp.Sparsity.parse(parsed) is parsed
    assert parsed.drop[0].targets == ("fc1",) and parsed.drop[0].gradient == "masked"
    assert sp.Sparsity.parse(parsed.to_dict()) == parsed
    assert wb.Sparsity is sp.Sparsity and sp.Sparsity.parse(None) == wb.Sparsity()


def test_a_binary_or_duplicate_key_sparsity_file_is_a_config_error(tmp_path):
    from compiler import ConfigError
    binary = tmp_path / "sparsity.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="sparsity file .* is not UTF-8 text"):
        sp.Sparsity.parse(binary)
    twice = tmp_path / "twice.yaml"
    twice.write_text("relu: [act*]\nrelu: [fc*]\n")
    with pytest.raises(ConfigError, match="duplicate key 'relu'"):
        sp.Sparsity.parse(twice)
    with pytest.raises(ConfigError, match="duplicate key 'harvest'"):
        sp.Sparsity.parse("harvest: true\nharvest: false\n")


@pytest.mark.parametrize("spec, words", [
    ({"drop": [{"targets": "fc1", "fraction": 1.0}]}, ["fraction", "[0, 1)"]),
    ({"drop": [{"targets": "fc1", "fraction": -0.1}]}, ["fraction", "[0, 1)"]),
    ({"drop": [{"targets": "fc1", "threshold": -1}]}, ["threshold", ">= 0"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "threshold": 0.1}]}, ["exactly one"]),
    ({"drop": [{"targets": "fc1"}]}, ["exactly one"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "schedule": "exp"}]}, ["schedule", "linear"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "where": "sideways"}]}, ["where", "both"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "gradient": "stop"}]}, ["gradient", "masked"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "speed": 2}]}, ["speed", "allowed"]),
    ({"drop": [{"fraction": 0.5}]}, ["targets"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "schedule": "linear"}]}, ["steps >= 1"]),
    ({"drop": [{"targets": "fc1", "fraction": 0.5, "steps": 3}]}, ["linear or cosine"]),
    ({"relux": ["a"]}, ["relux", "allowed"]),
    ({"harvest": "yes"}, ["harvest", "true or false"]),
    ({"weights": {"algo": "static"}}, ["algo", "allowed"]),
    ("drop: [unclosed", ["not valid YAML"]),
    (42, ["sparsity must be"]),
])
def test_bad_values_are_config_errors_naming_the_problem(spec, words):
    with pytest.raises(ConfigError) as err:
        sp.Sparsity.parse(spec)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_glob_that_matches_nothing_names_the_modules_that_exist():
    with pytest.raises(ConfigError, match="'lin\\*' matches no module.*fc1, act1"):
        sp.apply(_mlp(), {"drop": [{"targets": ["lin*"], "fraction": 0.5}]})
    with pytest.raises(ConfigError, match="relu glob 'gelu' matches no leaf module.*act1"):
        sp.apply(_mlp("gelu"), {"relu": ["gelu"]})


# ---- applying it to a model ----

def test_apply_swaps_activations_and_keeps_state_dict_keys():
    model = _mlp("gelu", dropout=0.2)
    out = sp.apply(model, {"relu": ["act*", "fc3"], "drop": [{"targets": ["fc1"], "fraction": 0.5}]})
    assert isinstance(model.act1, nn.GELU), "the original model is left as it was"
    assert isinstance(out.act1, nn.ReLU) and isinstance(out.act2, nn.ReLU)
    assert out.state_dict().keys() == model.state_dict().keys()
    x, _ = _data()
    with torch.no_grad():
        assert (out(x) >= 0).all(), "fc3 (a Linear) got a ReLU on its output"
        hidden = out.fc1(x)
    assert ((hidden != 0).sum(dim=1) == 20).all(), "top-k keeps 40 - floor(0.5 * 40) per sample"
    with pytest.raises(ConfigError, match="already has wsebench sparsity"):
        sp.apply(out, {"relu": ["act1"]})


def test_schedule_values_reach_the_wafer_each_step():
    rule = {"targets": ["act1"], "fraction": 0.8, "schedule": "linear", "initial": 0.2, "steps": 3}
    session = _compile(_mlp(), {"drop": [rule]})
    x, y = _data()
    seen = []
    for _ in range(5):
        session.step(x, y)
        seen.append(float(session._trainer.buffers["act1.wsebench_drop0"]))
    assert seen == pytest.approx([0.2 + 0.6 * min(s / 3, 1.0) for s in range(5)], abs=1e-15)
    cosine = sp.DropRule(targets=("a",), fraction=0.6, schedule="cosine", steps=4, start=2)
    assert [cosine.value_at(s) for s in (0, 2, 4, 6, 9)] == pytest.approx(
        [0.0, 0.0, 0.3, 0.6, 0.6])


def test_session_with_induced_sparsity_survives_a_checkpoint(tmp_path):
    spec = {"relu": ["act*"], "drop": [{"targets": ["act1"], "fraction": 0.5, "where": "both",
                                        "schedule": "linear", "steps": 6}]}
    x, y = _data()
    a = _compile(_mlp("gelu"), spec)
    a.step(x, y)
    a.save(tmp_path / "run.ckpt")
    b = wb.load_session(tmp_path / "run.ckpt")
    assert b.sparsity == a.sparsity
    for _ in range(3):
        ra, rb = a.step(x, y), b.step(x, y)
        assert (ra.loss, ra.cycles) == (rb.loss, rb.cycles)


# ---- report ----

def test_report_lists_target_and_actual_density_per_tensor():
    session = _compile(_mlp(hidden=50), {"drop": [{"targets": ["fc1"], "fraction": 0.6,
                                                   "where": "both"}]})
    x, y = _data()
    session.step(x, y)
    rep = session.report()
    kinds = {t["kind"] for t in rep.tensors}
    assert kinds == {"drop", "drop gradient", "relu"}
    drop = next(t for t in rep.tensors if t["kind"] == "drop")
    assert drop["module"] == "fc1" and drop["target_density"] == pytest.approx(0.4)
    assert drop["density"] == pytest.approx(20 / 50)     # 50 - floor(0.6 * 50) kept per sample
    relu = next(t for t in rep.tensors if t["kind"] == "relu")
    assert relu["target_density"] is None and 0 < relu["density"] <= drop["density"]
    fc2 = next(k for k in rep.kernels if k["name"] == "fc2")
    assert fc2["x_density"] == pytest.approx(relu["density"])
    assert fc2["harvested_macs"] > 0 and fc2["harvested_fraction"] > 0.3
    assert fc2["cycles"] <= fc2["dense_cycles"]
    assert rep.summary["drop_density"] == pytest.approx(drop["density"])


def test_compare_against_a_dense_run():
    x, y = _data(64)
    dense = _compile(_mlp("gelu", hidden=64), None, batch=64)
    sparse = _compile(_mlp("gelu", hidden=64), {"relu": ["act*"]}, batch=64)
    for _ in range(3):
        dense.step(x, y)
        sparse.step(x, y)
    c = sp.compare(sparse, dense, x, y)
    assert c.speedup == pytest.approx(np.mean([r.cycles for r in dense.history]) /
                                      np.mean([r.cycles for r in sparse.history]))
    assert c.speedup > 1.0
    assert c.samples_per_s / c.dense_samples_per_s == pytest.approx(c.speedup)
    assert c.accuracy == sparse.accuracy(x, y) and 0 <= c.dense_accuracy <= 1
    assert c.accuracy_change == pytest.approx(c.accuracy - c.dense_accuracy)
    assert "speedup" in c._repr_html_()


# ---- harvesting induced zeros ----

def _cycles(fraction, harvest=True):
    """One step at drop `fraction`; every fraction on the same (dense-sized) plan, so each
    kernel's cycles follow its own zeros only."""
    model = _mlp(hidden=128, seed=4)
    s = _compile(model, {"harvest": harvest, "drop": [
        {"targets": ["act*"], "fraction": fraction, "where": "both"}]}, batch=32, densities="dense")
    x, y = _data(32)
    r = s.step(x, y)
    return r, {k["name"]: k["cycles"] for k in s.report().kernels}


def test_measured_cycles_fall_as_the_drop_fraction_rises():
    runs = [_cycles(f) for f in (0.0, 0.6, 0.9)]
    for name in ("fc1", "fc2", "fc3"):      # fc1 by its sparser dY, fc2 and fc3 by x and dY
        kernel = [k[name] for _, k in runs]
        assert kernel[0] >= kernel[1] >= kernel[2] and kernel[0] > kernel[2], (name, kernel)
    fc2 = [k["fc2"] for _, k in runs]       # x and dY both come out of a drop
    assert fc2[0] > fc2[1] > fc2[2], fc2
    steps = [r.cycles for r, _ in runs]
    assert steps[0] >= steps[1] >= steps[2] and steps[0] > steps[2]
    off, kernels_off = _cycles(0.9, harvest=False)
    assert off.cycles == off.dense_cycles == runs[2][0].dense_cycles, \
        "harvest=False gives the dense baseline of the same run"
    assert all(kernels_off[n] > runs[2][1][n] for n in ("fc1", "fc2", "fc3"))


def _tile_counts(values: np.ndarray, parts: int) -> np.ndarray:
    """(samples, parts) non-zeros per contiguous tile, by explicit loops."""
    samples, width = values.shape
    step = math.ceil(width / parts)
    out = np.zeros((samples, parts))
    for s in range(samples):
        for p in range(parts):
            out[s, p] = sum(1 for v in values[s, p * step:(p + 1) * step] if v != 0)
    return out


def test_matmul_cycles_follow_brute_force_nonzero_counts():
    """Per sample and core: forward compute follows nnz(x) of the core's row tile, dX follows
    nnz(dY) of its column tile, dW both (DESIGN.md, "Cost model")."""
    spec = {"drop": [{"targets": ["act1", "act2"], "fraction": 0.7, "where": "both"}]}
    session = _compile(_mlp(hidden=40), spec,
                       mapping={"fc2": wb.Mapping(3, 4), "fc1": wb.Mapping(2, 3)})
    trainer, plan = session._trainer, session.plan
    x, y = _data()
    env = trainer.executor.run(trainer._environment(x.numpy(), y.numpy(), []))
    timing = measure_step(trainer.context, np, env, harvest=True)
    step = session.step(x, y)
    assert step.cycles == timing.cycles, "the step is timed on these same tensors"
    t = plan.target
    for kt in timing.kernels:
        kernel = plan.kernel[kt.name]
        if kernel.kind != "matmul":
            continue
        m = plan.mapping[kt.name]
        K, N = kernel.nest.extent("i"), kernel.nest.extent("j")
        tk = np.diff(np.minimum(np.arange(m.rows + 1) * math.ceil(K / m.rows), K))
        tn = np.diff(np.minimum(np.arange(m.cols + 1) * math.ceil(N / m.cols), N))
        nx = _tile_counts(env[kernel.stream["x"]], m.rows)[:, :, None]
        ndy = _tile_counts(env[kernel.stream["dy"]], m.cols)[:, None, :]
        runs = Runs(np, variants(True, False), None, {})
        counts = MATMUL.measured_counts(kernel, m, env, runs)
        c = MATMUL.components(kernel, counts.values, m, t)
        fwd, bwd_got = c.fwd_compute[counts.rows[0], 0], c.bwd_compute[counts.rows[0], 0]
        # each streamed value one FMAC, rounded up to the SIMD width on its own
        assert np.array_equal(np.broadcast_to(fwd, nx.shape[:2] + (m.cols,)),
                              nx * np.ceil(tn / t.simd)), kt.name
        dx = computes_dx(kernel)
        bwd = ndy * np.ceil(nx / t.simd) + (ndy * np.ceil(tk[:, None] / t.simd) if dx else 0)
        assert np.array_equal(np.broadcast_to(bwd_got, bwd.shape), bwd), kt.name
        macs = nx.sum() * N + (ndy.sum() * K if dx else 0) + (nx * ndy).sum()
        assert kt.executed_macs == pytest.approx(macs), kt.name
        if kt.name in ("fc2", "fc3"):      # x is a dropped activation
            assert nx.sum() <= 0.3 * len(x) * K, "induced zeros reach the streamed x"
        if kt.name in ("fc1", "fc2"):      # dY is a dropped gradient
            assert ndy.sum() <= 0.3 * len(x) * N, "induced zeros reach the streamed dY"


def test_weight_sparsity_reaches_the_trainer_and_the_report():
    spec = {"weights": {"algorithm": "static", "sparsity": 0.5, "param_filter": "fc2.weight"}}
    session = _compile(_mlp(), spec)
    assert session._trainer.weight_sparsity is not None
    x, y = _data()
    session.step(x, y)
    rows = [t for t in session.report().tensors if t["kind"] == "weight"]
    assert [t["tensor"] for t in rows] == ["fc2.weight"]
    assert rows[0]["target_density"] == pytest.approx(0.5)
    assert rows[0]["density"] == pytest.approx(0.5) == rows[0]["mask_density"]
    weight = session.state_dict()["fc2.weight"]
    assert float((weight != 0).float().mean()) == pytest.approx(0.5)


@pytest.mark.parametrize("kind, value", [("topk", 0.0), ("topk", 0.3), ("topk", 0.7),
                                         ("topk", 0.99), ("threshold", 0.5), ("threshold", 0.0)])
@pytest.mark.parametrize("where", ["forward", "backward", "both", "grad"])
def test_simulator_drop_kernel_equals_the_torch_op(kind, value, where):
    from simulator.ops import run_op
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 8, generator=g)
    x[0, :3] = 0.0                                  # ties at zero, as after a ReLU
    x[1, 0, :4] = 0.25                              # ties away from zero
    v = torch.tensor(value, dtype=torch.float64)
    theirs = torch.ops.wsebench.drop_small(x, v, kind, where, "masked").numpy()
    ours = run_op(np, "wsebench.drop_small.default", (x.numpy(), v.numpy(), kind, where, "masked"))
    np.testing.assert_array_equal(ours, theirs)
    if kind == "topk" and where != "backward":
        kept = (theirs.reshape(6, -1) != 0).sum(axis=1)
        assert (kept <= 40 - math.floor(value * 40 + 1e-6)).all()
