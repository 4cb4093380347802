"""The one evaluation: a kernel's `Counts` through its kind's components into cycles.

The static estimate (`compiler.estimate`, assumed counts) and the measurement
(`simulator.measure`, counts from the tensors) both come here; only their counts differ. Each
distinct counted sample is evaluated once (`Counts.rows` maps every variant's samples to them).
A kind whose cores' cycles follow from small per-core inputs may tabulate them (`cost.Table`):
the same components, evaluated on each distinct input once; every core of every sample is then
evaluated only when the report asks for the cores (`KernelCycles.busy`, `split`).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from . import cost
from .kernels import Counts, Kernel, kind_of


class KernelCycles:
    """A kernel evaluated on `Counts`, per variant and sample (`rows` (V, S), the distinct
    sample of each): `sample` (V, S) the kernel's time (busiest core + overhead); `macs` (V,)
    executed in the step."""

    def __init__(self, kernel: Kernel, counts: Counts, mapping, target):
        self.kernel, self.counts, self.mapping, self.target = kernel, counts, mapping, target
        self.rows = counts.rows
        kind = kind_of(kernel)
        tabulate = getattr(kind, "tabulate", None)
        # a table pays for itself over many samples; one (the static estimate) is evaluated whole
        several = tabulate is not None and int(self.rows.max(initial=0)) > 0
        self.table = tabulate(kernel, counts.values, mapping, target) if several else None
        busiest = self.table.busiest() if self.table is not None else cost.busiest_core(self.core)
        self.sample = (busiest + target.kernel_overhead_cycles)[self.rows]

    @cached_property
    def macs(self) -> np.ndarray:
        """(V,) MACs executed in the step."""
        macs = self.table.count_macs() if self.table is not None else self.evaluated[0].macs
        return np.asarray(macs, dtype=np.float64)[self.rows].sum(axis=1)

    @cached_property
    def sums(self) -> np.ndarray:
        """(distinct,) each distinct sample's cycles summed over its cores."""
        if self.table is not None:
            return self.table.sums()
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

    def busy_total(self, variant: int, mapping, update) -> float:
        """`busy` summed over every core of every replica."""
        cores = mapping.rows * mapping.cols
        updates = float(update) * cores if np.ndim(update) == 0 else float(np.sum(update))
        return float(self.sums[self.rows[variant]].sum()) + mapping.replicas * updates


def evaluate(kernel: Kernel, counts: Counts, mapping, target) -> KernelCycles:
    """`counts` (of the kernel's kind, on one replica's `mapping`) through the one evaluation."""
    return KernelCycles(kernel, counts, mapping, target)
