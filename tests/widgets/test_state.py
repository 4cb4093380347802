"""The workbench's pure model: config get/set by control key, round trips, checks, lessons."""
from __future__ import annotations

import json

import pytest

from wsebench import config as cfg
from wsebench.widgets import state as st
from wsebench.widgets.state import WorkbenchState, check


def test_default_state_is_the_default_config_and_valid():
    s = WorkbenchState()
    assert s.config == cfg.default_config()
    assert s.problems() == []
    json.dumps(s.config)


def test_any_complete_config_round_trips_untouched():
    c = cfg.default_config()
    c["wafer"] = {"preset": "classroom", "sram_bytes": 24576}
    c["mapping"] = {"fc1": {"rows": 2, "cols": 2, "replicas": 1},
                    "fc2": {"rows": 4, "cols": 4, "replicas": 1}}
    c["optimizer"] = {"name": "adamw", "lr": 0.002, "weight_decay": 0.01}
    assert WorkbenchState(c).config == c
    assert WorkbenchState(WorkbenchState(c).config).config == c


@pytest.mark.parametrize("family", cfg.FAMILIES)
def test_every_visible_control_reads_a_value(family):
    s = WorkbenchState(cfg.default_config(family))
    shown = [c for c in st.CONTROLS if s.visible(c.key)]
    assert {"model.family", "model.activation", "data.name", "steps"} <= {c.key for c in shown}
    for control in shown:
        assert s.get(control.key) is not None or control.kind == "text", control.key


def test_set_writes_the_config_sections():
    s = WorkbenchState()
    s.update({"model.hidden": 32, "model.depth": 3, "model.activation": "tanh",
              "sparsity.harvest": False, "data.batch_size": 16, "data.name": "blobs",
              "steps": 7, "seed": 3})
    c = s.config
    assert c["model"]["hidden"] == 32 and c["model"]["depth"] == 3
    assert c["model"]["activation"] == "tanh"
    assert c["sparsity"] == {"harvest": False}
    assert c["data"]["batch_size"] == 16 and c["data"]["name"] == "blobs"
    assert c["steps"] == 7 and c["seed"] == 3
    assert cfg.validate(c) == c


def test_wafer_preset_and_area_override():
    s = WorkbenchState()
    s.set("wafer.preset", "wse2")
    assert s.config["wafer"] == "wse2"
    s.set("wafer.override", True)
    assert s.config["wafer"] == {"preset": "wse2", "rows": 757, "cols": 996}
    s.set("wafer.rows", 40)
    assert cfg.make_wafer(s.config["wafer"]).rows == 40
    s.set("wafer.override", False)
    assert s.config["wafer"] == "wse2"


def test_wafer_overrides_the_ui_does_not_show_survive():
    s = WorkbenchState({"wafer": {"preset": "classroom", "sram_bytes": 1024}})
    s.set("wafer.override", True)
    s.set("wafer.override", False)
    assert s.config["wafer"] == {"preset": "classroom", "sram_bytes": 1024}


def test_mapping_strategy_pins_and_unpins():
    s = WorkbenchState()
    assert s.get("mapping.strategy") == "auto"
    assert not s.visible("mapping.rows")
    s.set("mapping.strategy", "pinned")
    assert s.visible("mapping.rows")
    assert s.config["mapping"] == {"fc*": {"rows": 4, "cols": 4, "replicas": 1}}
    s.set("mapping.pattern", "fc2")
    s.set("mapping.cols", 8)
    assert s.config["mapping"] == {"fc2": {"rows": 4, "cols": 8, "replicas": 1}}
    s.set("mapping.strategy", "auto")
    assert s.config["mapping"] == "auto"
    s.set("mapping.strategy", "pinned")                 # the last pin comes back
    assert s.config["mapping"] == {"fc2": {"rows": 4, "cols": 8, "replicas": 1}}
    assert cfg.make_mapping(s.config["mapping"])["fc2"].cols == 8


