"""bench/sparsity_table.py's code path, at --fast sizes: the mechanism behind the seed's table
(ReLU insertion and induced sparsity make the wafer faster, more sparsity more so), not figures."""
from __future__ import annotations

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def fc34():
    return load_bench("sparsity_table").main(["--fast", "--only", "fc34"])


def _row(rows, prefix):
    return next(r for r in rows if r["variant"].startswith(prefix))


def test_bench_prints_ours_next_to_the_seed(fc34, capsys):
    from wsebench.sparsity_experiments import format_table
    text = format_table(fc34)
    assert [r["variant"] for r in fc34] == ["as is (tanh)", "ReLU inserted", "ReLU + 50% induced"]
    assert "1.7x" in text and "2.4x" in text and "fc34:" in text
    base = _row(fc34, "as is")
    assert base["speedup"] == 1.0
    for r in fc34:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["samples_per_s"] > 0


def _matmul_speedup(row) -> float:
    """The matmul kernels' dense cycles over their measured cycles, in one run (one plan)."""
    kernels = [k for k in row["session"].report().kernels if k["kind"] == "matmul"]
    return sum(k["dense_cycles"] for k in kernels) / sum(k["cycles"] for k in kernels)


def test_relu_and_induced_sparsity_are_harvested(fc34):
    """Within each run, harvesting off vs on: more zeros, faster matmul kernels."""
    relu, induced = _row(fc34, "ReLU inserted"), _row(fc34, "ReLU + 50%")
    assert _matmul_speedup(induced) > _matmul_speedup(relu) > _matmul_speedup(fc34[0]) == 1.0
    assert relu["speedup"] > 1.0, "ReLU's zeros make the wafer faster than the tanh baseline"
    drop = [t for t in induced["session"].report().tensors if t["kind"] == "drop"]
    assert drop and all(t["density"] <= 0.5 for t in drop)


def test_induced_sparsity_beats_relu_alone_end_to_end(fc34):
    """Step against step, each variant compiled for its own densities."""
    induced = _row(fc34, "ReLU + 50%")
    # the drop runs on its producer's cores; a region of its own would be a dense stage
    assert not any("drop_small" in k.name for k in induced["session"].plan.kernels)
    assert induced["speedup"] > _row(fc34, "ReLU inserted")["speedup"] > 1.0
