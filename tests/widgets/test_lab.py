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


def test_unanswered_checks_say_so_and_do_not_raise():
    verdict = lab.check_best_kernel(None, ON)
    assert verdict.ok is None and "not answered" in str(verdict)


def test_best_kernel():
    right = lab.check_best_kernel("fc2", ON)
    assert right.ok is True and "✓" in right._repr_html_()
    wrong = lab.check_best_kernel("fc1", ON)
    assert wrong.ok is False and "✗" in wrong._repr_html_() and "fc2" not in wrong.message
    assert lab.check_best_kernel("FC2", ON).ok is True           # case does not matter


def test_a_check_cell_shows_its_verdict_not_true_or_false():
    verdict = lab.check_best_kernel("fc2", ON)
    assert bool(verdict) and repr(verdict).startswith("✓ 1a")
    assert not bool(lab.check_best_kernel("fc1", ON))


def test_an_unknown_answer_lists_every_accepted_form_without_the_answer():
    verdict = lab.check_fastest_run("sparse", SPARSE)
    assert verdict.ok is False
    assert all(repr(label) in verdict.message for label in SPARSE)
    assert "took" not in verdict.message                   # the measured answer is not shown


def test_step_vs_kernel():
    assert lab.check_step_vs_kernel("no", ON).ok is True
    assert lab.check_step_vs_kernel("yes", ON).ok is False
    even = result({"fc1": 1.2}, 1.2, 800, 1000)
    assert lab.check_step_vs_kernel("yes", even).ok is True


def test_activation():
    assert lab.check_activation("relu", ON, TANH).ok is True
    assert lab.check_activation("tanh", ON, TANH).ok is False


def test_area_speedup_within_fifteen_percent():
    sizes = {4: 120.0, 8: 40.0}
    assert lab.check_area_speedup(3.0, sizes).ok is True
    assert lab.check_area_speedup("3.3", sizes).ok is True
    assert lab.check_area_speedup(4.0, sizes).ok is False
    assert lab.check_area_speedup("four", sizes).ok is False


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


def test_smallest_area_is_measured_by_compiling():
    base = lab.config("lesson-wafer")
    base["backend"] = "numpy"
    n = next(side for side in range(2, 9) if lab.fits(base, side)[0])
    assert lab.check_smallest_area(n, base).ok is True
    too_big = lab.check_smallest_area(n + 1, base)
    assert too_big.ok is False and "not the smallest" in too_big.message
    assert f"{n} x {n}" not in too_big.message             # the hint does not give the answer


def step_result(cycles: float, macs: int) -> dict:
    return {"report": SimpleNamespace(summary={"step_cycles": cycles, "executed_macs": macs})}


SPARSE = {"gelu": step_result(1200.0, 2000), "relu": step_result(800.0, 900),
          "relu + drop": step_result(600.0, 400)}


def test_fastest_run_is_read_from_the_runs():
    assert lab.check_fastest_run("relu + drop", SPARSE).ok is True
    for variant in ("relu+drop", "ReLU + Dropout", "relu and drop", "  RELU+DROP "):
        assert lab.check_fastest_run(variant, SPARSE).ok is True, variant
    assert lab.check_fastest_run("gelu", SPARSE).ok is False
    slower = {**SPARSE, "relu": step_result(500.0, 900)}
    assert lab.check_fastest_run(" ReLU ", slower).ok is True
    assert lab.check_fastest_run(None, SPARSE).ok is None


def test_step_ratio_within_ten_percent():
    assert lab.check_step_ratio(2.0, SPARSE).ok is True                  # 1200 / 600
    assert lab.check_step_ratio("2.15x", SPARSE).ok is True
    assert lab.check_step_ratio(2.3, SPARSE).ok is False
    assert lab.check_step_ratio(True, SPARSE).ok is False
    assert lab.check_step_ratio(1.5, SPARSE, slow="gelu", fast="relu").ok is True
    assert "5.000x" in lab.check_step_ratio(2.0, SPARSE).message         # MACs 2000 / 400


def test_sparsity_runs_differ_only_in_the_induced_sparsity(monkeypatch):
    import tqdm.auto
    counted = []

    class Bar(tqdm.auto.tqdm):                          # the bar over the runs, when asked
        def __iter__(self):
            counted.extend(super().__iter__())
            return iter(counted)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    base = lab.config("lesson-sparsity", steps=2)
    base["backend"] = "numpy"
    runs = lab.sparsity_runs(base, progress=True)
    assert [label for label, _ in counted] == list(lab.SPARSITY_RUNS)
    assert list(runs) == ["gelu", "relu", "relu + drop"]
    sparsity = {label: r["config"]["sparsity"] for label, r in runs.items()}
    assert sparsity["gelu"] == {"harvest": True}
    assert sparsity["relu"] == {"harvest": True, "relu": ["act*"]}
    assert sparsity["relu + drop"]["drop"][0]["fraction"] == 0.75
    macs = [r["report"].summary["executed_macs"] for r in runs.values()]
    assert macs[0] > macs[1] > macs[2]                  # each step induces more zeros
    assert "relu + drop" in repr(lab.sparsity_table(runs))


def test_the_answer_key_passes_every_check():
    sizes = {2: 400.0, 4: 120.0, 8: 40.0}
    base = lab.config("lesson-wafer")
    base["backend"] = "numpy"
    key = lab.answer_key(ON, TANH, sizes, base, SPARSE)
    assert key["1a"] == "fc2" and key["5a"] == "relu + drop" and key["5b"] == 2.0
    assert lab.check_best_kernel(key["1a"], ON).ok and lab.check_step_vs_kernel(key["1b"], ON).ok
    assert lab.check_activation(key["2"], ON, TANH).ok and lab.check_area_speedup(key["3"], sizes).ok
    assert lab.check_smallest_area(key["4"], base).ok
    assert lab.check_fastest_run(key["5a"], SPARSE).ok and lab.check_step_ratio(key["5b"], SPARSE).ok
