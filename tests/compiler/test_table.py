"""compiler.table: tables looked up together give what each core's full evaluation gives."""
from __future__ import annotations

import numpy as np

from compiler import cost
from compiler.cost import tile_sizes
from compiler.kernels import matmul_kernel
from compiler.kernels.matmul import MATMUL
from compiler.kernels.matmul.counts import MatmulCounts
from compiler.mapping import Mapping
from compiler.table import Table, evaluate_tables
from compiler.target import wafer

T = wafer("classroom")


def random_table(r, samples: int) -> tuple[Table, np.ndarray]:
    """A matmul's table on random counts (one token per sample), and every core's cycles from
    the kind's full evaluation."""
    table, components, shape = random_components(r, samples)
    return table, cost.per_core_cycles(components, shape)


def random_components(r, samples: int):
    """A matmul's table on random counts (one token per sample), the kind's components of the
    same counts, and their shape (samples, calls, rows, cols)."""
    k, n = int(r.integers(1, 200)), int(r.integers(1, 200))
    rows, cols = int(r.integers(1, min(k, 12) + 1)), int(r.integers(1, min(n, 12) + 1))
    kernel = matmul_kernel("fc", k, n, samples, dx=bool(r.integers(0, 2)))
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    x = np.floor(r.random((samples, rows)) * (tk + 1)).astype(np.float32)
    dy = np.floor(r.random((samples, cols)) * (tn + 1)).astype(np.float32)
    counts, mapping = MatmulCounts(x, dy, np.ones(samples, dtype=np.float32)), Mapping(rows, cols)
    return (MATMUL.tabulate(kernel, counts, mapping, T),
            MATMUL.components(kernel, counts, mapping, T), (samples, 1, rows, cols))


def test_tables_together_give_each_cores_full_evaluation():
    """Several tables, some with as many samples (looked up as one joint table) and some not:
    each one's busiest core and its cycles summed over the cores are the full evaluation's."""
    r = np.random.default_rng(5)
    for _ in range(20):
        samples = [int(s) for s in r.choice([1, 3, 4], size=int(r.integers(1, 6)))]
        made = [random_table(r, s) for s in samples]
        found = evaluate_tables([table for table, _ in made])
        for (table, full), (busiest, sums) in zip(made, found):
            np.testing.assert_array_equal(table.cores(), full)
            np.testing.assert_array_equal(busiest, cost.busiest_core(full))
            np.testing.assert_allclose(sums, full.reshape(len(full), -1).sum(axis=1), rtol=1e-12)


def test_a_table_alone_is_the_same_as_in_company():
    r = np.random.default_rng(6)
    made = [random_table(r, 4)[0] for _ in range(4)]
    together = evaluate_tables(made)
    sums_only = evaluate_tables(made, busiest=False)
    for table, (busiest, sums), (none, same) in zip(made, together, sums_only):
        np.testing.assert_array_equal(table.busiest(), busiest)
        np.testing.assert_array_equal(table.sums(), sums)
        assert none is None
        np.testing.assert_array_equal(same, sums)


def test_indices_are_offsets_plus_counts():
    table, _ = random_table(np.random.default_rng(7), 3)
    np.testing.assert_array_equal(table.row, table.grid.row_offset + table.x)
    np.testing.assert_array_equal(table.col, table.grid.col_offset + table.dy)
    assert table.row.max() < table.grid.cycles.shape[0] and table.col.max() < table.grid.cycles.shape[1]

