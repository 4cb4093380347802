"""wsebench.densities: what `wb.compile` sizes a plan for. "auto" calibrates when the model
makes zeros and harvesting is on, keeps the calibrated plan only when it measures no slower,
and the plan (and its compile report) says per kernel where its densities came from."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler.compile_report import density_source, kernel_table
from wsebench import densities as dn
from wsebench.sparsity import Sparsity


def _compile(model, batch=64, **kwargs):
    x, y = wb.data.spirals(batch, 16, 4)
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def _wide_relu_dropout():
    return wb.models.mlp(16, 256, 4, depth=4, activation="relu", dropout=0.5, seed=3)


def test_sources_name_what_makes_zeros():
    relu = _compile(wb.models.mlp(16, 32, 4, depth=2, activation="relu", dropout=0.2, seed=0),
                    densities="dense")
    assert dn.sources(relu.plan.graph, Sparsity.parse(None)) == ["ReLU", "dropout"]
    gelu = _compile(wb.models.mlp(16, 32, 4, depth=2, activation="gelu", seed=0), densities="dense")
    assert dn.sources(gelu.plan.graph, Sparsity.parse(None)) == []
    assert dn.sources(gelu.plan.graph, Sparsity.parse({"weights": {"sparsity": 0.5}})) == \
        ["weight sparsity"]


def test_auto_calibrates_only_when_sparsity_is_configured():
    graph = _compile(_wide_relu_dropout(), densities="dense").plan.graph
    on, off = Sparsity.parse(None), Sparsity.parse({"harvest": False})
    assert dn.resolve("auto", 1.0, graph, on) == "calibrate"
    assert dn.resolve("auto", 1.0, graph, off) == "dense"      # zeros cost like any value
    assert dn.resolve("auto", 0.5, graph, on) == "dense"       # the user's own assumption
    assert dn.resolve(None, 1.0, graph, on) == "dense"
    assert dn.resolve({"fc2": (0.3, 0.3)}, 1.0, graph, on) == {"fc2": (0.3, 0.3)}
    with pytest.raises(wb.ConfigError, match="densities must be one of 'auto', 'calibrate'"):
        dn.resolve("measured", 1.0, graph, on)


def test_default_sizes_a_relu_dropout_mlp_for_its_measured_densities():
    auto = _compile(_wide_relu_dropout())
    dense = _compile(_wide_relu_dropout(), densities="dense")
    fc2 = auto.plan.density_of("fc2")
    assert 0.1 < fc2[0] < 0.45        # ReLU then dropout(0.5): about a quarter non-zero
    assert density_source(auto.plan, "fc2") == "calibrated"
    assert density_source(dense.plan, "fc2") == "assumed" and dense.plan.density_of("fc2") == (1, 1)
    x, y = wb.data.spirals(64, 16, 4)
    assert auto.step(x, y).cycles <= dense.step(x, y).cycles


def test_example_cycles_time_the_step_the_session_then_takes():
    s = _compile(_wide_relu_dropout(), densities="dense")
    x, y = (a.numpy() for a in wb.data.spirals(64, 16, 4))
    env = s._trainer.example_env(x, y)            # the RNG is left as it was: same masks
    assert s._trainer.example_cycles(s.plan, env) == s.step(x, y).cycles


def test_auto_keeps_the_dense_sized_plan_when_the_calibrated_one_measures_slower():
    """`calibrated` times both plans on the example's tensors and keeps the faster."""
    base = _compile(_wide_relu_dropout(), densities="dense")
    trainer, sized = base._trainer, dataclasses.replace(base.plan)
    x, y = (a.numpy() for a in wb.data.spirals(64, 16, 4))
    for calibrated_cycles, keep_faster, source in ((200.0, True, "assumed"),
                                                   (100.0, True, "calibrated"),
                                                   (200.0, False, "calibrated")):
        trainer.example_cycles = lambda plan, env: calibrated_cycles if plan is sized else 150.0
        plan = dn.calibrated(base.plan, trainer, lambda measured: sized, x, y, keep_faster)
        assert density_source(plan, "fc2") == source, (calibrated_cycles, keep_faster)
        assert ("kept dense" in plan.summary()) == (source == "assumed")


def test_compile_report_prints_each_kernels_densities_and_source():
    s = _compile(_wide_relu_dropout(), densities="calibrate")
    rows = {r["name"]: r for r in kernel_table(s.plan)}
    assert rows["fc2"]["density_source"] == "calibrated"
    assert (rows["fc2"]["x_density"], rows["fc2"]["dy_density"]) == s.plan.density_of("fc2")
    text = s.plan.summary()
    assert "densities calibrated on the example batch" in text
    fc2 = next(line for line in text.splitlines() if line.strip().startswith("fc2"))
    assert fc2.endswith(f"{rows['fc2']['x_density']:.2f}/{rows['fc2']['dy_density']:.2f}c")
    given = _compile(_wide_relu_dropout(), densities={"fc2": (0.5, 0.5)})
    assert density_source(given.plan, "fc2") == "given"
    assert density_source(given.plan, "fc3") == "assumed"


def test_a_saved_plan_keeps_its_density_sources(tmp_path):
    s = _compile(_wide_relu_dropout())
    x, y = wb.data.spirals(64, 16, 4)
    s.step(x, y)
    loaded = wb.load_session(s.save(tmp_path / "s.npz"))
    assert density_source(loaded.plan, "fc2") == density_source(s.plan, "fc2")
