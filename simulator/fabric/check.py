"""The cycle-level model next to the analytic one, for one pass of one kernel.

Both see the same tensors: the analytic model through the kind's counts and components
(`compiler.kernels`, `compiler.cost`), evaluated for the one pass (the other pass's terms
zeroed, so `cost.per_core_cycles` is the one formula); the fabric model by streaming the values.
Samples follow one another, so the analytic time of the run is the sum over samples of each
one's pass (what the pipeline schedule charges a stage per sample: its share of the run,
`cost.run_cycles`) and the run's fill (`cost.fill_cycles`).

Where they disagree is split into categories, each the most any core spends on it:
compute (SIMD cycles), SRAM (port cycles beyond the SIMD), task (activation per wavelet),
reduction (the partial-sum adds of a chain, read off the fabric), link (the
busiest link's wavelets), queueing (cycles a wavelet or a send waited for space: back-pressure)
and fill (the run's cycles beyond its busiest PE or link: start-up and drain).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compiler import cost
from compiler.kernels import kind_of

from ..backend import is_cupy
from ..measure.context import Runs, variants
from .engine import Run, run
from .programs import program_for

ROWS = ("compute", "SRAM", "task", "reduction", "link", "queueing", "fill")


PASSES = {"forward": ("fwd", "bwd"), "backward": ("bwd", "fwd")}


def pass_terms(kernel, counts, mapping, target, variant: int = 0, pass_: str = "forward") -> dict:
    """Per category (rows, cols), the analytic cycles of `pass_` on every core summed over the
    samples of `variant` (`counts.rows`), "fill" the run's (`cost.fill_cycles`) and "total"
    (samples,) each sample's pass as the measurement charges it (`cost.run_cycles`)."""
    if pass_ not in PASSES:
        raise ValueError(f"unknown pass {pass_!r}; passes: {sorted(PASSES)}")
    own, other = PASSES[pass_]
    c = kind_of(kernel).components(kernel, counts.values, mapping, target)
    shape = c.shape[:2] + (mapping.rows, mapping.cols)
    alone = dataclasses.replace(c, **{f"{other}_{t}": 0 for t in
                                      ("compute", "in", "out", "reduce", "drain")},
                                **{f"{other}_recv": None})
    rows = counts.rows[variant]

    def summed(term):
        per = np.broadcast_to(term, shape)
        per = per[:, 0] if shape[1] == 1 else per.sum(axis=1)
        return per[rows].sum(axis=0)
    compute = summed(getattr(c, f"{own}_compute"))
    return {"compute": compute, "SRAM": compute * max(0.0, c.sram - 1.0),
            "task": summed(c.task * np.asarray(c.received(own))),
            "reduction": summed(getattr(c, f"{own}_reduce")),
            "link": summed(getattr(c, f"{own}_link")),
            "queueing": np.zeros_like(compute),
            "fill": cost.fill_cycles(c, own, shape, mapping.rows, mapping.cols, target)[rows[-1]],
            "total": cost.run_cycles(alone, shape, rows[None])[0]}


def fabric_terms(result: Run, program) -> dict:
    """The same categories off a fabric run (each the busiest core's), and "total" its cycles.
    The program's `reduction` colours are the partial-sum tasks."""
    reduction = list(program.reduction)
    own = np.delete(result.work, reduction, axis=0).sum(axis=0)          # (3, rows, cols)
    streamed = max((int(np.max(lengths)) for _, lengths in program.streams.values()), default=0)
    busiest_link = max(int(result.sent[:4].max()), streamed)
    busy = int(result.busy.max())
    return {"compute": float(own[0].max()), "SRAM": float(own[1].max()), "task": float(own[2].max()),
            "reduction": float(result.work[reduction].sum(axis=(0, 1)).max()),
            "link": float(busiest_link),
            "queueing": float((result.blocked.sum(axis=0) + result.held).max()),
            "fill": float(max(result.cycles - max(busy, busiest_link), 0)),
            "total": float(result.cycles)}


