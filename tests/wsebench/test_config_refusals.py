"""Configs that used to pass silently or end in a raw traceback are refused by `validate` /
`load_config` with a ConfigError naming the key or file and the fix (issue 17's cases)."""
import json

import pytest

from wsebench import config as cfg
from wsebench.errors import OutputPathError  # noqa: F401 (one error module for the package)
from compiler import ConfigError, WaferFitError

from run_configs import tiny_config


def _with(section: str, **values) -> dict:
    c = tiny_config()
    c[section] = {**c[section], **values}
    return c


@pytest.mark.parametrize("optimizer, named", [
    ({"name": "sgd", "lr": 0.1, "nesterov": True}, "Nesterov"),
    ({"name": "adam", "betas": [1.5, 0.9]}, "beta"),
    ({"name": "sgd", "lr": 0.1, "weight_decay": -1}, "optimizer.weight_decay=-1"),
    ({"name": "sgd", "lr": 0.1, "momentum": "high"}, "optimizer.momentum must be a number"),
    ({"name": "adam", "betas": [0.9]}, "optimizer.betas must be a list of 2 numbers"),
    ({"name": "sgd", "lr": 0.1, "nesterov": "yes"}, "optimizer.nesterov must be true or false"),
    ({"name": ["sgd"]}, "optimizer.name"),
])
def test_torch_optimizer_validation_becomes_a_config_error(optimizer, named):
    with pytest.raises(ConfigError, match=named):
        cfg.validate(tiny_config(optimizer=optimizer))


@pytest.mark.parametrize("key, value", [("lr", float("inf")), ("lr", float("nan")),
                                        ("momentum", float("inf")), ("weight_decay", float("nan"))])
def test_non_finite_hyperparameters_are_refused_consistently(key, value):
    with pytest.raises(ConfigError, match=f"optimizer {key}=.* must be a finite number"):
        cfg.validate(_with("optimizer", **{key: value}))


def test_data_classes_must_equal_the_models_outputs():
    with pytest.raises(ConfigError, match="data.classes=8 differs from model.out_features=4"):
        cfg.validate(_with("data", classes=8))


def test_one_output_class_is_refused_before_training():
    c = tiny_config()
    c["model"]["out_features"] = 1
    with pytest.raises(ConfigError, match="cross-entropy over 1 class"):
        cfg.run(c, progress=False)


@pytest.mark.parametrize("text, key", [("steps: 2\nsteps: 3\n", "'steps'"),
                                       ("model: {hidden: 8, hidden: 16}\n", "'hidden'")])
def test_duplicate_yaml_keys_are_refused(tmp_path, text, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"duplicate key {key}.*line"):
        cfg.load_config(path)


def test_a_binary_config_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        cfg.load_config(path)


def test_a_config_path_that_is_a_folder_is_refused(tmp_path):
    folder = tmp_path / "c.json"
    folder.mkdir()
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config(folder)


@pytest.mark.parametrize("wafer", [{"preset": ["classroom"]}, {"preset": {"a": 1}}, {"preset": 3}])
def test_an_unhashable_or_odd_wafer_preset_is_refused(wafer):
    with pytest.raises(ConfigError, match="wafer.preset"):
        cfg.validate(tiny_config(wafer=wafer))


@pytest.mark.parametrize("section, key", [(None, "seed"), ("data", "seed")])
def test_a_seed_beyond_int64_is_refused(section, key):
    c = tiny_config(seed=2**70) if section is None else _with(section, seed=2**70)
    with pytest.raises(ConfigError, match=rf"{key} must be an integer in \[0, {2**63 - 1}\]"):
        cfg.validate(c)


def test_huge_data_is_refused_from_arithmetic_with_needed_and_available():
    with pytest.raises(ConfigError, match=r"data.samples=1,000,000,000,000 needs at least .* GiB.*"
                                          r"GiB is available"):
        cfg.validate(_with("data", samples=10**12, batch_size=64))


def test_a_huge_model_is_refused_on_the_meta_device():
    with pytest.raises((ConfigError, WaferFitError), match=r"parameters.*needs? at least"):
        cfg.validate(_with("model", hidden=2 * 10**8))


def test_a_model_larger_than_the_wafers_sram_is_refused_before_it_is_built():
    with pytest.raises(WaferFitError, match=r"classroom wafer has 50,331,648 bytes of SRAM"):
        cfg.validate(_with("model", hidden=4096, depth=4))


@pytest.mark.parametrize("policy", ["raise", "warn", "skip"])
def test_on_nonfinite_is_an_optional_top_level_key(policy):
    assert cfg.validate(tiny_config(on_nonfinite=policy))["on_nonfinite"] == policy
    assert "on_nonfinite" not in cfg.validate(tiny_config())


def test_an_unknown_on_nonfinite_policy_is_refused():
    with pytest.raises(ConfigError, match="on_nonfinite 'ignore'"):
        cfg.validate(tiny_config(on_nonfinite="ignore"))


def test_json_configs_with_a_non_finite_number_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny_config(optimizer={"name": "sgd", "lr": float("inf")})))
    with pytest.raises(ConfigError, match="lr=inf"):
        cfg.validate(cfg.load_config(path))


@pytest.mark.parametrize("make", [
    lambda: __import__("wsebench").data.blobs(samples=10**12),
    lambda: __import__("wsebench").data.spirals(samples=10**12, features=64),
    lambda: __import__("wsebench").tasks.parity(samples=10**12),
    lambda: __import__("wsebench").tasks.copy(samples=10**12),
    lambda: __import__("wsebench").tasks.longtail(samples=10**12),
])
def test_the_data_generators_refuse_huge_sizes_before_allocating(make):
    with pytest.raises(ConfigError, match="needs at least .* is available"):
        make()


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "1.0", True])
def test_clip_grad_norm_must_be_a_positive_finite_number(value):
    c = tiny_config()
    c["clip_grad_norm"] = value
    with pytest.raises(ConfigError, match="clip_grad_norm must be a positive finite number"):
        cfg.validate(c)


def test_clip_grad_norm_in_a_config_clips_as_torch_does():
    """A config's clip_grad_norm reaches the trainer, and one step moves every parameter as
    torch.nn.utils.clip_grad_norm_ then SGD would."""
    import torch
    c = tiny_config(steps=1)
    c["model"]["dropout"] = 0.0           # no masks to replay
    c["clip_grad_norm"] = 0.01
    parts = cfg.build(cfg.validate(c))
    session = cfg.compile_built(parts)
    assert session._trainer.clip_grad_norm == 0.01
    x, y = parts["example"]
    model = cfg.build(cfg.validate(c))["model"]
    opt = torch.optim.SGD(model.parameters(), **{k: v for k, v in c["optimizer"].items() if k != "name"})
    session.step(x, y)
    opt.zero_grad()
    parts["loss_fn"](model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
    opt.step()
    got = session.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(torch.as_tensor(got[name]), value, rtol=0, atol=1e-6)
