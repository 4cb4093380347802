"""The workbench's Model, Sparsity, Depth and Data panels as a user drives them: widget values
write the config, the config compiles, invalid combinations are refused in the UI, and a
transformer run replays from its config. Compiled workbenches are shared per module (a
transformer capture takes a few seconds)."""
from __future__ import annotations

import json

import pytest

from tests.configs import tiny_config, tiny_family_config
from wsebench import config as cfg
from wsebench.widgets import Workbench
from wsebench import precheck
from wsebench.widgets.state import CONTROLS, FAMILIES

W = pytest.importorskip("ipywidgets")


def displayed(w: Workbench, panel: str) -> list[str]:
    return [c.key for c in CONTROLS if c.panel == panel
            and w.controls[c.key].layout.display != "none"]


@pytest.fixture(scope="module")
def transformer_run():
    """A transformer on the copy task (tag), set through the widgets, compiled and trained once."""
    w = Workbench.from_config(tiny_config(steps=3))
    with w.hold():                                     # checked once, when the block ends
        w.controls["model.family"].value = "transformer"
        w.controls["data.name"].value = "copy"
        for key, value in (("model.d_model", 16), ("model.heads", 2), ("model.ffn", 32),
                           ("model.layers", 1), ("model.activation", "gelu"),
                           ("data.samples", 64), ("data.batch_size", 8), ("data.max_len", 6),
                           ("data.min_len", 2), ("sparsity.relu.on", True),
                           ("sparsity.drop.fraction", 0.5), ("sparsity.drop.where", "both"),
                           ("sparsity.weights.algorithm", "static"),
                           ("sparsity.weights.sparsity", 0.25)):
            w.controls[key].value = value
    assert w.problems() == [], w.message
    w.compile()
    losses = w.run(timeout=300).losses
    yield w, losses
    w.close()


def test_model_sparsity_and_data_widgets_write_the_config(transformer_run):
    w, _ = transformer_run
    c = w.config
    assert c["model"] == {"family": "transformer", "d_model": 16, "heads": 2, "layers": 1,
                          "ffn": 32, "activation": "gelu", "dropout": 0.1,
                          "attention": "manual"}
    assert c["data"] == {"name": "copy", "samples": 64, "batch_size": 8, "max_len": 6,
                         "min_len": 2, "seed": 0}
    assert c["sparsity"] == {
        "harvest": True, "relu": ["layers.*.ffn.act"],
        "drop": [{"targets": ["layers.*.ffn.act"], "where": "both", "schedule": "constant",
                  "fraction": 0.5}],
        "weights": {"sparsity": 0.25, "algorithm": "static"}}
    assert cfg.validate(c) == c
    json.dumps(c)


def test_the_transformer_config_compiles_and_trains_on_the_wafer(transformer_run):
    w, losses = transformer_run
    plan = w.session.plan
    names = {k.name for k in plan.kernels}
    assert {k.name for k in precheck.kernels(cfg.validate(w.config))} == names
    assert len(losses) == 3 and w.runner.status == "done"
    rep = w.report()
    kinds = {t["kind"] for t in rep.tensors}
    assert {"drop", "weight"} <= kinds
    assert "padding" in w.status.value                 # the sequence task's pads are not sent
    assert all(n in w.report_html.value for n in ("layers.0.attn.q", "layers.0.ffn.fc1"))


def test_same_transformer_config_and_seed_give_the_same_loss_curve(transformer_run):
    w, losses = transformer_run
    again = Workbench.from_config(w.config)
    try:
        assert again.config == w.config
        again.compile()
        assert again.run(timeout=300).losses == losses
    finally:
        again.close()
    # `wsebench run` on the same config replays it headless
    assert cfg.run(w.config, progress=False)["history"].losses == losses


@pytest.mark.parametrize("family", ["transformer", "universal_transformer"])
def test_round_trip_with_family_sparsity_and_depth_settings(family):
    c = tiny_family_config(family)
    at = FAMILIES[family].sparse_at
    c["sparsity"] = {"harvest": False, "relu": [at],
                     "drop": [{"targets": [at], "fraction": 0.3, "schedule": "linear", "steps": 2,
                               "where": "backward"}],
                     "weights": {"algorithm": "gmp", "sparsity": 0.5}}
    if family == "universal_transformer":
        c["model"].update(act=False, tau=0.02, max_steps=2)
    w = Workbench.from_config(c)
    try:
        assert w.config == c
        assert Workbench.from_config(w.config).config == w.config
        assert w.controls["sparsity.drop.where"].value == "backward"
        assert w.controls["sparsity.weights.algorithm"].value == "gmp"
        assert w.controls["sparsity.relu.at"].value == at
        if family == "universal_transformer":
            assert (w.controls["model.act"].value, w.controls["model.tau"].value) == (False, 0.02)
    finally:
        w.close()


