"""wsebench.config: validation names the bad key and what is allowed; run trains for real."""
from __future__ import annotations

import json

import pytest
import torch

from compiler import ConfigError, Mapping
from wsebench import config as cfg
from wsebench import tasks

from run_configs import tiny_config, tiny_family_config


def _bad(path: list, value):
    c = cfg.default_config()
    node = c
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return c


@pytest.mark.parametrize("path, value, named", [
    (["model", "hidden"], -8, "model.hidden"),
    (["model", "depth"], 0, "model.depth"),
    (["model", "family"], "resnet", "model.family 'resnet'"),
    (["model", "activation"], "swish", "model.activation 'swish'"),
    (["model", "dropout"], 1.5, "model.dropout"),
    (["model", "widht"], 3, "widht"),
    (["data", "name"], "mnist", "data.name 'mnist'"),
    (["data", "samples"], -1, "data.samples"),
    (["data", "batch_size"], 0, "data.batch_size"),
    (["optimizer", "name"], "rmsprop", "optimizer.name 'rmsprop'"),
    (["optimizer", "lr"], -0.1, "optimizer.lr"),
    (["optimizer", "momentun"], 0.9, "momentun"),
    (["wafer"], "wse9", "'wse9'"),
    (["wafer"], {"preset": "classroom", "rowz": 4}, "rowz"),
    (["wafer"], {"preset": "classroom", "rows": -4}, "rows"),
    (["sparsity"], {"harvest": "yes"}, "harvest"),
    (["sparsity"], {"harvst": True}, "harvst"),
    (["sparsity"], {"drop": [{"targets": "fc1", "fraction": 1.5}]}, "drop fraction"),
    (["sparsity"], {"drop": [{"targets": "fc1", "fraction": 0.5, "where": "up"}]}, "drop where"),
    (["sparsity"], {"drop": [{"targets": "fc1", "fraction": 0.5, "schedule": "step"}]},
     "drop schedule"),
    (["sparsity"], {"relu": 3}, "sparsity relu"),
    (["sparsity"], {"weights": {"algorithm": "magic", "sparsity": 0.5}}, "algorithm 'magic'"),
    (["mapping"], {"fc*": {"rows": 4}}, "fc*"),
    (["mapping"], {"fc*": {"rows": 0, "cols": 2}}, "rows"),
    (["backend"], "tpu", "backend 'tpu'"),
    (["steps"], -5, "steps"),
    (["seed"], "zero", "seed"),
])
def test_validation_names_the_bad_key(path, value, named):
    with pytest.raises(ConfigError) as err:
        cfg.validate(_bad(path, value))
    assert named in str(err.value)


def test_unknown_top_level_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['epochs'\].*allowed: model"):
        cfg.validate({**cfg.default_config(), "epochs": 3})


def test_unknown_choices_say_what_is_allowed():
    with pytest.raises(ConfigError, match="allowed: sgd, adam, adamw"):
        cfg.validate(_bad(["optimizer", "name"], "lamb"))
    with pytest.raises(ConfigError, match="allowed: wse1, wse2, wse3, classroom"):
        cfg.validate(_bad(["wafer"], "cs9"))


def test_missing_top_level_keys_take_defaults():
    full = cfg.validate({"steps": 7})
    assert full["steps"] == 7
    assert full["model"] == cfg.default_config()["model"]


def test_default_config_is_valid_and_json_serializable():
    c = cfg.default_config()
    assert cfg.validate(c) == c
    assert json.loads(json.dumps(c)) == c


def test_mapping_dict_becomes_pinned_mappings():
    pins = cfg.make_mapping({"fc*": {"rows": 2, "cols": 3}, "fc1": {"rows": 1, "cols": 1, "replicas": 2}})
    assert pins == {"fc*": Mapping(2, 3), "fc1": Mapping(1, 1, 2)}


def test_wafer_overrides_apply():
    t = cfg.make_wafer({"preset": "classroom", "rows": 16, "sram_bytes": 1024})
    assert (t.rows, t.cols, t.sram_bytes) == (16, 32, 1024)


