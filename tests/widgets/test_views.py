"""wsebench.widgets.views: progress, placeholders, clearing and the status line, without widgets."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from wsebench import config as cfg
from wsebench.widgets import views
from wsebench.widgets.state import CONTROLS, WorkbenchState, lesson_config


def test_progress_counts_to_the_configured_steps_before_a_compile():
    steps = lesson_config("lesson-harvest")["steps"]
    assert steps == 40
    assert views.progress(0, 0, steps) == views.Progress(0, 40, "0 / 40")   # not "0 / 1"
    assert views.progress(3, 6, steps) == views.Progress(3, 6, "3 / 6")     # the runner's target
    assert views.progress(1500, 1200, 40).description == "1,500 / 1,500"
    assert views.progress(0, 0, 0).max == 1                                # a bar needs a max


def test_a_family_switch_outdates_the_views_and_a_step_count_does_not():
    state = WorkbenchState(cfg.default_config())
    compiled = state.config
    state.set("steps", 99)
    assert not views.outdated(compiled, state.config)
    state.set("model.family", "transformer")
    assert views.outdated(compiled, state.config)
    state.set("model.family", "mlp")
    assert not views.outdated(compiled, state.config)
    state.set("wafer.preset", "wse1")
    assert views.outdated(compiled, state.config)
    assert not views.outdated(None, state.config)          # nothing compiled: nothing to clear


def test_placeholders_until_each_view_has_something_true_to_show():
    before = views.placeholders(compiled=False, stepped=False, stale=False)
    assert set(before) == set(views.VIEWS) and all(before.values())
    planned = views.placeholders(compiled=True, stepped=False, stale=False)
    assert planned["placement"] is None and planned["loss"] and planned["heatmap"]
    assert views.placeholders(True, True, False) == dict.fromkeys(views.VIEWS)
    cleared = views.placeholders(True, True, stale=True)
    assert all("changed" in text for text in cleared.values())


def test_status_line_uses_the_one_number_format():
    last = SimpleNamespace(step=12, loss=0.69314, samples_per_s=1753088.0,
                           harvest_speedup=1.2534, mean_ponder_steps=None, padding_fraction=0.25,
                           speedup_vs_padded=1.5)
    parts = views.status_line("running", last, "numpy")
    assert parts == ["running", "step 12", "loss 0.6931", "1,753,088 samples/s (simulated)",
                     "harvest speedup 1.253x", "padding 25.0% not sent (1.500x vs padded)",
                     "backend numpy"]
    assert views.status_line("not compiled") == ["not compiled"]


def _offered(config) -> set[str]:
    return {str(o) for c in CONTROLS if c.kind == "choice" for o in c.choices(config)}


@pytest.mark.parametrize("family", ["mlp", "transformer", "universal_transformer"])
def test_every_label_and_choice_fits_its_box(family):
    config = cfg.default_config(family)
    for c in CONTROLS:
        assert views.text_px(c.label) + views.LABEL_PAD_PX <= views.LABEL_PX, c.label
    # (before: 112 px labels cut "length distribution" to "length distribu…")
    widest = views.CONTROL_PX - views.LABEL_PX - views.DROPDOWN_PX
    for option in _offered(config):
        assert views.text_px(option) <= widest, option               # "universal_tran…"
