"""bench/step_overhead.py's code path on the MLP at a couple of steps: the figures it prints are
the ones it records (`--record`), and its split of the simulator's step adds up. Nothing about
how fast either side is."""
from __future__ import annotations

import json

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("step_overhead")


def test_record_holds_what_is_printed(bench, tmp_path, capsys):
    out = tmp_path / "figures.json"
    bench.main(["--models", "mlp", "--steps", "2", "--warmup", "0", "--backend", "numpy",
                "--clock", "cpu", "--record", str(out)])
    printed = capsys.readouterr().out
    recorded = json.loads(out.read_text())
    assert recorded["clock"] == "cpu" and recorded["steps"] == 2
    mlp = recorded["models"]["mlp"]
    assert f"ratio simulator / eager: {mlp['ratio']:.2f}x" in printed
    assert mlp["ratio"] == pytest.approx(mlp["simulator_ms"] / mlp["eager_ms"])
    split = mlp["split_ms"]
    assert set(split) == {"numerics: joint graph", "numerics: optimizer update + host glue",
                          "timing measurement"}
    assert mlp["measurement_share"] == pytest.approx(split["timing measurement"] / sum(split.values()))
    assert 0.0 < mlp["measurement_share"] < 1.0