def test_depth_panel_shows_for_the_universal_transformer_only():
    w = Workbench.from_config(tiny_config())
    try:
        assert w.panels["depth"].layout.display == "none"
        notes = [child.value for box in w.panels.values() for child in box.children
                 if isinstance(child, W.HTML)]
        assert notes and not any("arrives with" in n for n in notes)
        with w.hold():                                 # checked once, when the block ends
            w.controls["model.family"].value = "universal_transformer"
            assert w.panels["depth"].layout.display is None
            assert displayed(w, "depth") == ["model.act", "model.max_steps", "model.tau"]
            w.controls["model.act"].value = False
            w.controls["model.max_steps"].value = 3
            w.controls["model.tau"].value = 0.05
        assert not any(w.controls[k].disabled for k in displayed(w, "depth"))
        m = w.config["model"]
        assert (m["act"], m["max_steps"], m["tau"]) == (False, 3, 0.05)
        assert w.config["data"]["name"] == "parity"       # the UT's default task
        assert w.problems() == []
        assert w.controls["model.activation"].options == ("gelu", "relu")
        w.controls["model.family"].value = "mlp"
        assert "tanh" in w.controls["model.activation"].options
        assert w.panels["depth"].layout.display == "none"
    finally:
        w.close()


def test_ut_with_act_compiles_from_the_widgets_and_reports_ponder_steps():
    w = Workbench.from_config(tiny_family_config("universal_transformer", steps=2))
    try:
        w.controls["model.max_steps"].value = 2
        w.compile()
        history = w.run(timeout=300)
        assert len(history) == 2
        assert "mean ponder steps" in w.status.value and "vs fixed depth" in w.status.value
        assert "halt" in {k.name for k in w.session.plan.kernels}
    finally:
        w.close()


@pytest.mark.parametrize("start, key, value, words", [
    ("transformer", "model.heads", 3, "model.heads (3) must divide model.d_model (16)"),
    ("mlp", "data.name", "parity", "model.family 'mlp' reads feature vectors"),
    ("transformer", "data.name", "blobs", "reads token ids"),
    ("transformer", "sparsity.drop.fraction", 1.0, "drop fraction must be a number in [0, 1)"),
    ("universal_transformer", "model.tau", -1.0, "model.tau"),
    ("transformer", "data.max_len", 0, "data.max_len must be a positive integer"),
])
def test_invalid_combinations_are_refused_in_the_ui(start, key, value, words):
    w = Workbench.from_config(tiny_family_config(start) if start != "mlp" else tiny_config())
    try:
        w.controls[key].value = value
        assert words in w.message and "✗" in w.notice.value
        assert w.buttons["compile"].disabled and w.buttons["train"].disabled
        with pytest.raises(cfg.ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[")):
            w.compile()                                   # refused before the compiler
        assert not w.runner.compiled
    finally:
        w.close()


def test_weight_level_out_of_range_is_refused_in_the_ui():
    w = Workbench.from_config(tiny_config())
    try:
        w.controls["sparsity.weights.algorithm"].value = "rigl"
        assert w.controls["sparsity.weights.sparsity"].layout.display is None
        w.controls["sparsity.weights.sparsity"].value = 1.0
        assert "sparsity must be a number in [0, 1)" in w.message
        assert w.buttons["compile"].disabled
        w.controls["sparsity.weights.sparsity"].value = 0.8
        assert w.problems() == [] and not w.buttons["compile"].disabled
    finally:
        w.close()


@pytest.mark.parametrize("preset, panels, keys", [
    ("lesson-sparsity", ["sparsity"], ["sparsity.relu.on", "sparsity.drop.fraction"]),
    ("lesson-act", ["depth", "training"], ["model.act", "model.max_steps", "model.tau", "steps"]),
])
def test_lessons_show_only_their_controls(preset, panels, keys):
    w = Workbench(preset=preset)
    try:
        assert [p for p, box in w.panels.items() if box.layout.display != "none"] == panels
        assert [k for p in panels for k in displayed(w, p)] == keys
        assert w.problems() == []
        if preset == "lesson-sparsity":
            w.controls["sparsity.drop.fraction"].value = 0.5       # the drop's other settings
            assert displayed(w, "sparsity") == keys                # stay hidden
    finally:
        w.close()