@dataclass
class Comparison:
    """One pass of one kernel: `fabric` and `analytic` terms per category (`ROWS`), the
    `estimate` (the plan's assumed densities), the fabric `run`, and `error` (the largest
    difference of the fabric's results from NumPy's, `program.reference`)."""
    kernel: str
    pass_: str
    samples: int
    fabric: dict
    analytic: dict
    estimate: float
    run: Run
    error: float

    @property
    def ratio(self) -> float:
        """Fabric cycles over the analytic model's on the same data."""
        return self.fabric["total"] / self.analytic_total if self.analytic_total else float("inf")

    @property
    def analytic_total(self) -> float:
        """The samples' busiest-core passes, one after another, and the run's fill."""
        return float(np.sum(self.analytic["total"]) + self.analytic.get("fill", 0.0))

    def table(self) -> str:
        lines = [f"kernel {self.kernel}: {self.pass_}, {self.samples} sample(s)",
                 f"  {'':<12}{'analytic':>12}{'fabric':>12}{'fabric-analytic':>17}"]
        for row in ROWS:
            a = float(np.max(self.analytic[row])) if row in self.analytic else 0.0
            f = self.fabric[row]
            lines.append(f"  {row:<12}{a:>12.0f}{f:>12.0f}{f - a:>17.0f}")
        lines.append(f"  {'cycles':<12}{self.analytic_total:>12.0f}{self.fabric['total']:>12.0f}"
                     f"{self.fabric['total'] - self.analytic_total:>17.0f}   "
                     f"(fabric / analytic {self.ratio:.3f})")
        lines.append("  analytic: the cost model the measurement uses, on these samples' counts; "
                     "each row the most any core spends")
        lines.append(f"  static estimate (assumed densities): {self.estimate:.0f} cycles; "
                     f"fabric results' largest difference from NumPy's: {self.error:.2g}")
        return "\n".join(lines)


def measured_counts(kernel, mapping, tensors: dict, harvest: bool):
    """The kind's counts of `tensors` (role -> (samples, ...)), `kernel` having that many
    samples."""
    call = kernel.calls[0]
    env = {call[role]: value for role, value in tensors.items() if role in call}
    runs = Runs(np, variants(harvest, False), None, {})
    return kind_of(kernel).measured_counts(kernel, mapping, env, runs)


def compare(kernel, mapping, target, tensors: dict, samples: int | None = None,
            pass_: str = "forward", harvest: bool = True, density=1.0, xp=np,
            depth: int = 4) -> Comparison:
    """Run `kernel`'s `pass_` program on `tensors` (its kind's operands by role: "x", "w" and
    "dy" of a matmul, each (samples, ...); a generated kernel's "out", or none: its time does
    not depend on its values) for `samples` samples (default: the tensors'), and put its cycles
    next to the analytic model's on the same data and at the assumed `density`."""
    if len(kernel.calls) != 1:
        raise NotImplementedError(f"kernel {kernel.name!r} is called {len(kernel.calls)} times "
                                  "per sample (shared weights); the fabric check runs one call")
    mapping = mapping.replica
    tensors = {role: np.asarray(v, dtype=np.float32) for role, v in tensors.items()}
    if samples is None:
        samples = next(v.shape[0] for role, v in tensors.items() if role != "w")
    one = dataclasses.replace(kernel, samples=samples)
    program = program_for(one, mapping, target, tensors, harvest, pass_)
    result = run(xp, program, target, depth, check_every=64 if is_cupy(xp) else 1)
    got, want = program.output(result), program.reference()
    error = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    counts = measured_counts(one, mapping, tensors, harvest)
    analytic = pass_terms(one, counts, mapping, target, 0 if harvest else 1, pass_)
    assumed = kind_of(kernel).assumed_counts(one, mapping, target, density, harvest)
    terms = pass_terms(one, assumed, mapping, target, 0, pass_)
    estimate = float(np.sum(terms["total"])) * samples + float(terms["fill"])
    return Comparison(kernel.name, pass_, samples, fabric_terms(result, program), analytic,
                      estimate, result, error)
