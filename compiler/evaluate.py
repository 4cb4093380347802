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
from .table import Table, evaluate_tables
from .table_run import run_cycles, run_cycles_joint


class KernelCycles:
    """A kernel evaluated on `Counts`, per variant and sample (`rows` (V, S), the distinct
    sample of each): `sample` (V, S) the kernel's time (its share of the run, `cost.run_cycles`);
    `macs` (V,)
    executed in the step; `sums` (distinct,) each distinct sample's cycles summed over its
    cores. `looked_up`: its table's (busiest, sums), and `sample` its run, when evaluated with
    other tables."""

    def __init__(self, kernel: Kernel, counts: Counts, mapping, target, table: Table | None = None,
                 looked_up: tuple | None = None, sample: np.ndarray | None = None):
        self.kernel, self.counts, self.mapping, self.target = kernel, counts, mapping, target
        self.rows, self.table = counts.rows, table
        if table is not None:
            self.sums = (looked_up or evaluate_tables([table], busiest=False)[0])[1]
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
        return float(self.sums[self.rows[variant]].sum()) + replicas * update_total


def evaluate(kernel: Kernel, counts: Counts, mapping, target) -> KernelCycles:
    """`counts` (of the kernel's kind, on one replica's `mapping`) through the one evaluation."""
    return evaluate_all([(kernel, counts, mapping)], target)[0]


def evaluate_all(kernels: list[tuple[Kernel, Counts, object]], target) -> list[KernelCycles]:
    """(kernel, counts, mapping) triples through the one evaluation, the tables of those whose
    kind tabulates looked up together (`compiler.table.evaluate_tables`), and the runs of
    those whose counts share their rows evaluated together (`table_run.run_cycles_joint`)."""
    tables = [_table(*item, target) for item in kernels]
    looked_up = iter(evaluate_tables([t for t in tables if t is not None], busiest=False))
    samples = _joint_samples(kernels, tables)
    return [KernelCycles(*item, target, t, next(looked_up) if t is not None else None,
                         samples.get(i)) for i, (item, t) in enumerate(zip(kernels, tables))]


def _joint_samples(kernels: list[tuple], tables: list) -> dict[int, np.ndarray]:
    """Index -> its run, for the tables that share their counts' rows (the same array) with
    another, evaluated together."""
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tables):
        if t is not None:
            groups.setdefault(id(kernels[i][1].rows), []).append(i)
    out = {}
    for members in groups.values():
        if len(members) > 1:
            found = run_cycles_joint([tables[i] for i in members], kernels[members[0]][1].rows)
            out.update(zip(members, found) if found is not None else ())
    return out


def _table(kernel: Kernel, counts: Counts, mapping, target) -> Table | None:
    """The kind's table of `counts`, when it has one and several distinct samples use it (one,
    as in the static estimate, is cheaper evaluated whole)."""
    tabulate = getattr(kind_of(kernel), "tabulate", None)
    if tabulate is None or not counts.rows.any():
        return None
    return tabulate(kernel, counts.values, mapping, target)
