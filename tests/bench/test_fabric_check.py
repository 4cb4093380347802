"""bench/fabric_check.py: the analytic model agrees with the fabric model (the reference)
within 10% (issue 15), on a few cases of the suite: each kind, each mapping, each density."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from compiler.target import wafer

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fabric_check", ROOT / "bench" / "fabric_check.py")
fabric_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fabric_check)

TARGET = wafer("classroom")
SUBSET = [("matmul forward", "square", 0.5), ("matmul backward", "tall", 0.1),
          ("generated", "wide", 1.0), ("matmul forward", "replicated", 1.0),
          ("matmul backward", "uneven", 0.5), ("matmul forward", "one core", 0.1),
          ("generated", "uneven", 0.5), ("matmul backward", "wide", 0.5)]


@pytest.mark.parametrize("kind,shape,density", SUBSET)
def test_the_analytic_model_agrees_with_the_fabric_within_ten_percent(kind, shape, density):
    c = fabric_check.case(np, TARGET, kind, shape, density)
    assert abs(c.ratio - 1.0) <= fabric_check.TOLERANCE, c.table()
    assert c.error < 1e-4                        # the fabric computed the right numbers


def test_the_suite_covers_the_issue_and_the_table_says_how_many_agree(capsys):
    """At least 30 cases over the kinds, mappings (square, tall, wide, replicated), densities
    1, 0.5 and 0.1, and batches of 2 and more; the table is printed with its count."""
    shapes = fabric_check.SHAPES
    assert {"square", "tall", "wide", "replicated"} <= set(shapes)
    assert len(fabric_check.KINDS) * len(shapes) * len(fabric_check.DENSITIES) >= 30
    assert min(s.batch for s in shapes.values()) >= 2
    assert len({s.batch for s in shapes.values()}) > 1
    rows = fabric_check.cases(np, TARGET, kinds=("generated",), shapes=("square",),
                              densities=(1.0,))
    fabric_check.print_cases(rows)
    out = capsys.readouterr().out
    assert "generated" in out and "1 of 1 cases within 10%" in out


def test_an_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown kind 'conv'"):
        fabric_check.case(np, TARGET, "conv", "square", 1.0)


@pytest.mark.parametrize("shape,mask", [("square", 0.5), ("wide", "causal"), ("one core", 1.0)])
def test_attention_agrees_with_the_fabric_within_ten_percent(shape, mask):
    c = fabric_check.attention_case(np, TARGET, shape, mask)
    assert abs(c.ratio - 1.0) <= fabric_check.TOLERANCE, c.table()
    assert c.error < 1e-5


def test_the_replicas_all_reduce_agrees_within_ten_percent_and_is_printed(capsys):
    rows = fabric_check.ring_cases(np, TARGET, rings=("2 replicas", "4 replicas wide",
                                                      "4 replicas 3 cols", "8 replicas 4 cols"))
    assert all(fabric_check.within(r) for r in rows) and all(r["error"] < 1e-4 for r in rows)
    fabric_check.print_cases(rows)
    assert "all-reduce" in capsys.readouterr().out
