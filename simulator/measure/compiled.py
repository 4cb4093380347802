"""A step's kernels measured by a program compiled once per plan: the general path
(`step.measure_arrays`) with everything that is the same every step worked out up front.

It applies to a step without markers or masked weights in which every kernel either has a
kind's `table_counter` (`compiler.table.Counter`: a matmul with one token per sample) or
counts the very `Counts` object it counted when the program was compiled (counts that do not
depend on the data, as an element-wise kernel's). Each step then writes the counted kernels'
x and dY tile counts into two buffers laid out as their joint table's core rows and columns
(the dense sample's, every value counted, written once), evaluates them together
(`compiler.evaluate.JointTables`) and sums each kernel's busy cycles; the other kernels' times
and busy cycles are the program's constants. No per-kernel object is made unless a report
asks for the kernels' evaluations (`Measured.cycles`). The numbers are the general path's: the
same tables, the same evaluation, the same variants.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from compiler.evaluate import JointTables, KernelCycles, evaluate_all
from compiler.kernels import harvest_rows, kind_of

from .context import PlanContext, Runs


class Measured(NamedTuple):
    """One step: `samples` (V, K, S) each kernel's cycles per sample, `busy` (K,) the busy
    cycles of all its cores in the run's own variant; `cycles()` each kernel's evaluation
    (`compiler.evaluate.KernelCycles`), made when called."""
    samples: np.ndarray
    busy: np.ndarray
    cycles: Any


class CompiledStep:
    """The measurement of `context`'s plan compiled for steps whose variants and harvesting
    are those of `runs` and `actual` (`compile_step`)."""

    def __init__(self, context: PlanContext, runs: Runs, actual: int, counted: list,
                 joint: JointTables, constant: dict):
        self.context, self.runs, self.actual = context, runs, actual
        self.counted, self.joint, self.constant = counted, joint, constant
        kernels, samples = context.plan.kernels, context.plan.kernels[0].samples
        self.rows = harvest_rows(runs.harvests, samples)
        own = self.rows[actual]                # the run's own samples: every one, or the dense
        self.own = slice(0, samples) if np.array_equal(own, np.arange(samples)) else own
        self.order = np.array([i for i, _ in counted])
        self.slices = _slices([c for _, c in counted])
        self.x, self.dy = (np.empty((samples + 1, parts.stop), dtype=np.float32)
                           for parts in self.slices[-1])
        for (_, c), parts in zip(counted, self.slices):
            self.x[samples, parts[0]], self.dy[samples, parts[1]] = c.dense
        self.samples = np.empty((len(runs.variants), len(kernels), samples))
        self.busy = np.array([context.updates[k.name].total * m.replicas
                              for k, m in zip(kernels, context.mappings)])
        for i, (_, c) in constant.items():
            self.samples[:, i] = c.sample
            self.busy[i] += c.busy_total(actual, 1, 0.0)

    def measure(self, env: dict) -> Measured | None:
        """This step's kernels from the tensors in `env`; None when a kernel's counts that did
        not depend on the data now do (the general path then measures it)."""
        plan, runs, mappings = self.context.plan, self.runs, self.context.mappings
        for i, (counts, _) in self.constant.items():
            kernel, mapping = plan.kernels[i], mappings[i].replica
            if kind_of(kernel).measured_counts(kernel, mapping, env, runs) is not counts:
                return None
        samples = self.samples.shape[-1]
        for (_, counter), (rows, cols) in zip(self.counted, self.slices):
            x, dy = counter.count(runs.xp, env)
            self.x[:samples, rows], self.dy[:samples, cols] = runs.host(x), runs.host(dy)
        row, col = self.joint.indices(self.x, self.dy)
        found, sums = self.joint.evaluate(row, col, self.rows)
        times = self.samples.copy()
        times[:, self.order] = found.transpose(1, 0, 2)
        busy = self.busy.copy()
        busy[self.order] += sums[self.own].sum(axis=0)
        return Measured(times, busy, lambda: self._cycles(row, col, found, sums))

    def _cycles(self, row, col, found, sums) -> list[KernelCycles]:
        """Each kernel's evaluation, as the general path makes it: the counted ones' `Counts`
        read back from the joint indices."""
        plan, mappings, base = self.context.plan, self.context.mappings, self.joint.table
        out = {i: c for i, (_, c) in self.constant.items()}
        for n, ((i, counter), (rows, cols)) in enumerate(zip(self.counted, self.slices)):
            kernel, mapping = plan.kernels[i], mappings[i].replica
            counts = counter.counts((row[:, rows] - base.row_base[rows]).astype(np.float32),
                                    (col[:, cols] - base.col_base[cols]).astype(np.float32),
                                    self.rows)
            table = kind_of(kernel).tabulate(kernel, counts.values, mapping, plan.target)
            out[i] = KernelCycles(kernel, counts, mapping, plan.target, table, sums[:, n], found[n])
        return [out[i] for i in range(len(plan.kernels))]


def _slices(counters: list) -> list[tuple[slice, slice]]:
    """Each counter's core rows and columns among all of them, one after another."""
    out, r0, c0 = [], 0, 0
    for c in counters:
        r1, c1 = r0 + len(c.dense[0]), c0 + len(c.dense[1])
        out.append((slice(r0, r1), slice(c0, c1)))
        r0, c0 = r1, c1
    return out


def compile_step(context: PlanContext, runs: Runs, actual: int, env: dict) -> CompiledStep | None:
    """The compiled measurement of `context`'s plan for steps like this one (`runs`, the run's
    own variant `actual`), or None when it does not apply: markers or masked weights, a kernel
    neither counted straight into a table nor counted as the same object twice, or tables
    whose runs cannot be evaluated together."""
    plan = context.plan
    if runs.positions is not None or runs.masked:
        return None
    counted, constant = [], {}
    for i, (kernel, mapping) in enumerate(zip(plan.kernels, context.mappings)):
        make = getattr(kind_of(kernel), "table_counter", None)
        counter = make(kernel, mapping.replica, plan.target) if make is not None else None
        if counter is not None:
            counted.append((i, counter))
            continue
        counts = kind_of(kernel).measured_counts(kernel, mapping.replica, env, runs)
        if kind_of(kernel).measured_counts(kernel, mapping.replica, env, runs) is not counts:
            return None                           # counted afresh: they depend on the data
        constant[i] = counts
    joint = JointTables.of(tuple(c.grid for _, c in counted)) if counted else None
    if joint is None:
        return None
    evaluated = evaluate_all([(plan.kernels[i], counts, context.mappings[i].replica)
                              for i, counts in constant.items()], plan.target)
    return CompiledStep(context, runs, actual, counted, joint,
                        {i: (constant[i], c) for i, c in zip(constant, evaluated)})
