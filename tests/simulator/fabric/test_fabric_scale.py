"""bench/fabric_scale.py's code path at tiny sizes, in a child process and in this one: it
runs, its numerics hold and it reports memory (the figures themselves are printed, never
asserted: wall-clock is not a test)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _bench():
    spec = importlib.util.spec_from_file_location("fabric_scale", ROOT / "bench" / "fabric_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("where", [["--in-process"], []])
def test_the_bench_runs_a_small_sweep_and_reports_memory(capsys, where):
    rows = _bench().main(["--sizes", "2", "3x5"] + where)
    assert [r["size"] for r in rows] == ["2x2", "3x5"]
    assert all(r["error"] < 1e-4 and r["cycles"] > 0 for r in rows)
    assert all(r["array_mb"] > 0 and r["peak_mb"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "core-cyc/s" in out and "arrays MB" in out


def test_a_size_is_rows_by_cols_a_square_or_a_wafers_whole_fabric():
    bench = _bench()
    assert bench.region("3x5") == (3, 5) and bench.region("4") == (4, 4)
    assert bench.region("wse2") == (757, 996)

