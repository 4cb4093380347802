"""wsebench.config: validation names the bad key and what is allowed; run trains for real."""
from __future__ import annotations

import json

import pytest

from compiler import ConfigError, Mapping
from wsebench import config as cfg

from run_configs import tiny_config


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
