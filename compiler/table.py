"""Tabulated evaluation: per-core cycles looked up in a table of every input a core can have.

When each core's cycles follow from a couple of small counts of its own (a matmul core with one
token: the non-zeros of its x tile and of its dY tile), a kind evaluates its components once on
every count a core can have (`Grid.cycles`) and each core of each sample is a lookup. The
numbers are those of the full evaluation (`compiler.cost.per_core_cycles`); only the work
differs. A step's tables with as many samples are evaluated together (`evaluate_tables`): a
handful of array operations for all its kernels instead of a handful for each, which is most of
what a small model's step costs to measure.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import numpy as np



class Grid(NamedTuple):
    """A kind's table: `cycles` (I, J) of a core for every pair of inputs it can have; a core
    row's table rows start at `row_offset` (one per core row), a core column's at
    `col_offset`. The core rows (columns) fall into contiguous runs starting at `row_runs`
    (`col_runs`) whose indices run through one block of the table along which the cycles never
    fall (more non-zeros never cost less), so a sample's busiest core is at the largest index
    it uses in each run. `passes` (4, I, J): each pass's work and link (`cost.pass_terms`,
    forward then backward), which a run sums (`table_run`); None: the run is evaluated whole.
    Kinds cache their grids: a step's joint table is kept while the same grids come back."""
    cycles: np.ndarray
    row_offset: np.ndarray
    col_offset: np.ndarray
    row_runs: np.ndarray
    col_runs: np.ndarray
    passes: np.ndarray | None = None


class Table(NamedTuple):
    """Core (r, c) of distinct sample u takes `grid.cycles[row[u, r], col[u, c]]` (forward +
    backward): table row `row_offset[r] + x[u, r]` and column `col_offset[c] + dy[u, c]` for its
    counts `x` (U, rows) and `dy` (U, cols), exact small integers. `count_macs()` gives the
    MACs (U,) each sample executes."""
    grid: Grid
    x: np.ndarray
    dy: np.ndarray
    count_macs: Any

    @property
    def row(self) -> np.ndarray:
        return table_index(self.x, self.grid.row_offset)

    @property
    def col(self) -> np.ndarray:
        return table_index(self.dy, self.grid.col_offset)

    def busiest(self) -> np.ndarray:
        """(U,) each sample's busiest core."""
        return evaluate_tables([self])[0][0]

    def sums(self) -> np.ndarray:
        """(U,) each sample's cycles summed over its cores."""
        return evaluate_tables([self])[0][1]

    def cores(self) -> np.ndarray:
        """(U, rows, cols) every core's cycles."""
        return self.grid.cycles[self.row[:, :, None], self.col[:, None, :]]


class Counter(NamedTuple):
    """A kind's tabulated counts taken straight from a step's tensors, for a step without
    markers or masked weights (`simulator.measure.compiled`): `grid` the kernel's table;
    `dense` (x (rows,), dy (cols,)) the counts of a sample whose every value counts (harvesting
    off); `count(xp, env)` each sample's (x (S, rows), dy (S, cols)) non-zeros, on `xp`;
    `counts(x, dy, rows)` the kind's `Counts` of such counts (U distinct samples) read by
    `rows` (V, S), whose `tabulate` is this table: what a report's timing is made from."""
    grid: Grid
    dense: tuple
    count: Callable
    counts: Callable


