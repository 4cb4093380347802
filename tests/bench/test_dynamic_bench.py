"""bench/dynamic.py's code path, at --fast sizes: the mechanisms behind its table (ACT ponders no
more than max_steps and never costs more than fixed depth; pads cost nothing), not figures."""
from __future__ import annotations

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("dynamic").main(["--fast"])


def test_act_ponders_at_most_max_steps_and_is_no_slower(bench, capsys):
    rows, _ = bench
    fixed, act = rows
    max_steps = fixed["session"].model.max_steps
    assert fixed["mean_ponder_steps"] == pytest.approx(max_steps)
    assert 1.0 <= act["mean_ponder_steps"] <= max_steps
    assert act["speedup_vs_own_fixed_depth"] >= 1.0
    assert fixed["speedup"] == 1.0 and act["speedup"] > 0
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0
    assert act["last"]["active_fraction_per_step"][0] == 1.0


def test_unpadded_run_is_faster_than_the_padded_one(bench):
    _, padded = bench
    assert padded["speedup"] > 1.0 and padded["padded_cycles"] > padded["cycles"]
    assert 0.0 < padded["data_padding_fraction"] < 1.0


def test_the_table_names_every_figure(bench):
    from wsebench.dynamic import format_table
    rows, padded = bench
    text = format_table(rows, padded)
    for label in ("fixed depth", "ACT", "ponder steps", "accuracy", "padding share",
                  "unpadded speedup"):
        assert label in text
