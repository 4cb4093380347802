"""The one evaluation: a kernel's `Counts` through its kind's components into cycles.

The static estimate (`compiler.estimate`, assumed counts) and the measurement
(`simulator.measure`, counts from the tensors) both come here; only their counts differ. Each
distinct counted sample is evaluated once (`Counts.rows` maps every variant's samples to them).
A kind whose cores' cycles follow from small per-core inputs may tabulate them
(`compiler.table`): the same components, evaluated on each distinct input once, and a step's
tables looked up together (`evaluate_all`); every core of every sample is then evaluated only
when the report asks for the cores (`KernelCycles.busy`, `split`).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from . import cost
from .kernels import Counts, Kernel, kind_of
from .table import Table, evaluate_tables, joint_indices, joint_sums, joint_table, table_index
from .table_run import joint_run_cycles, joint_runs, run_cycles


class KernelCycles:
    """A kernel evaluated on `Counts`, per variant and sample (`rows` (V, S), the distinct
    sample of each): `sample` (V, S) the kernel's time (its share of the run, `cost.run_cycles`);
    `macs` (V,)
    executed in the step; `sums` (distinct,) each distinct sample's cycles summed over its
    cores. `sums` and `sample` are given when its table was evaluated with others."""

    def __init__(self, kernel: Kernel, counts: Counts, mapping, target, table: Table | None = None,
                 sums: np.ndarray | None = None, sample: np.ndarray | None = None):
        self.kernel, self.counts, self.mapping, self.target = kernel, counts, mapping, target
        self.rows, self.table, self._sums_of = counts.rows, table, {}
        if table is not None:
            self.sums = evaluate_tables([table], busiest=False)[0][1] if sums is None else sums
            if sample is None:
                sample = run_cycles(table, self.rows)
        self.sample = cost.run_cycles(*self.evaluated, self.rows) if sample is None else sample

    @cached_property
    def macs(self) -> np.ndarray:
        """(V,) MACs executed in the step."""
        macs = self.table.count_macs() if self.table is not None else self.evaluated[0].macs
        return np.asarray(macs, dtype=np.float64)[self.rows].sum(axis=1)

    @cached_property
    def sums(self) -> np.ndarray:
        return self.core.reshape(len(self.core), -1).sum(axis=1, dtype=np.float64)

    @cached_property
    def evaluated(self) -> tuple[cost.Components, tuple]:
        """The kind's components on every core of every distinct sample, and their shape."""
        c = kind_of(self.kernel).components(self.kernel, self.counts.values, self.mapping, self.target)
        return c, c.shape[:2] + (self.mapping.rows, self.mapping.cols)

    @cached_property
    def core(self) -> np.ndarray:
        """(distinct, rows, cols) cycles of each core for each distinct sample."""
        if self.table is not None:
            return self.table.cores()
        return cost.per_core_cycles(*self.evaluated)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(V, S) cycles if only compute, or only the links, limited the kernel."""
        compute, link = cost.split(*self.evaluated)
        return compute[self.rows], link[self.rows]

    def busy(self, variant: int, mapping, update) -> np.ndarray:
        """(rows, cols * replicas) busy cycles in the step of `variant`'s samples."""
        return cost.replica_busy(self.core, self.rows[variant], mapping, update)

    def busy_total(self, variant: int, replicas: int, update_total: float) -> float:
        """`busy` summed over every core of every replica, the update summing to
        `update_total` over the cores of one replica."""
        return self._summed(variant) + replicas * update_total

    def _summed(self, variant: int) -> float:
        """`variant`'s samples' cycles summed over the cores (kept: a kernel whose counts do
        not depend on the data keeps its evaluation from step to step)."""
        summed = self._sums_of.get(variant)
        if summed is None:
            summed = self._sums_of[variant] = float(self.sums[self.rows[variant]].sum())
        return summed


def evaluate(kernel: Kernel, counts: Counts, mapping, target) -> KernelCycles:
    """`counts` (of the kernel's kind, on one replica's `mapping`) through the one evaluation."""
    return evaluate_all([(kernel, counts, mapping)], target)[0]


def evaluate_all(kernels: list[tuple[Kernel, Counts, object]], target) -> list[KernelCycles]:
    """(kernel, counts, mapping) triples through the one evaluation: the tables of those whose
    kind tabulates and whose counts share their rows (the same array) evaluated together
    (`evaluate_together`), the others' tables looked up together
    (`compiler.table.evaluate_tables`) and their runs each alone."""
    tables = [_table(*item, target) for item in kernels]
    found = _together(kernels, tables)
    alone = [i for i, t in enumerate(tables) if t is not None and i not in found]
    found.update(zip(alone, ((sums, None) for _, sums in
                             evaluate_tables([tables[i] for i in alone], busiest=False))))
    return [KernelCycles(*item, target, t, *found.get(i, (None, None)))
            for i, (item, t) in enumerate(zip(kernels, tables))]


def evaluate_together(tables: list[Table],
                      rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(K, V, S) each table's run (`cost.run_cycles`) and (U, K) each distinct sample's cycles
    summed over its cores, of `tables` whose counts share their `rows` (V, S): one joint table
    (`compiler.table`), its indices worked out once for both; None when their runs cannot be
    evaluated together (`table_run.joint_runs`)."""
    joint = JointTables.of(tuple(t.grid for t in tables))
    if joint is None:
        return None
    return joint.evaluate(*joint_indices(tables, joint.table), rows)


class JointTables:
    """Grids evaluated together (`evaluate_together`): their joint table and runs, built once.
    `indices(x, dy)` turns the counts of every core row (U, all rows) and column (U, all
    columns), the tables' one after another, into the joint table's indices."""

    def __init__(self, grids: tuple, runs):
        self.grids, self.table, self.runs = grids, joint_table(grids), runs

    @classmethod
    def of(cls, grids: tuple) -> "JointTables | None":
        runs = joint_runs(grids)
        return None if runs is None else cls(grids, runs)

    def indices(self, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return table_index(x, self.table.row_base), table_index(dy, self.table.col_base)

    def evaluate(self, row: np.ndarray, col: np.ndarray,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, V, S) runs and (U, K) sums from the joint indices (`evaluate_together`)."""
        return joint_run_cycles(self.runs, row, col, rows), joint_sums(self.table, row, col)


def _together(kernels: list[tuple], tables: list) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Index -> (its sums, its run), for the tables that share their counts' rows with
    another, evaluated together."""
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tables):
        if t is not None:
            groups.setdefault(id(kernels[i][1].rows), []).append(i)
    out = {}
    for members in groups.values():
        found = evaluate_together([tables[i] for i in members], kernels[members[0]][1].rows) \
            if len(members) > 1 else None
        if found is not None:
            out.update((i, (found[1][:, n], found[0][n])) for n, i in enumerate(members))
    return out


def _table(kernel: Kernel, counts: Counts, mapping, target) -> Table | None:
    """The kind's table of `counts`, when it has one and several distinct samples use it (one,
    as in the static estimate, is cheaper evaluated whole)."""
    tabulate = getattr(kind_of(kernel), "tabulate", None)
    if tabulate is None or not counts.rows.any():
        return None
    return tabulate(kernel, counts.values, mapping, target)