def test_switching_optimizer_drops_arguments_it_does_not_take():
    s = WorkbenchState()
    assert s.config["optimizer"]["momentum"] == 0.9
    s.set("optimizer.name", "adam")
    assert s.config["optimizer"] == {"name": "adam", "lr": 0.05}
    assert s.problems() == []


@pytest.mark.parametrize("key,value,words", [
    ("model.hidden", -3, "model.hidden"),
    ("model.depth", 0, "model.depth"),
    ("model.dropout", 1.5, "dropout"),
    ("data.batch_size", 100_000, "batch_size"),
    ("data.batch_size", 0, "batch_size"),
    ("optimizer.lr", -0.1, "lr"),
    ("steps", 0, "steps"),
    ("seed", -1, "seed"),
])
def test_invalid_values_are_refused_with_the_key(key, value, words):
    s = WorkbenchState()
    s.set(key, value)
    problems = s.problems()
    assert len(problems) == 1 and words in problems[0]


def test_negative_wafer_area_is_refused():
    s = WorkbenchState()
    s.set("wafer.override", True)
    s.set("wafer.rows", -4)
    assert "rows" in s.problems()[0]


def test_model_too_big_for_the_wafer_is_refused_before_compiling():
    s = WorkbenchState()
    s.update({"model.hidden": 2048, "model.depth": 6})
    (problem,) = s.problems()
    assert "cores" in problem and "classroom" in problem
    s.set("wafer.preset", "wse2")
    assert s.problems() == []


def test_a_layer_too_big_for_any_spread_is_refused():
    s = WorkbenchState()
    s.update({"wafer.override": True, "wafer.rows": 1, "wafer.cols": 1})
    assert any("bytes per core" in p for p in s.problems())


def test_host_limits():
    s = WorkbenchState()
    s.set("model.hidden", 100_000)
    assert "parameters" in s.problems()[0]
    s.set("model.hidden", 64)
    s.update({"wafer.override": True, "wafer.rows": 5000, "wafer.cols": 5000})
    assert "cores" in s.problems()[0]


def test_pins_are_checked_against_extents():
    s = WorkbenchState()
    s.update({"mapping.strategy": "pinned", "mapping.pattern": "fc4", "mapping.rows": 4,
              "mapping.cols": 8})
    (problem,) = s.problems()                      # fc4 is 64 -> 4: at most 4 columns
    assert "fc4" in problem and "extents" in problem


def test_pins_that_match_no_layer_are_flagged():
    s = WorkbenchState()
    s.update({"mapping.strategy": "pinned", "mapping.pattern": "conv*"})
    assert any("conv*" in w for w in s.warnings())


def test_every_capability_has_landed():
    """No control waits for a capability: no disabled controls, no "arrives with" notes."""
    assert all(c.ready for c in st.CONTROLS)
    assert st.PANEL_NOTES == {}
    assert {c.panel for c in st.CONTROLS} == set(st.PANELS)


def test_the_options_offered():
    assert st.CONTROL["model.family"].choices() == ("mlp", "transformer", "universal_transformer")
    assert set(st.CONTROL["optimizer.name"].choices()) == {"sgd", "adam", "adamw"}
    assert st.CONTROL["data.name"].choices() == ("blobs", "spirals", "parity", "copy", "reverse",
                                                 "longtail")
    activation = st.CONTROL["model.activation"]
    assert "tanh" in activation.choices(cfg.default_config())
    assert activation.choices(cfg.default_config("transformer")) == ("gelu", "relu")
    assert st.CONTROL["sparsity.weights.algorithm"].choices() == ("none", "static", "gmp", "set",
                                                                  "rigl")


def test_check_agrees_with_validate_on_unknown_keys():
    assert "unknown" in check({"bogus": 1})[0]


def test_lessons_are_valid_and_hide_known_controls():
    for name, lesson in st.LESSONS.items():
        c = st.lesson_config(name)
        assert check(c) == [], name
        assert st.check_hide(lesson.hide) == lesson.hide
    with pytest.raises(cfg.ConfigError, match="allowed"):
        st.check_hide(["nope"])
    with pytest.raises(cfg.ConfigError, match="lesson-harvest"):
        st.lesson("lesson-nope")