@pytest.mark.parametrize("suffix, text, problem", [
    (".json", "{not json", "not valid JSON"),
    (".yaml", "model: [unclosed", "not valid YAML"),
    (".yaml", "- 1\n- 2\n", "must hold a mapping"),
    (".toml", "steps = 3", "unknown extension"),
])
def test_load_config_errors_name_the_file(tmp_path, suffix, text, problem):
    path = tmp_path / f"exp{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        cfg.load_config(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config(tmp_path / "nope.json")


def test_load_config_yaml_and_json_agree(tmp_path):
    yaml = pytest.importorskip("yaml")
    c = tiny_config()
    (tmp_path / "a.json").write_text(json.dumps(c))
    (tmp_path / "a.yml").write_text(yaml.safe_dump(c))
    assert cfg.load_config(tmp_path / "a.json") == cfg.load_config(tmp_path / "a.yml") == c


def test_run_trains_and_reports(tiny_run):
    history, report = tiny_run["history"], tiny_run["report"]
    assert len(history) == tiny_run["config"]["steps"]
    assert report.core_utilization.shape == (32, 32)
    assert 0.0 <= tiny_run["accuracy"] <= 1.0
    assert tiny_run["final_loss"] == history[-1].loss


def test_run_accuracy_uses_the_wafer_trained_weights():
    """The accuracy must come from the session's weights: zeroing them changes it to chance."""
    result = cfg.run(tiny_config(steps=30, optimizer={"name": "sgd", "lr": 0.2, "momentum": 0.9}),
                     progress=False)
    parts = cfg.build(result["config"])         # same seed: the untrained model
    before = cfg.accuracy(parts["model"], parts["model"].state_dict(), parts["x"], parts["y"])
    after = result["accuracy"]
    assert after == cfg.accuracy(parts["model"], result["session"].state_dict(), parts["x"], parts["y"])
    assert after > before


def test_run_is_reproducible_from_the_seed():
    a = cfg.run(tiny_config(steps=3), progress=False)
    b = cfg.run(tiny_config(steps=3), progress=False)
    assert a["history"].losses == b["history"].losses


@pytest.mark.parametrize("strategy", ["auto", "model", "data"])
def test_mapping_strategies_pass_through(strategy):
    assert cfg.make_mapping(strategy) == strategy


def test_unknown_mapping_strategy_is_refused():
    with pytest.raises(ConfigError, match="'model', 'data'"):
        cfg.make_mapping("pipeline")


SPARSE_YAML = """
model: {family: mlp, in_features: 16, hidden: 24, depth: 3, out_features: 4, activation: gelu}
data: {name: spirals, samples: 256, batch_size: 32}
steps: 3
backend: numpy
sparsity:
  harvest: true
  relu: ["act*"]
  drop:
    - targets: ["act1"]
      fraction: 0.5
      where: both
      schedule: linear
      steps: 2
"""


def test_yaml_config_sparsity_section_runs(tmp_path):
    import torch.nn as nn
    path = tmp_path / "sparse.yaml"
    path.write_text(SPARSE_YAML)
    config = cfg.load_config(path)
    result = cfg.run(config, progress=False)
    session = result["session"]
    assert session.sparsity.relu == ("act*",) and session.sparsity.drop[0].where == "both"
    assert isinstance(session.model.act1, nn.ReLU)
    drops = [t for t in result["report"].tensors if t["kind"] == "drop"]
    assert drops and drops[0]["module"] == "act1" and drops[0]["target_density"] == 0.5
    parts = cfg.build(config)
    assert result["accuracy"] == session.accuracy(parts["x"], parts["y"])


def test_run_refuses_a_sparsity_glob_that_matches_no_module():
    config = tiny_config(sparsity={"drop": [{"targets": ["layer*"], "fraction": 0.5}]})
    with pytest.raises(ConfigError, match="'layer\\*' matches no module.*fc1"):
        cfg.run(config, progress=False)


# ---- model families, sequence tasks, and the combinations refused ----

def _family(family: str, **changes) -> dict:
    """A tiny config of `family` with dotted-key changes, e.g. {"model.heads": 3}."""
    c = tiny_family_config(family) if family != "mlp" else tiny_config()
    for key, value in changes.items():
        section, _, name = key.partition(".")
        c[section] = {**c[section], name: value} if name else value
    return c


@pytest.mark.parametrize("family", cfg.FAMILIES)
def test_each_family_has_a_valid_json_default(family):
    c = cfg.default_config(family)
    assert c["model"]["family"] == family
    assert cfg.validate(c) == c
    assert json.loads(json.dumps(c)) == c


