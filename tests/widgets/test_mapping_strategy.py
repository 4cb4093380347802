"""The wafer panel's mapping strategies: auto, model, data (and pinned), from widget to compile."""
from __future__ import annotations

import json

import pytest

from wsebench import config as cfg
from wsebench.widgets import lab
from wsebench.widgets import state as st
from wsebench.widgets.state import WorkbenchState

pytest.importorskip("ipywidgets")

from wsebench.widgets import Workbench  # noqa: E402


def tiny(**overrides) -> dict:
    """A small MLP whose batch leaves room on the classroom wafer for replicas."""
    c = cfg.default_config()
    c["model"].update(hidden=24, depth=3, dropout=0.0)
    c["data"].update(samples=256, batch_size=64)
    c["steps"] = 2
    c["backend"] = "numpy"
    c.update(overrides)
    return c


@pytest.fixture
def bench():
    made = []

    def make(config=None, preset=None, **kwargs):
        w = Workbench(preset=preset, **kwargs) if preset else \
            Workbench.from_config(config if config is not None else tiny(), **kwargs)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def test_the_dropdown_offers_the_compilers_strategies_and_pinning():
    from compiler.search import STRATEGIES
    choices = st.CONTROL["mapping.strategy"].choices()
    assert set(STRATEGIES) <= set(choices) and "pinned" in choices
    assert choices[0] == "auto"


@pytest.mark.parametrize("strategy", ["auto", "model", "data"])
def test_strategy_round_trips_through_the_config(strategy):
    s = WorkbenchState(tiny())
    s.set("mapping.strategy", strategy)
    assert s.config["mapping"] == strategy
    assert s.get("mapping.strategy") == strategy
    assert not s.visible("mapping.rows")              # pin sizes only when pinned
    assert s.problems() == []
    again = WorkbenchState(json.loads(json.dumps(s.config)))
    assert again.config == s.config and again.get("mapping.strategy") == strategy
    assert st.validate(s.config) == s.config


def test_switching_strategies_keeps_the_last_pin():
    s = WorkbenchState(tiny())
    s.update({"mapping.strategy": "pinned", "mapping.pattern": "fc2", "mapping.rows": 2})
    pinned = s.config["mapping"]
    s.set("mapping.strategy", "data")
    assert s.config["mapping"] == "data"
    s.set("mapping.strategy", "pinned")
    assert s.config["mapping"] == pinned


def test_unknown_strategies_are_refused_with_the_choices():
    s = WorkbenchState(tiny())
    with pytest.raises(cfg.ConfigError, match="model"):
        s.set("mapping.strategy", "pipeline")
    problems = st.check({**tiny(), "mapping": "pipeline"})
    assert len(problems) == 1 and "pipeline" in problems[0] and "data" in problems[0]


def test_mapping_arg_is_what_wb_compile_takes():
    assert st.mapping_arg("model") == "model" and st.mapping_arg("data") == "data"
    assert st.mapping_arg("auto") == "auto"
    pins = st.mapping_arg({"fc1": {"rows": 2, "cols": 3}})
    assert (pins["fc1"].rows, pins["fc1"].cols, pins["fc1"].replicas) == (2, 3, 1)


def test_widget_value_writes_the_config_and_round_trips(bench):
    w = bench()
    w.controls["mapping.strategy"].value = "model"
    assert w.config["mapping"] == "model"
    assert w.controls["mapping.rows"].layout.display == "none"
    assert w.problems() == [] and not w.buttons["compile"].disabled
    again = bench(config=w.config)
    assert again.config == w.config
    assert again.controls["mapping.strategy"].value == "model"


def _replicas(plan) -> dict:
    return {name: m.replicas for name, m in plan.mapping.items()}


def test_compile_uses_the_strategy(bench):
    w = bench()
    w.set("mapping.strategy", "model")
    plan = w.compile().plan
    assert dict(plan.meta)["strategy"] == "model"
    assert set(_replicas(plan).values()) == {1}            # one copy of every kernel
    assert "recompiles" not in w.message                    # the compiled config is current

    w.set("mapping.strategy", "data")
    assert "recompiles" in w.message                        # a strategy change is a recompile
    plan = w.compile().plan
    assert dict(plan.meta)["strategy"] == "data"
    assert len(set(_replicas(plan).values())) == 1          # the whole network, r times
    assert "recompiles" not in w.message

    w.set("mapping.strategy", "auto")
    assert dict(w.compile().plan.meta)["strategy"] == "auto"


def test_data_parallel_replicates_where_the_wafer_has_room(bench):
    """A small MLP on the classroom wafer: "data" finds it worth running more than one copy."""
    w = bench()
    w.set("mapping.strategy", "data")
    replicas = set(_replicas(w.compile().plan).values())
    assert len(replicas) == 1 and replicas.pop() > 1


def test_a_strategy_run_trains_and_replays(bench):
    w = bench()
    w.set("mapping.strategy", "model")
    w.compile()
    losses = w.run(timeout=120).losses
    assert len(losses) == 2
    result = lab.run(w.config)                              # the lab's headless run agrees
    assert result["history"].losses == losses
    assert set(_replicas(result["session"].plan).values()) == {1}


def test_parallelism_lesson_shows_the_strategy_and_the_batch(bench):
    w = bench(preset="lesson-parallelism")
    assert st.check(w.config) == []
    assert w.controls["mapping.strategy"].layout.display is None
    assert w.controls["data.batch_size"].layout.display is None
    assert w.panels["model"].layout.display == "none"