def table_index(counts: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Table indices: counts (exact small integers, as floats) plus offsets."""
    return (counts + offset).astype(np.int32)


def evaluate_tables(tables: list[Table], busiest: bool = True) -> list[tuple[Any, np.ndarray]]:
    """Each table's (busiest core (U,), cycles summed over its cores (U,)), the tables with as
    many samples evaluated together as one block-diagonal table; busiest None unless asked."""
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tables):
        groups.setdefault(len(t.x), []).append(i)
    out: list = [None] * len(tables)
    for members in groups.values():
        top, sums = _evaluate([tables[i] for i in members], busiest)
        for n, i in enumerate(members):
            out[i] = top[:, n] if busiest else None, sums[:, n]
    return out


def _evaluate(tables: list[Table], busiest: bool = True) -> tuple[Any, np.ndarray]:
    """(U, K) busiest and summed cycles (`joint_sums`) of `tables`. Busiest: the largest index
    each sample uses in each run, every pair of a row run and a column run of a table looked
    up, the largest pair per table."""
    joint = joint_table(tuple(t.grid for t in tables))
    row, col = joint_indices(tables, joint)
    largest = None
    if busiest:
        width = joint.cycles.shape[1]
        top = np.maximum.reduceat(row, joint.row_runs, axis=1)
        right = np.maximum.reduceat(col, joint.col_runs, axis=1)
        corners = joint.cycles.take(top[:, joint.pair_row] * width + right[:, joint.pair_col])
        largest = np.maximum.reduceat(corners, joint.pair_starts, axis=1)
    return largest, joint_sums(joint, row, col)


def joint_sums(joint: "_Joint", row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """(U, K) each sample's cycles summed over the cores of each table, from their joint table
    indices (`joint_indices`): how many of a sample's cores use each table column, times the
    table, gives each table row's cycles summed over the sample's columns; those of the
    sample's core rows are summed per table."""
    samples, (height, width) = len(row), joint.cycles.shape
    counts = _histogram(col, width)
    per_row = counts @ joint.transposed if len(joint.blocks) == 1 else np.concatenate(   # (U, I)
        [counts[:, j0:j1] @ block for j0, j1, block in joint.blocks], axis=1)
    picked = per_row.take(row + _row_starts(samples, height))
    return np.add.reduceat(picked, joint.row_starts, axis=1, dtype=np.float64)


def joint_indices(tables: list[Table], joint: "_Joint") -> tuple[np.ndarray, np.ndarray]:
    """(U, all rows), (U, all columns): the joint table's index of every core row and column of
    `tables`, each sample's. A step's sums and runs look up the same tables one after the
    other, so the last answer is kept while the same counts come back (keyed by identity)."""
    def indices(_):
        return (table_index(_joined([t.x for t in tables]), joint.row_base),
                table_index(_joined([t.dy for t in tables]), joint.col_base))
    return cached_by_identity(_INDICES, (joint, *(t.x for t in tables), *(t.dy for t in tables)),
                              indices, keep=1)


_INDICES: dict = {}


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class _Joint(NamedTuple):
    """Tables as one block-diagonal table (and its transpose, contiguous): the table offset of
    each core row and column (`row_base`, `col_base`: its own table's offset plus where that
    table's block starts), the runs of every table in the joined core rows and
    columns, the (row run, column run) pairs of each table, and where each table's pairs and
    core rows start; `blocks` each table's columns (start, stop) and its own transpose, whose
    products with a histogram are the joint one's without its blocks of zeros."""
    cycles: np.ndarray
    transposed: np.ndarray
    row_base: np.ndarray
    col_base: np.ndarray
    row_runs: np.ndarray
    col_runs: np.ndarray
    pair_row: np.ndarray
    pair_col: np.ndarray
    pair_starts: np.ndarray
    row_starts: np.ndarray
    blocks: tuple


_JOINTS: dict = {}


def joint_table(grids: tuple[Grid, ...]) -> _Joint:
    """The grids as one block-diagonal table (cached by identity)."""
    return cached_by_identity(_JOINTS, grids, _build)


def cached_by_identity(cache: dict, grids: tuple, build, keep: int = 64):
    """`build(grids)`, cached in `cache` while the same grids come back: keyed by their
    identity, holding them so an identity is never reused; cleared past `keep` entries."""
    key = tuple(map(id, grids))
    hit = cache.get(key)
    if hit is not None:
        return hit[1]
    if len(cache) >= keep:
        cache.clear()
    value = build(grids)
    cache[key] = (grids, value)
    return value


def _build(grids: tuple[Grid, ...]) -> _Joint:
    """The joint table of `grids` (see `_Joint`)."""
    heights = np.array([g.cycles.shape[0] for g in grids])
    widths = np.array([g.cycles.shape[1] for g in grids])
    top, left = _starts(heights), _starts(widths)
    table = np.zeros((heights.sum(), widths.sum()), dtype=np.result_type(*(g.cycles for g in grids)))
    for g, i, j in zip(grids, top, left):
        table[i:i + g.cycles.shape[0], j:j + g.cycles.shape[1]] = g.cycles
    first_row = _starts(np.array([len(g.row_offset) for g in grids]))
    first_col = _starts(np.array([len(g.col_offset) for g in grids]))
    pair_row, pair_col, pair_starts, run_row, run_col = [], [], [], 0, 0
    for g in grids:
        pair_starts.append(len(pair_row))
        pair_row += [run_row + i for i in range(len(g.row_runs)) for _ in range(len(g.col_runs))]
        pair_col += [run_col + j for _ in range(len(g.row_runs)) for j in range(len(g.col_runs))]
        run_row, run_col = run_row + len(g.row_runs), run_col + len(g.col_runs)
    transposed = np.ascontiguousarray(table.T)
    table.flags.writeable = transposed.flags.writeable = False
    return _Joint(table, transposed,
                  np.concatenate([g.row_offset + s for g, s in zip(grids, top)]).astype(np.float32),
                  np.concatenate([g.col_offset + s for g, s in zip(grids, left)]).astype(np.float32),
                  np.concatenate([g.row_runs + s for g, s in zip(grids, first_row)]),
                  np.concatenate([g.col_runs + s for g, s in zip(grids, first_col)]),
                  np.array(pair_row), np.array(pair_col), np.array(pair_starts), first_row,
                  tuple((j, j + w, transposed[j:j + w, i:i + h])
                        for (h, w), i, j in zip((g.cycles.shape for g in grids), top, left)))


def _starts(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)


def _histogram(index: np.ndarray, size: int) -> np.ndarray:
    """(U, size) float32: how many entries of each row of `index` (U, n) take each value."""
    samples = len(index)
    flat = np.add(index, _row_starts(samples, size)).ravel()
    return np.bincount(flat, minlength=samples * size).reshape(samples, size).astype(np.float32)


@functools.lru_cache(maxsize=256)
def _row_starts(samples: int, size: int) -> np.ndarray:
    starts = np.arange(samples)[:, None] * size
    starts.flags.writeable = False
    return starts
