"""bench/fabric.py's code path at tiny sizes: it runs and its numerics hold (the figures
themselves are printed, never asserted)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_bench_runs_a_small_sweep(capsys):
    spec = importlib.util.spec_from_file_location("fabric_bench", ROOT / "bench" / "fabric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--sizes", "2", "4", "--tile", "4"])
    assert [r["size"] for r in rows] == [2, 4]
    assert all(r["error"] < 1e-4 and r["cycles"] > 0 for r in rows)
    assert "core-cycles/s" in capsys.readouterr().out
