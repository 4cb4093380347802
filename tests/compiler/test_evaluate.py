"""compiler.evaluate: tables evaluated together from their joint indices give each one's run
and sums, as each table alone gives them."""
from __future__ import annotations

import numpy as np

from compiler import cost
from compiler.evaluate import JointTables, evaluate_together
from compiler.table import evaluate_tables
from tests.compiler.test_table import random_components


def test_joint_tables_from_counts_equal_each_table_alone():
    """`JointTables.indices` of the tables' counts laid side by side, then `evaluate`: every
    table's run is `cost.run_cycles` of its components and its sums are its own table's."""
    r = np.random.default_rng(13)
    for _ in range(10):
        samples = int(r.integers(2, 5))
        made = [random_components(r, samples) for _ in range(int(r.integers(2, 4)))]
        tables = [t for t, _, _ in made]
        joint = JointTables.of(tuple(t.grid for t in tables))
        rows = r.integers(0, samples, size=(2, 7))
        runs, sums = joint.evaluate(*joint.indices(np.concatenate([t.x for t in tables], axis=1),
                                                   np.concatenate([t.dy for t in tables], axis=1)),
                                    rows)
        for n, ((table, components, shape), (_, alone)) in enumerate(
                zip(made, evaluate_tables(tables, busiest=False))):
            np.testing.assert_array_equal(runs[n], cost.run_cycles(components, shape, rows))
            np.testing.assert_array_equal(sums[:, n], alone)
        together = evaluate_together(tables, rows)
        np.testing.assert_array_equal(together[0], runs)
        np.testing.assert_array_equal(together[1], sums)