@pytest.mark.parametrize("family, changes, words", [
    ("mlp", {"model.act": True}, "only family 'universal_transformer'"),
    ("transformer", {"model.max_steps": 4}, "dynamic-depth (ACT)"),
    ("transformer", {"model.d_model": 30, "model.heads": 4},
     "model.heads (4) must divide model.d_model (30)"),
    ("universal_transformer", {"model.heads": 3}, "model.heads (3) must divide"),
    ("mlp", {"data": {"name": "parity", "samples": 64, "batch_size": 8}},
     "model.family 'mlp' reads feature vectors, but data.name 'parity' is a token-sequence task"),
    ("transformer", {"data": {"name": "spirals", "samples": 64, "batch_size": 8}},
     "model.family 'transformer' reads token ids, but data.name 'spirals' holds feature vectors"),
    ("transformer", {"model.activation": "tanh"}, "model.activation 'tanh' is unknown for family"),
    ("transformer", {"model.attention": "flash"}, "model.attention 'flash'"),
    ("transformer", {"model.hidden": 8},
     "unknown model key(s) ['hidden'] for family 'transformer'"),
    ("transformer", {"model.classes": 9}, "model.classes (9) differs from the data's (4"),
    ("transformer", {"model.task": "classify"}, "model.task ('classify') differs"),
    ("transformer", {"model.max_len": 3}, "model.max_len (3) is smaller than the data needs (6"),
    ("universal_transformer", {"model.tau": -1.0}, "model.tau"),
    ("universal_transformer", {"model.act": "yes"}, "model.act must be true or false"),
    ("universal_transformer", {"model.max_steps": 0}, "model.max_steps"),
    ("transformer", {"data.symbols": 1}, "data (copy): symbols must be an integer >= 2"),
    ("universal_transformer", {"data.min_len": 9},
     "data (parity): max_len (8) must be >= min_len (9)"),
    ("universal_transformer", {"data.symbols": 4},
     "unknown data (parity) key(s) ['symbols']; allowed: samples, min_len, max_len, seed"),
    ("transformer", {"data": {"name": "longtail", "samples": 64, "batch_size": 8,
                              "distribution": "pareto"}}, "unknown length distribution 'pareto'"),
    ("transformer", {"sparsity": {"drop": [{"targets": ["layers.*.ffn.act"], "fraction": 1.0}]}},
     "drop fraction must be a number in [0, 1)"),
    ("transformer", {"sparsity": {"drop": [{"targets": ["layers.*.ffn.act"], "fraction": -0.1}]}},
     "drop fraction"),
    ("transformer", {"sparsity": {"weights": {"algorithm": "gmp", "sparsity": 1.0}}},
     "sparsity must be a number in [0, 1)"),
    ("transformer", {"sparsity": {"weights": {"algorithm": "lottery", "sparsity": 0.5}}},
     "algorithm 'lottery'"),
    ("transformer", {"sparsity": {"relu": ["act*"]}}, "'act*' matches no leaf module"),
    ("universal_transformer", {"sparsity": {"drop": [{"targets": ["layers.*"], "fraction": 0.5}]}},
     "'layers.*' matches no module"),
    ("transformer", {"sparsity": {"weights": {"algorithm": "static", "sparsity": 0.5,
                                              "param_filter": "fc*.weight"}}},
     "param_filter 'fc*.weight' matches no parameter"),
])
def test_invalid_combinations_are_refused_naming_the_problem(family, changes, words):
    with pytest.raises(ConfigError) as err:
        cfg.validate(_family(family, **changes))
    assert words in str(err.value)


def test_checking_a_config_leaves_the_global_rng_alone():
    import torch
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    cfg.validate(_family("transformer", **{"model.seed": 3}))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("family, kind", [("transformer", "tag"),
                                          ("universal_transformer", "classify")])
def test_token_families_take_their_sizes_from_the_data(family, kind):
    c = cfg.validate(_family(family))
    kwargs = cfg.model_kwargs(c)
    task = tasks.make(c["data"]["name"],
                      **{k: v for k, v in c["data"].items() if k not in ("name", "batch_size")})
    assert (kwargs["vocab"], kwargs["classes"], kwargs["max_len"], kwargs["task"]) == \
        (task.vocab, task.classes, task.max_len, task.kind) and task.kind == kind


