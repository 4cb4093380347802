"""What sparsity a run really had: per-tensor target vs actual density, and a comparison with a
dense run (speedup, samples/s, loss, accuracy).

The tensors followed are read off the captured graph: every `wsebench.drop_small` output (the
dropped activation, or the dropped gradient for where=backward/both), every ReLU output, and,
with weight sparsity, every masked weight. Their non-zeros are counted on the step's own tensors
(`DensityProbe`), so the report shows what the wafer streamed, not what was asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.backend import nonzeros
from compiler.kernels import kind_of

from .drop_op import OP_NAME

RELU_OPS = ("aten.relu.default",)


def tracked_tensors(plan) -> list[dict]:
    """One row per followed tensor: name (graph value), kind, module, kernel, and for drop
    outputs the schedule buffer whose value sets the target."""
    graph, kernel_of = plan.graph, dict(plan.kernel_of)
    buffer_fqn = dict(graph.buffers)
    rows = []
    for op in graph.ops:
        if op.op == OP_NAME:
            where = op.args[3]
            if where == "backward":      # the forward node only passes the activation through
                continue
            fqn = buffer_fqn.get(op.args[1].name, "")
            module, _, _ = fqn.rpartition(".")
            rows.append({"tensor": op.name, "kind": "drop gradient" if where == "grad" else "drop",
                         "module": module or "(model)", "kernel": kernel_of.get(op.name, ""),
                         "buffer": fqn, "drop_kind": op.args[2]})
        elif op.op in RELU_OPS:
            rows.append({"tensor": op.name, "kind": "relu", "module": "",
                         "kernel": kernel_of.get(op.name, ""), "buffer": None, "drop_kind": None})
    return rows


class DensityProbe:
    """Wraps a Trainer's executor and keeps, from each run, the followed tensors and the
    operands each kernel harvests (x and dY of a matmul); their non-zeros are counted only when
    asked for (the report), so a step pays nothing. The kept arrays are released when the next
    run starts. `context`: the trainer's `simulator.measure.PlanContext`."""

    def __init__(self, executor, context, names):
        self.executor, self.context = executor, context
        # and what a kind's fabric program streams beyond them (wb.fabric.check reads them)
        streams = [v for k in context.plan.kernels
                   for v in getattr(kind_of(k), "fabric_streams", kind_of(k).streamed)(k).values()]
        streams += [v for k in context.plan.kernels for v in kind_of(k).streamed(k).values()]
        self.names = tuple(names)
        self._keep = tuple(dict.fromkeys(self.names + tuple(streams)))
        executor.retain(self._keep)
        self._values: dict = {}
        self._counts = self._densities = None

    def run(self, env: dict) -> dict:
        self._values, self._counts, self._densities = {}, None, None
        env = self.executor.run(env)
        self._values = {n: env[n] for n in self._keep if n in env}
        return env

    @property
    def values(self) -> dict:
        """The tensors kept from the last run: the followed ones and every kernel's harvested
        operands (read-only by convention: they are the step's own arrays)."""
        return self._values

    @property
    def counts(self) -> dict[str, tuple[int, int]]:
        """Followed tensor -> (non-zeros, elements) in the last run."""
        if self._counts is None:
            xp = self.executor.xp
            self._counts = {n: (nonzeros(xp, self._values[n]),
                                int(self._values[n].size)) for n in self.names if n in self._values}
        return self._counts

    @property
    def kernel_densities(self) -> dict[str, tuple[float, float]]:
        """Harvesting kernel -> (x density, dY density) in the last run."""
        if self._densities is None:
            self._densities = self.context.densities(self.executor.xp, self._values) \
                if self._values else {}
        return self._densities

    def __getattr__(self, name):
        return getattr(self.executor, name)


def tensor_rows(tracked: list[dict], counts: dict, values: dict, weights: list[dict]) -> list[dict]:
    """Report rows: target density (1 - fraction for top-k; None for natural zeros and
    thresholds), actual density measured on the last step, and their difference."""
    rows = []
    for t in tracked:
        nnz, size = counts.get(t["tensor"], (0, 0))
        target = None
        if t["drop_kind"] == "topk" and t["buffer"] in values:
            target = 1.0 - float(values[t["buffer"]])
        actual = nnz / size if size else None
        rows.append({"tensor": t["tensor"], "kind": t["kind"], "module": t["module"],
                     "kernel": t["kernel"], "target_density": target, "density": actual,
                     "elements": size})
    return rows + weights


def weight_rows(density: dict[str, dict], params: dict) -> list[dict]:
    """Rows for masked weights from the Trainer's `weight_density()`: target density, the
    non-zero fraction the wafer streams (`density`) and the mask's kept fraction."""
    return [{"tensor": fqn, "kind": "weight", "module": fqn.rpartition(".")[0],
             "kernel": fqn.rpartition(".")[0], "target_density": d["target"],
             "density": d["nonzero"], "mask_density": d["actual"],
             "elements": int(params[fqn].size)} for fqn, d in density.items()]


@dataclass
class Comparison:
    """A sparse run next to its dense baseline (mean step cycles over each run's history)."""
    speedup: float
    samples_per_s: float
    dense_samples_per_s: float
    final_loss: float
    dense_final_loss: float
    accuracy: float | None = None
    dense_accuracy: float | None = None
    details: dict = field(default_factory=dict)

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy is None or self.dense_accuracy is None:
            return None
        return self.accuracy - self.dense_accuracy

    def _repr_html_(self) -> str:
        from .html import comparison_html
        return comparison_html(self)


def _mean_cycles(session) -> float:
    history = session.history
    if not history:
        raise ValueError("a session in the comparison has not trained: call train() first")
    return float(np.mean([r.cycles for r in history]))


def _tail_loss(session, last: int = 5) -> float:
    return float(np.mean(session.history.losses[-last:]))


def compare(sparse, dense, x=None, y=None) -> Comparison:
    """How the `sparse` session did against the `dense` one: speedup (dense mean cycles per step
    over sparse), simulated samples/s, final loss (mean of the last 5 steps) and, given data
    (x, y), accuracy of each trained model (its torch architecture with the wafer's weights)."""
    speedup = _mean_cycles(dense) / _mean_cycles(sparse)
    samples = sparse.plan.kernels[0].samples
    clock = sparse.plan.target.clock_hz
    rates = [samples * clock / _mean_cycles(s) for s in (sparse, dense)]
    accs = (None, None)
    if x is not None and y is not None:
        accs = tuple(s.accuracy(x, y) for s in (sparse, dense))
    return Comparison(speedup, rates[0], rates[1], _tail_loss(sparse), _tail_loss(dense),
                      accs[0], accs[1],
                      {"sparse_cycles": _mean_cycles(sparse), "dense_cycles": _mean_cycles(dense),
                       "sparse_steps": len(sparse.history), "dense_steps": len(dense.history)})
