"""compiler.table_run: a run evaluated from tables, alone or together, is `cost.run_cycles` of
the kind's full components."""
from __future__ import annotations

import numpy as np

from compiler import cost
from compiler.evaluate import evaluate_together
from compiler.table_run import _run_grid, run_cycles
from tests.compiler.test_table import random_components


def test_a_run_from_the_table_is_the_full_evaluations():
    """`run_cycles` from a table's lookups equals `cost.run_cycles` on the kind's components,
    for runs that take the distinct samples any number of times, whichever way the table
    sums each pass term (by core row, by core column, or on every core)."""
    r = np.random.default_rng(8)
    ways = set()
    for _ in range(40):
        samples = int(r.integers(1, 6))
        table, components, shape = random_components(r, samples)
        rows = r.integers(0, samples, size=(int(r.integers(1, 4)), int(r.integers(1, 9))))
        np.testing.assert_array_equal(run_cycles(table, rows),
                                      cost.run_cycles(components, shape, rows))
        g = _run_grid(table.grid)
        ways |= {w for w, parts in (("row", g.by_row_to), ("col", g.by_col_to),
                                    ("product", g.products)) if parts}
    assert ways == {"row", "col", "product"}


def test_tables_together_run_as_each_alone():
    """Several tables with as many samples and the same runs, evaluated together, give each
    one's `cost.run_cycles`."""
    r = np.random.default_rng(9)
    for _ in range(20):
        samples = int(r.integers(1, 6))
        made = [random_components(r, samples) for _ in range(int(r.integers(1, 5)))]
        rows = r.integers(0, samples, size=(int(r.integers(1, 4)), int(r.integers(1, 9))))
        together = evaluate_together([table for table, _, _ in made], rows)
        assert together is not None
        for (table, components, shape), found in zip(made, together[0]):
            np.testing.assert_array_equal(found, cost.run_cycles(components, shape, rows))


def _joint_case(r, tables: int = 3, samples: int = 4):
    from compiler.table import joint_indices, joint_table
    from compiler.table_run import joint_runs
    made = [random_components(r, samples) for _ in range(tables)]
    found = [t for t, _, _ in made]
    plan = joint_runs(tuple(t.grid for t in found))
    return made, plan, joint_indices(found, joint_table(plan.grids))


def test_whole_number_runs_summed_in_float32_equal_float64s():
    """A matmul's parts and cycles are whole numbers, so its cores' run sums may be float32
    (half the memory): exactly what float64 gives."""
    from compiler.table_run import _runs_together
    r = np.random.default_rng(10)
    for _ in range(10):
        made, plan, (row, col) = _joint_case(r)
        assert plan.narrow is not None and np.isfinite(plan.bound)
        rows = r.integers(0, len(row), size=(2, 6))
        np.testing.assert_array_equal(_runs_together(plan, row, col, rows),
                                      _runs_together(plan._replace(narrow=None), row, col, rows))


def test_a_run_of_one_sample_every_time_is_kept_and_equals_the_full_evaluation():
    """The dense run takes one distinct sample for every sample: it is evaluated once per
    distinct indices and kept, and equals `cost.run_cycles` like the other runs."""
    from compiler.table_run import _UNIFORM_RUNS, joint_run_cycles
    r = np.random.default_rng(11)
    made, plan, (row, col) = _joint_case(r)
    rows = np.stack([np.arange(4) % len(row), np.full(4, len(row) - 1)])
    rows.flags.writeable = False
    first = joint_run_cycles(plan, row, col, rows)
    assert any(kept is plan for kept, _ in _UNIFORM_RUNS.values())
    again = joint_run_cycles(plan, row, col, rows)
    np.testing.assert_array_equal(first, again)
    for (table, components, shape), found in zip(made, first):
        np.testing.assert_array_equal(found, cost.run_cycles(components, shape, rows))
