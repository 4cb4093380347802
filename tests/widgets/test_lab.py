"""The classroom lab's self-checks: they measure the answer from the runs and judge the student's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from wsebench.widgets import lab


def result(kernels: dict, step_speedup: float, executed: int, dense: int) -> dict:
    rows = [{"name": n, "speedup_vs_dense": s, "cycles": 100.0, "dense_cycles": 100.0 * s,
             "harvested_macs": 0} for n, s in kernels.items()]
    summary = {"harvest_speedup": step_speedup, "executed_macs": executed, "dense_macs": dense,
               "step_cycles": 100.0, "dense_step_cycles": 100.0 * step_speedup}
    return {"report": SimpleNamespace(kernels=rows, summary=summary)}


ON = result({"fc1": 1.1, "fc2": 1.4, "fc3": 1.2}, 1.05, executed=600, dense=1000)
TANH = result({"fc1": 1.0, "fc2": 1.0, "fc3": 1.0}, 1.0, executed=1000, dense=1000)


def test_unanswered_checks_say_so_and_do_not_raise(capsys):
    assert lab.check_best_kernel(None, ON) is None
    assert "not answered" in capsys.readouterr().out


def test_best_kernel(capsys):
    assert lab.check_best_kernel("fc2", ON) is True
    assert "✓" in capsys.readouterr().out
    assert lab.check_best_kernel("fc1", ON) is False
    assert "✗" in capsys.readouterr().out


def test_step_vs_kernel():
    assert lab.check_step_vs_kernel("no", ON) is True
    assert lab.check_step_vs_kernel("yes", ON) is False
    even = result({"fc1": 1.2}, 1.2, 800, 1000)
    assert lab.check_step_vs_kernel("yes", even) is True


def test_activation():
    assert lab.check_activation("relu", ON, TANH) is True
    assert lab.check_activation("tanh", ON, TANH) is False


def test_area_speedup_within_fifteen_percent():
    sizes = {4: 120.0, 8: 40.0}
    assert lab.check_area_speedup(3.0, sizes) is True
    assert lab.check_area_speedup("3.3", sizes) is True
    assert lab.check_area_speedup(4.0, sizes) is False
    assert lab.check_area_speedup("four", sizes) is False


def test_variant_switches_on_what_a_change_needs():
    base = lab.config("lesson-wafer", steps=3)
    c = lab.variant(base, {"wafer.rows": 8, "wafer.cols": 8, "mapping.rows": 2})
    assert c["wafer"] == {"preset": "classroom", "rows": 8, "cols": 8}
    assert c["mapping"] == {"fc*": {"rows": 2, "cols": 4, "replicas": 1}}
    assert c["steps"] == 3


@pytest.mark.parametrize("side", [1])
def test_fits_refuses_before_compiling(side):
    ok, why = lab.fits(lab.config("lesson-wafer"), side)
    assert not ok and "bytes per core" in why


def test_smallest_area_is_measured_by_compiling(capsys):
    base = lab.config("lesson-wafer")
    base["backend"] = "numpy"
    n = next(side for side in range(2, 9) if lab.fits(base, side)[0])
    assert lab.check_smallest_area(n, base) is True
    assert lab.check_smallest_area(n + 1, base) is False
    assert "still fits" in capsys.readouterr().out


def step_result(cycles: float, macs: int) -> dict:
    return {"report": SimpleNamespace(summary={"step_cycles": cycles, "executed_macs": macs})}


SPARSE = {"gelu": step_result(1200.0, 2000), "relu": step_result(800.0, 900),
          "relu + drop": step_result(600.0, 400)}


def test_fastest_run_is_read_from_the_runs(capsys):
    assert lab.check_fastest_run("relu + drop", SPARSE) is True
    assert lab.check_fastest_run("gelu", SPARSE) is False
    slower = {**SPARSE, "relu": step_result(500.0, 900)}
    assert lab.check_fastest_run(" ReLU ", slower) is True
    assert lab.check_fastest_run(None, SPARSE) is None


def test_step_ratio_within_ten_percent(capsys):
    assert lab.check_step_ratio(2.0, SPARSE) is True                  # 1200 / 600
    assert lab.check_step_ratio("2.15", SPARSE) is True
    assert lab.check_step_ratio(2.3, SPARSE) is False
    assert lab.check_step_ratio(1.5, SPARSE, slow="gelu", fast="relu") is True
    assert "5.000x" in capsys.readouterr().out                         # MACs 2000 / 400


def test_sparsity_runs_differ_only_in_the_induced_sparsity():
    base = lab.config("lesson-sparsity", steps=2)
    base["backend"] = "numpy"
    runs = lab.sparsity_runs(base)
    assert list(runs) == ["gelu", "relu", "relu + drop"]
    sparsity = {label: r["config"]["sparsity"] for label, r in runs.items()}
    assert sparsity["gelu"] == {"harvest": True}
    assert sparsity["relu"] == {"harvest": True, "relu": ["act*"]}
    assert sparsity["relu + drop"]["drop"][0]["fraction"] == 0.75
    macs = [r["report"].summary["executed_macs"] for r in runs.values()]
    assert macs[0] > macs[1] > macs[2]                  # each step induces more zeros
    assert "relu + drop" in repr(lab.sparsity_table(runs))