def test_sequence_batches_are_padded_to_the_tasks_max_len():
    """A compiled plan has fixed shapes: every batch, and the example, is [batch, max_len]."""
    parts = cfg.build(_family("transformer"))
    max_len, batch = parts["config"]["data"]["max_len"], parts["batch_size"]
    assert parts["example"][0].shape == (batch, max_len)
    shapes = {tuple(x.shape) for x, _ in (next(parts["batches"]) for _ in range(8))}
    assert shapes == {(batch, max_len)}
    assert (parts["y"] == -100).any() and (parts["x"] == 0).any()      # padding is there


def test_the_loss_follows_the_family_and_the_task():
    from wsebench.models import TokenCrossEntropy
    from wsebench.universal import PonderLoss
    tag = cfg.build(_family("transformer"))
    assert isinstance(tag["loss_fn"], TokenCrossEntropy)
    classify = cfg.build(_family("transformer", data={"name": "parity", "samples": 32,
                                                       "batch_size": 8, "max_len": 6}))
    assert type(classify["loss_fn"]).__name__ == "CrossEntropyLoss"
    ut = cfg.build(_family("universal_transformer"))
    assert isinstance(ut["loss_fn"], PonderLoss) and ut["loss_fn"].model is ut["model"]


def test_token_accuracy_ignores_the_pad_labels():
    parts = cfg.build(_family("transformer"))
    model, x, y = parts["model"], parts["x"], parts["y"]
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(-1)
    real = y != -100
    expected = float((pred[real] == y[real]).float().mean())
    got = cfg.accuracy(model, model.state_dict(), x, y)
    assert got == pytest.approx(expected, abs=1e-7)
    assert got != pytest.approx(float((pred == y).float().mean()))      # pads would count as misses


@pytest.fixture(scope="module")
def family_runs():
    """One short run of each token family (a few seconds each), shared by the tests below."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {f: cfg.run(_family(f, sparsity={"harvest": True, "weights": {
                    "algorithm": "static", "sparsity": 0.5}}), progress=False)
                for f in ("transformer", "universal_transformer")}


@pytest.mark.parametrize("family", ["transformer", "universal_transformer"])
def test_run_trains_each_token_family(family_runs, family):
    import math
    result = family_runs[family]
    history, session = result["history"], result["session"]
    assert len(history) == result["config"]["steps"]
    assert all(math.isfinite(loss) for loss in history.losses)
    assert 0.0 <= result["accuracy"] <= 1.0
    parts = cfg.build(result["config"])
    assert result["accuracy"] == cfg.accuracy(parts["model"], session.state_dict(), parts["x"],
                                              parts["y"], session.sparsity, history[-1].step - 1)
    weights = [t for t in result["report"].tensors if t["kind"] == "weight"]
    assert weights and all(t["density"] == pytest.approx(0.5, abs=0.02) for t in weights)


def test_ut_run_ponders(family_runs):
    """ACT on: positions halt before max_steps, so the run is cheaper than fixed depth."""
    last = family_runs["universal_transformer"]["history"][-1]
    assert last.mean_ponder_steps is not None
    assert 1.0 <= last.mean_ponder_steps <= 3.0
    assert last.fixed_depth_cycles >= last.cycles


def test_transformer_run_with_induced_sparsity_reports_it():
    c = _family("transformer", steps=2, sparsity={
        "relu": ["layers.*.ffn.act"],
        "drop": [{"targets": ["layers.*.ffn.act"], "fraction": 0.5, "where": "both"}]})
    result = cfg.run(c, progress=False)
    drops = [t for t in result["report"].tensors if t["kind"] == "drop"]
    assert drops and drops[0]["module"] == "layers.0.ffn.act" and drops[0]["target_density"] == 0.5


def test_ut_run_with_induced_relu_and_drop():
    c = _family("universal_transformer", steps=2, sparsity={
        "relu": ["block.ffn.act"], "drop": [{"targets": ["block.ffn.act"], "fraction": 0.5}]})
    result = cfg.run(c, progress=False)
    drops = [t["module"] for t in result["report"].tensors if t["kind"] == "drop"]
    # the shared block runs once per recurrent step, and each run drops its own activations
    assert drops == ["block.ffn.act"] * c["model"]["max_steps"]
