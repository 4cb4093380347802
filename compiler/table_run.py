"""A tabulated kernel's run: `cost.run_cycles` from its table's lookups.

A run takes, on each core, each pass's max(work summed over the run, link summed over the run)
(`cost.run_cycles`). The grid keeps each pass's work and link of every table cell
(`Grid.passes`); each term is split once per grid into parts a run sums with a few array
operations (`_split`): a part that one of a core's counts leaves unchanged is summed per core
row (or column) and read at each core's run of equal tile kinds, dW's dY x ceil(nnz(x) / simd)
is one checked outer product. `run_cycles` does one table; `joint_run_cycles` does a step's
tables of as many samples together from their joint indices (`table.joint_indices`), as
`table.joint_sums` does their sums: one gather and one product for all their cores, their
busiest cores found per table by segment (`joint_runs` lays them out once per set of grids).
Both charge the samples as `cost.share_runs` does.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import cost
from .table import Grid, Table, cached_by_identity, joint_table

def run_cycles(table: Table, rows: np.ndarray) -> np.ndarray | None:
    """(V, S) `cost.run_cycles` of the table's samples (`rows` (V, S) the distinct sample of
    each), from lookups (`cost.share_runs`); None when its grid has no pass terms."""
    if table.grid.passes is None:
        return None
    row, col, g = table.row, table.col, _run_grid(table.grid)

    def at(r, c):                                                            # (U, V)
        return g.cycles.take(row.take(r, axis=1) * table.grid.cycles.shape[1] + col.take(c, axis=1))
    return cost.share_runs(rows, len(row), (row.shape[1], col.shape[1]),
                           lambda times: _run_sums(g, row, col, times), at)


class _RunGrid(NamedTuple):
    """A grid's four pass terms split into parts a run sums cheaply. A part that depends on a
    core column only through the column's run of equal tile kinds (a count of dY does not
    change it) is read off `by_row` (I, column runs, n) at the core row's table index: one
    gather and one product for all such parts (`by_row_to`: the term each adds to); `by_col`
    (J, row runs, n), `by_col_to` likewise with rows and columns swapped; `products` (P (I,),
    Q (J,), term): a part P[i] Q[j] (dW's dY times ceil(nnz(x) / simd)), one (rows x samples)
    (samples x cols) product per run; `dense` (grid (I, J), term): looked up on every core.
    `col_run`, `row_run`: the run of each core column (row); `cycles` the grid's cycles,
    flat, in float64."""
    by_row: np.ndarray | None
    by_row_to: tuple[int, ...]
    by_col: np.ndarray | None
    by_col_to: tuple[int, ...]
    products: tuple
    dense: tuple
    col_run: np.ndarray
    row_run: np.ndarray
    cycles: np.ndarray


_RUN_GRIDS: dict = {}


def _run_grid(grid: Grid) -> _RunGrid:
    """Cached while the grid lives (keyed by its identity, holding it)."""
    hit = _RUN_GRIDS.get(id(grid))
    if hit is not None and hit[0] is grid:
        return hit[1]
    if len(_RUN_GRIDS) > 256:
        _RUN_GRIDS.clear()
    sc = _block_starts(grid.col_offset, grid.passes.shape[2])
    sr = _block_starts(grid.row_offset, grid.passes.shape[1])
    parts: dict[str, list] = {"row": [], "col": [], "product": [], "dense": []}
    for i, t in enumerate(grid.passes):
        for way, part in _split(t, sr, sc):
            parts[way].append((part, i))
    col_at = grid.col_offset[grid.col_runs].astype(np.intp)
    row_at = grid.row_offset[grid.row_runs].astype(np.intp)
    by_row = [part[:, col_at] for part, _ in parts["row"]]
    by_col = [part[row_at].T for part, _ in parts["col"]]
    out = _RunGrid(np.stack(by_row, axis=-1) if by_row else None, tuple(i for _, i in parts["row"]),
                   np.stack(by_col, axis=-1) if by_col else None, tuple(i for _, i in parts["col"]),
                   tuple((p, q, i) for (p, q), i in parts["product"]), tuple(parts["dense"]),
                   _run_of(grid.col_runs, len(grid.col_offset)),
                   _run_of(grid.row_runs, len(grid.row_offset)),
                   grid.cycles.ravel().astype(np.float64))
    _RUN_GRIDS[id(grid)] = (grid, out)
    return out


def _split(t: np.ndarray, sr: np.ndarray, sc: np.ndarray) -> list[tuple[str, Any]]:
    """Term `t` (I, J) as parts: itself if it depends on a column (row) only through its
    block (`sc`, `sr`: each index's block start, count zero); else, when its values are
    whole numbers (the sums are then exact in any order), t[i, sc] - t[sr, sc] (by row) +
    t[sr, j] (by column) + what is left, when that is exactly one outer product P Q (checked
    cell by cell); else the whole term, looked up on every core."""
    if np.array_equal(t, t[:, sc]):
        return [("row", t)]
    if np.array_equal(t, t[sr]):
        return [("col", t)]
    if not np.array_equal(t, np.round(t)):
        return [("dense", t)]
    by_row, by_col = t[:, sc] - t[sr][:, sc], t[sr]
    rest = t - by_row - by_col
    nonzero = np.flatnonzero(rest)
    if len(nonzero) == 0:
        return [("row", by_row), ("col", by_col)]
    i, j = np.unravel_index(nonzero[np.argmin(np.abs(rest.flat[nonzero]))], rest.shape)
    p, q = rest[:, j], rest[i] / rest[i, j]
    if not np.array_equal(np.outer(p, q), rest):
        return [("dense", t)]
    return [("row", by_row), ("col", by_col), ("product", (p, q))]


def _block_starts(offsets: np.ndarray, size: int) -> np.ndarray:
    """(size,) the first table index of the block (one tile kind's counts) each index is in."""
    starts = np.unique(offsets.astype(np.intp))
    return starts[np.searchsorted(starts, np.arange(size), side="right") - 1]


def _run_of(runs: np.ndarray, cores: int) -> np.ndarray:
    return np.searchsorted(runs, np.arange(cores), side="right") - 1


def _run_sums(g: _RunGrid, row: np.ndarray, col: np.ndarray, times: np.ndarray) -> list:
    """Each pass's (work, link) of every core (V, rows, cols) summed over each run."""
    variants, samples = times.shape
    parts: list = []                                  # (term, its part summed over each run)
    if g.by_row_to:
        picked = g.by_row.take(row, axis=0)                              # (U, rows, runs, n)
        summed = (times @ picked.reshape(samples, -1)).reshape((variants,) + picked.shape[1:])
        summed = summed.take(g.col_run, axis=2)
        parts += [(i, summed[..., n]) for n, i in enumerate(g.by_row_to)]
    if g.by_col_to:
        picked = g.by_col.take(col, axis=0)                              # (U, cols, runs, n)
        summed = (times @ picked.reshape(samples, -1)).reshape((variants,) + picked.shape[1:])
        summed = summed.take(g.row_run, axis=2).transpose(0, 2, 1, 3)
        parts += [(i, summed[..., n]) for n, i in enumerate(g.by_col_to)]
    for p, q, i in g.products:
        weighted = times[:, None, :] * p.take(row).T                     # (V, rows, U)
        summed = weighted.reshape(-1, samples) @ q.take(col)
        parts.append((i, summed.reshape(variants, -1, summed.shape[-1])))
    for term, i in g.dense:
        index = (row * term.shape[1])[:, :, None] + col[:, None, :]      # (U, rows, cols)
        picked = term.take(index)
        parts.append((i, (times @ picked.reshape(samples, -1)).reshape(variants, *index.shape[1:])))
    out: list = [None] * 4
    for i, part in parts:
        out[i] = part if out[i] is None else out[i] + part
    return [(out[0], out[1]), (out[2], out[3])]


# ------------------------------------------------------------------------ tables together

def joint_run_cycles(plan: "_JointRuns", row: np.ndarray, col: np.ndarray,
                     rows: np.ndarray) -> np.ndarray:
    """(K, V, S) `run_cycles` of the tables of `plan` from their joint table indices `row`
    (U, all rows), `col` (U, all columns) (`table.joint_indices`). A run that charges one
    distinct sample for every sample (the dense run, whose counts are every value) is
    evaluated once per distinct indices of that sample and kept (`_uniform_run`); the others
    together (`_runs_together`)."""
    uniform, rest = _uniform_runs(rows)
    if not uniform:
        return _runs_together(plan, row, col, rows)
    out = np.empty((len(plan.sizes),) + rows.shape)
    if rest is not None:
        out[:, rest[0]] = _runs_together(plan, row, col, rest[1])
    for v, u in uniform:
        out[:, v] = _uniform_run(plan, row[u], col[u], rows.shape[1])
    return out


_UNIFORM: dict = {}


def _uniform_runs(rows: np.ndarray) -> tuple[list, Any]:
    """The runs of `rows` (V, S) that take one distinct sample for every sample, as (run,
    sample) pairs, and the others (their indices, their rows, read-only), or None; kept for
    read-only `rows` (the kinds' cached `Counts.rows`, which come back every step)."""
    if rows.flags.writeable:
        return _split_runs(rows)
    return cached_by_identity(_UNIFORM, (rows,), lambda key: _split_runs(key[0]))


def _split_runs(rows: np.ndarray) -> tuple[list, Any]:
    same = (rows == rows[:, :1]).all(axis=1)
    uniform = [(v, int(rows[v, 0])) for v in np.flatnonzero(same)] if len(rows) > 1 else []
    rest = np.flatnonzero(~same)
    if not len(rest):
        return uniform, None
    others = rows[rest]
    others.flags.writeable = False
    return uniform, (rest, others)


_UNIFORM_RUNS: dict = {}


def _uniform_run(plan: "_JointRuns", row: np.ndarray, col: np.ndarray, samples: int) -> np.ndarray:
    """(K, S) the run that takes the sample of joint indices `row`, `col` every time: as
    `_runs_together` evaluates it (the other samples' times are zeros, which add nothing),
    kept per plan and indices."""
    key = (id(plan), samples, row.tobytes(), col.tobytes())
    hit = _UNIFORM_RUNS.get(key)
    if hit is not None and hit[0] is plan:
        return hit[1]
    if len(_UNIFORM_RUNS) > 256:
        _UNIFORM_RUNS.clear()
    value = _runs_together(plan, row[None], col[None], np.zeros((1, samples), dtype=np.intp))[:, 0]
    value.flags.writeable = False
    _UNIFORM_RUNS[key] = (plan, value)
    return value


def _runs_together(plan: "_JointRuns", row: np.ndarray, col: np.ndarray,
                   rows: np.ndarray) -> np.ndarray:
    """(K, V, S) `joint_run_cycles` of every run: one gather and one product for every core's
    parts summed by row and by column, one product for every table's outer product (its
    block of the joint core rows x columns), their busiest cores found per table by segment.
    Where every part and cycle is a whole number and no sum can reach 2**24
    (`_JointRuns.bound`), the cores' sums are float32, exact as float64's in any order, at
    half the memory."""
    times, index = cost.run_times(rows, len(row))
    variants, samples = times.shape
    narrow = plan.narrow is not None and rows.shape[1] * plan.bound < 2**24
    by_row, by_col, p, q = plan.narrow if narrow else (plan.by_row, plan.by_col, plan.p, plan.q)
    weights = times.astype(np.float32) if narrow else times
    summed_rows = (weights @ by_row.take(row, axis=0).reshape(samples, -1)).reshape(variants, -1)
    summed_cols = (weights @ by_col.take(col, axis=0).reshape(samples, -1)).reshape(variants, -1)
    terms = summed_rows.take(plan.row_parts, axis=1)                           # (V, 4, cores)
    terms += summed_cols.take(plan.col_parts, axis=1)
    if plan.products is not None:                         # whole numbers: exact in any order
        weighted = weights[:, None, :] * p.take(row).T                         # (V, rows, U)
        products = (weighted @ q.take(col)).reshape(variants, -1)              # (V, rows cols)
        products = np.concatenate([products, np.zeros((variants, 1), products.dtype)], axis=1)
        terms += products.take(plan.products, axis=1)
    total = cost.passes_total((terms[:, 2 * p], terms[:, 2 * p + 1]) for p in range(2))
    largest = np.maximum.reduceat(total, plan.starts, axis=1)                  # (V, K)
    first = np.where(total == largest.repeat(plan.sizes, axis=1), plan.cores, len(plan.cores))
    busiest = np.minimum.reduceat(first, plan.starts, axis=1)                  # (V, K)
    at = row.take(plan.core_row.take(busiest), axis=1) * plan.width + \
        col.take(plan.core_col.take(busiest), axis=1)
    core = plan.cycles.take(at)                                                # (U, V, K)
    charged = (times[:, None, :] @ core.transpose(1, 0, 2))[:, 0] if narrow else \
        np.einsum("vu,uvk->vk", times, core)              # whole numbers: exact in any order
    scale = cost.run_scale(largest.astype(np.float64), charged)
    per_kernel = core.transpose(2, 1, 0).reshape(len(plan.sizes), -1)          # (K, V U)
    return per_kernel.take(index, axis=1) * scale.T[:, :, None]


class _JointRuns(NamedTuple):
    """Tables' run parts laid out together, rows and columns numbered as their joint table's
    (`table.joint_table`): `by_row` (all table rows, width) every table's by-row parts, flat per
    row; `by_col` likewise; `row_parts`, `col_parts` (4, cores) where each core's part of
    each term lies among the sums by row (by column; a table row's last slot is a zero); `p`
    (all table rows,), `q` (all table columns,) the outer products, `products` (4, cores) where
    each core's product lies among all core rows x all core columns (then a zero), None
    without one; `starts`, `sizes` each table's first core
    and cores; `cores` every core's number; `core_row`, `core_col` its joint core row and
    column; `cycles` the joint table's cycles, flat, float64, `width` its columns. Where every
    part and cycle is a whole number, `narrow` holds `by_row`, `by_col`, `p`, `q` as float32
    and `bound` what a core's run can sum to per sample charged (twice the largest part by
    row, by column and product); else None and infinity."""
    grids: tuple
    by_row: np.ndarray
    by_col: np.ndarray
    row_parts: np.ndarray
    col_parts: np.ndarray
    p: np.ndarray
    q: np.ndarray
    products: np.ndarray | None
    starts: np.ndarray
    sizes: np.ndarray
    cores: np.ndarray
    core_row: np.ndarray
    core_col: np.ndarray
    cycles: np.ndarray
    width: int
    narrow: tuple | None
    bound: float


_JOINT_RUNS: dict = {}


def joint_runs(grids: tuple[Grid, ...]) -> _JointRuns | None:
    """The grids' runs summed together, or None where one cannot be (cached by identity)."""
    return cached_by_identity(_JOINT_RUNS, grids, _joint_runs_of)


def _joint_runs_of(grids: tuple[Grid, ...]) -> _JointRuns | None:
    if all(g.passes is not None for g in grids):
        runs = [_run_grid(g) for g in grids]
        if all(not r.dense and len(r.products) <= 1 for r in runs):
            return _build_joint(grids, runs)
    return None


def _build_joint(grids: tuple[Grid, ...], runs: list) -> _JointRuns:
    heights = [g.cycles.shape[0] for g in grids]
    widths = [g.cycles.shape[1] for g in grids]
    core_rows = [len(g.row_offset) for g in grids]
    core_cols = [len(g.col_offset) for g in grids]
    # one more column than any table's parts, always zero: where a core's term has no part
    row_width = 1 + max(r.by_row[0].size if r.by_row is not None else 0 for r in runs)
    col_width = 1 + max(r.by_col[0].size if r.by_col is not None else 0 for r in runs)
    by_row, by_col = np.zeros((sum(heights), row_width)), np.zeros((sum(widths), col_width))
    p, q = np.zeros(sum(heights)), np.zeros(sum(widths))
    top, left = np.cumsum([0] + heights[:-1]), np.cumsum([0] + widths[:-1])
    first_row, first_col = np.cumsum([0] + core_rows[:-1]), np.cumsum([0] + core_cols[:-1])
    sizes = np.array([a * b for a, b in zip(core_rows, core_cols)])
    starts = np.cumsum(np.concatenate([[0], sizes[:-1]])).astype(np.intp)
    row_parts, col_parts, core_row, core_col, products = [], [], [], [], []
    for k, r in enumerate(runs):
        h, w = heights[k], widths[k]
        if r.by_row is not None:
            by_row[top[k]:top[k] + h, :r.by_row[0].size] = r.by_row.reshape(h, -1)
        if r.by_col is not None:
            by_col[left[k]:left[k] + w, :r.by_col[0].size] = r.by_col.reshape(w, -1)
        rr, cc = np.meshgrid(np.arange(core_rows[k]), np.arange(core_cols[k]), indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        jr, jc = first_row[k] + rr, first_col[k] + cc
        from_rows = np.repeat([jr * row_width + row_width - 1], 4, axis=0)
        from_cols = np.repeat([jc * col_width + col_width - 1], 4, axis=0)
        for n, term in enumerate(r.by_row_to):
            from_rows[term] = jr * row_width + r.col_run[cc] * len(r.by_row_to) + n
        for n, term in enumerate(r.by_col_to):
            from_cols[term] = jc * col_width + r.row_run[rr] * len(r.by_col_to) + n
        from_products = np.full((4, len(rr)), sum(core_rows) * sum(core_cols))   # the zero
        for pk, qk, term in r.products:
            p[top[k]:top[k] + h], q[left[k]:left[k] + w] = pk, qk
            from_products[term] = jr * sum(core_cols) + jc
        products.append(from_products)
        row_parts.append(from_rows)
        col_parts.append(from_cols)
        core_row.append(jr)
        core_col.append(jc)
    joint = joint_table(grids)
    cycles = joint.cycles.ravel().astype(np.float64)
    parts = (by_row, by_col, p, q)
    whole = all(np.array_equal(a, np.round(a)) for a in parts + (cycles,))
    bound = 2 * (np.abs(by_row).max(initial=0) + np.abs(by_col).max(initial=0) +
                 np.abs(p).max(initial=0) * np.abs(q).max(initial=0))
    return _JointRuns(grids, by_row, by_col,
                      np.concatenate(row_parts, axis=1).astype(np.intp),
                      np.concatenate(col_parts, axis=1).astype(np.intp), p, q,
                      np.concatenate(products, axis=1).astype(np.intp)
                      if any(r.products for r in runs) else None,
                      starts, sizes, np.arange(sizes.sum()), np.concatenate(core_row),
                      np.concatenate(core_col), cycles, joint.cycles.shape[1],
                      tuple(a.astype(np.float32) for a in parts) if whole else None,
                      float(bound) if whole else float("inf"))
