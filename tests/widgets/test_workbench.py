"""The ipywidgets layer, driven like a user would: set widget values, click buttons, read views."""
from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest

from tests.configs import tiny_config
from wsebench import config as cfg
from wsebench.widgets import Workbench, render, views
from wsebench.widgets.state import CONTROLS

pytest.importorskip("ipywidgets")


def tiny(**overrides) -> dict:
    """A run that compiles in about a second and steps in milliseconds."""
    return tiny_config(**{"steps": 6, **overrides})


def wait_until(predicate, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
def bench():
    made = []

    def make(*args, **kwargs):
        w = Workbench(*args, **kwargs) if args or "config" in kwargs or "preset" in kwargs \
            else Workbench.from_config(tiny(), **kwargs)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def test_widget_values_write_the_config(bench):
    w = bench()
    w.controls["model.hidden"].value = 16
    w.controls["model.activation"].value = "tanh"
    w.controls["sparsity.harvest"].value = False
    w.controls["wafer.preset"].value = "wse1"
    w.controls["data.batch_size"].value = 16
    w.controls["optimizer.name"].value = "adam"
    c = w.config
    assert c["model"]["hidden"] == 16 and c["model"]["activation"] == "tanh"
    assert c["sparsity"]["harvest"] is False
    assert c["wafer"] == "wse1"
    assert c["data"]["batch_size"] == 16
    assert c["optimizer"]["name"] == "adam" and "momentum" not in c["optimizer"]
    assert cfg.validate(c) == c
    json.dumps(c)


def test_hold_checks_once_when_the_block_ends(bench, monkeypatch):
    """Inside `hold()` the controls write the config and the others follow it, but nothing is
    checked (no capture of the model) until the block ends; then the verdict, notice and
    buttons are those of the config the block ended with."""
    from wsebench import precheck
    w = bench()
    before, asked = w.message, []
    for name in ("kernels", "parameter_count"):               # what captures the model
        real = getattr(precheck, name)
        monkeypatch.setattr(precheck, name,
                            lambda *a, real=real, **k: asked.append(a) or real(*a, **k))
    with w.hold():
        w.controls["model.family"].value = "transformer"
        assert w.controls["model.d_model"].layout.display is None          # followed at once
        assert w.controls["model.d_model"].value == w.state.get("model.d_model") == 32
        w.controls["data.name"].value = "blobs"          # a transformer reads tokens: refused
        assert w.config["data"]["name"] == "blobs"
        assert asked == [] and w.message == before and not w.buttons["compile"].disabled
    assert "reads token ids" in w.message and "✗" in w.notice.value
    assert w.buttons["compile"].disabled and w.buttons["train"].disabled
    w.controls["data.name"].value = "copy"              # outside a hold: checked at once
    assert asked and w.problems() == [] and not w.buttons["compile"].disabled
    again = bench(config=w.config)
    assert (again.message, again.notice.value) == (w.message, w.notice.value)


def test_one_change_updates_the_controls_it_moves(bench):
    w = bench()
    assert w.controls["wafer.rows"].layout.display == "none"
    w.controls["wafer.override"].value = True
    assert w.controls["wafer.rows"].layout.display is None
    assert w.controls["wafer.rows"].value == 32
    w.controls["mapping.strategy"].value = "pinned"
    assert w.controls["mapping.rows"].layout.display is None
    assert w.config["mapping"] == {"fc*": {"rows": 4, "cols": 4, "replicas": 1}}


def test_invalid_values_are_refused_in_the_ui_with_a_message(bench):
    w = bench()
    for key, value in (("model.hidden", -5), ("data.batch_size", 10_000),
                       ("model.dropout", 1.0)):
        good = w.controls[key].value
        w.controls[key].value = value
        assert w.message and key.split(".")[1] in w.message
        assert "✗" in w.notice.value
        assert w.buttons["compile"].disabled and w.buttons["train"].disabled
        with pytest.raises(cfg.ConfigError):
            w.compile()                                # refused before the compiler
        assert not w.runner.compiled
        w.controls[key].value = good
        assert w.problems() == [] and not w.buttons["train"].disabled


def test_model_too_big_for_the_wafer_is_refused(bench):
    w = bench()
    w.set("model.hidden", 2048)
    w.set("model.depth", 5)
    assert "classroom" in w.message and w.buttons["compile"].disabled


def test_compile_shows_the_placement_and_the_plan(bench):
    w = bench()
    session = w.compile()
    assert w.session is session and w.runner.status == "ready"
    names = [k.name for k in session.plan.kernels]
    assert names[:3] == ["fc1", "fc2", "fc3"]
    assert png_pixels(w.placement.value).std() > 0
    assert all(n in w.report_html.value for n in names)
    assert "Static estimate" in w.report_html.value
    assert not w.buttons["train"].disabled and w.buttons["pause"].disabled


def test_compile_follows_the_widgets(bench):
    w = bench()
    w.set("mapping.strategy", "pinned")
    w.set("mapping.pattern", "fc2")
    w.set("mapping.rows", 2)
    w.set("mapping.cols", 3)
    plan = w.compile().plan
    assert (plan.mapping["fc2"].rows, plan.mapping["fc2"].cols) == (2, 3)
    assert "fc2" in plan.pinned
    w.set("wafer.override", True)
    w.set("wafer.rows", 16)
    assert "recompiles" in w.message                   # stale until compiled again
    assert w.compile().plan.target.rows == 16
    assert "recompiles" not in w.message


def test_compiler_refusal_is_shown_not_raised_from_a_button(bench):
    w = bench()
    w.set("mapping.strategy", "pinned")
    w.set("mapping.pattern", "nothing*")
    w.buttons["compile"].click()
    w.wait(120)
    assert not w.runner.compiled and w.runner.status == "error"
    assert "matches no kernel" in w.message                # the compiler's own words
    assert not w.buttons["compile"].disabled               # fix a setting and try again
    w.set("mapping.strategy", "auto")
    assert "matches no kernel" in w.message                # until the next compile
    w.compile()
    assert "matches no kernel" not in w.message


def test_run_trains_and_draws_every_view(bench):
    w = bench()
    w.compile()
    history = w.run(timeout=120)
    assert len(history) == 6 and w.runner.status == "done"
    assert w.progress.value == 6 and w.progress.max == 6
    assert "samples/s" in w.status.value and "step 6" in w.status.value
    heat = png_pixels(w.heatmap.value)
    assert heat.std() > 0 and len(np.unique(heat.reshape(-1, 3), axis=0)) > 3
    assert png_pixels(w.loss_image.value).std() > 0
    assert "Samples/s" in w.report_html.value
    rep = w.report()
    assert rep.core_utilization.shape == (32, 32)


def test_train_button_compiles_first_and_trains_in_the_background(bench):
    w = bench()
    w.buttons["train"].click()
    wait_until(lambda: w.runner.status == "done", 120, "training to finish")
    assert len(w.history) == 6
    w.set("steps", 3)                                   # no recompile: only how long to train
    assert "recompiles" not in w.message
    w.buttons["train"].click()                          # 3 more from where it stopped
    wait_until(lambda: w.runner.status == "done" and len(w.history) == 9, 60, "9 steps")
    assert [r.step for r in w.history] == list(range(1, 10))


def test_pause_and_step_respond_while_train_runs(bench):
    w = bench(config=tiny(steps=100_000))
    w.compile()
    w.buttons["train"].click()
    assert w.buttons["pause"].disabled is False
    wait_until(lambda: len(w.history) >= 3, 60, "training to start")
    w.buttons["pause"].click()
    assert w.wait(30)
    paused_at = len(w.history)
    time.sleep(0.4)
    assert len(w.history) == paused_at                  # stopped advancing
    assert w.runner.status == "paused" and w.buttons["train"].description == "Resume"
    w.buttons["step"].click()
    assert w.wait(30)
    assert len(w.history) == paused_at + 1              # exactly one
    time.sleep(0.2)
    assert len(w.history) == paused_at + 1
    w.buttons["train"].click()                          # resume
    wait_until(lambda: len(w.history) >= paused_at + 4, 60, "training to resume")
    w.runner.stop()
    stopped_at = len(w.history)
    time.sleep(0.3)
    assert len(w.history) == stopped_at
    assert [r.step for r in w.history] == list(range(1, stopped_at + 1))


def test_config_round_trip(bench):
    w = bench()
    w.set("model.activation", "gelu")
    w.set("wafer.override", True)
    w.set("wafer.cols", 20)
    w.set("mapping.strategy", "pinned")
    assert Workbench.from_config(w.config).config == w.config
    assert json.loads(json.dumps(w.config)) == w.config
    again = bench(config=w.config)
    assert all(again.controls[c.key].value == w.controls[c.key].value for c in CONTROLS)


def test_same_config_and_seed_give_the_same_losses(bench):
    a = bench()
    a.compile()
    first = a.run(timeout=120).losses
    b = bench(config=a.config)
    b.compile()
    assert b.run(timeout=120).losses == first
    c = bench(config={**a.config, "seed": 1})
    c.compile()
    assert c.run(timeout=120).losses != first
    # and `wsebench run` replays it: the headless pipeline gives the same curve
    assert cfg.run(a.config, progress=False)["history"].losses == first


def test_hide_and_lesson_presets(bench):
    w = bench(hide=["wafer", "model.dropout"])
    assert w.panels["wafer"].layout.display == "none"
    assert w.controls["model.dropout"].layout.display == "none"
    assert w.panels["model"].layout.display is None
    lesson = bench(preset="lesson-harvest")
    assert lesson.controls["sparsity.harvest"].layout.display is None
    assert lesson.panels["wafer"].layout.display == "none"
    assert lesson.config["model"]["dropout"] == 0.0
    with pytest.raises(cfg.ConfigError):
        Workbench.from_config(tiny(), hide=["no-such-control"])


def _placeholder(w, view: str, compiled: bool, stepped: bool = False, stale: bool = False):
    inches = render.LOSS_INCHES if view == "loss" else render.VIEW_INCHES
    return render.placeholder_png(views.placeholders(compiled, stepped, stale)[view], inches)


def test_before_the_first_compile_every_view_is_a_placeholder_and_progress_counts_the_steps(bench):
    w = bench()
    for view, image in (("loss", w.loss_image), ("heatmap", w.heatmap),
                        ("placement", w.placement)):
        assert image.value == _placeholder(w, view, compiled=False)     # not a broken image
        assert png_pixels(image.value).std() > 0
    assert (w.progress.value, w.progress.max, w.progress.description) == (0, 6, "0 / 6")
    lesson = bench(preset="lesson-harvest")
    assert lesson.progress.description == "0 / 40"                 # not "0 / 1"
    w.compile()
    assert w.placement.value != _placeholder(w, "placement", compiled=False)
    assert w.heatmap.value == _placeholder(w, "heatmap", compiled=True)   # no step yet


def test_a_family_switch_clears_the_old_models_views(bench):
    w = bench()
    w.compile()
    w.run(timeout=120)
    drawn = w.placement.value
    assert "fc1" in w.report_html.value
    w.set("model.family", "transformer")
    for view, image in (("loss", w.loss_image), ("heatmap", w.heatmap),
                        ("placement", w.placement)):
        assert image.value == _placeholder(w, view, True, True, stale=True), view
    assert w.report_html.value == ""
    w.set("steps", 7)                                   # still the other model: still cleared
    assert w.placement.value == _placeholder(w, "placement", True, True, stale=True)
    with w.hold():                                      # back to the compiled model: redrawn
        w.set("model.family", "mlp")
        w.set("model.hidden", 24)
        w.set("model.depth", 3)
    assert w.config["model"] == w.runner.compiled_config["model"]
    assert w.placement.value == drawn and "fc1" in w.report_html.value
    assert png_pixels(w.heatmap.value).std() > 0
    assert w.heatmap.value != _placeholder(w, "heatmap", True, True)


def test_status_and_report_numbers_use_the_one_format(bench):
    w = bench()
    w.compile()
    w.run(timeout=120)
    assert re.search(r"[\d,]+ samples/s \(simulated\)", w.status.value)
    assert re.search(r"harvest speedup \d\.\d{3}x", w.status.value)
    assert not re.search(r"\de[+-]\d", w.status.value + w.report_html.value)
    assert re.search(r"Compute Utilization %</th><td>\d+\.\d%</td>", w.report_html.value)
