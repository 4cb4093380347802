"""The cycle-level model next to the analytic one, for one pass of one kernel (`compare`), the
replicas' all-reduce and update (`compare_update`, against `cost.update_cycles`) and a whole
step (`compare_step`: `pipeline.Step` against `schedule.step` on the same samples).

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

from compiler import cost, estimate, schedule
from compiler.evaluate import evaluate
from compiler.kernels import kind_of

from ..backend import is_cupy
from ..measure.context import Runs, variants
from .engine import Run, run
from .pipeline import Step
from .programs import part, program_for

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


# ------------------------------------------------------------------------- the whole step

def analytic_step(plan, kernels, tensors: dict, variant: int) -> dict:
    """The analytic model on the same samples: per kernel its counts' per-sample times
    (`cost.run_cycles`) and per-core terms of both passes (`pass_terms`), the update, and the
    step (`schedule.step`, with the plan's hops, congestion and streaming)."""
    times, terms, updates = [], {}, []
    for k in kernels:
        mapping = plan.mapping[k.name].replica
        counts = measured_counts(k, mapping, tensors[k.name], plan.harvest)
        times.append(evaluate(k, counts, mapping, plan.target).sample[variant])
        both = [pass_terms(k, counts, mapping, plan.target, variant, p) for p in PASSES]
        terms[k.name] = {row: np.max(both[0][row] + both[1][row]) for row in ROWS}
        updates.append(estimate.update_cycles(k, plan.mapping[k.name], plan.target, plan.optimizer))
    per_sample = np.stack(times)[None]                                          # (1, K, S)
    replicas = [plan.mapping[k.name].replicas for k in kernels]
    cycles = schedule.step(per_sample, replicas, plan.congestion_array()[:1], plan.latency(),
                           np.array([updates]), plan.streaming)[0]
    return {"cycles": float(cycles), "per_sample": per_sample[0], "terms": terms,
            "updates": dict(zip((k.name for k in kernels), updates))}


def estimate_step(plan, kernels) -> float:
    """The static estimate (the plan's assumed densities) of a step of these kernels' samples."""
    per_sample = np.stack([estimate.kernel_cycles(k, plan.mapping[k.name].replica, plan.target,
                                                  plan.density_of(k.name), plan.harvest).sample[0]
                           for k in kernels])
    samples = kernels[0].samples
    updates = [[estimate.update_cycles(k, plan.mapping[k.name], plan.target, plan.optimizer)
                for k in kernels]]
    return float(schedule.step(np.repeat(per_sample[None], samples, axis=-1),
                               [plan.mapping[k.name].replicas for k in kernels],
                               plan.congestion_array()[:1], plan.latency(), np.array(updates),
                               plan.streaming)[0])


@dataclass
class StepComparison:
    """A whole step on the fabric (`pipeline.Step`) next to the analytic model on the same
    samples, the static `estimate` and the `measured` step (all of the batch's samples,
    `batch`); `fabric`, `analytic` {category: cycles} of the bottleneck kernel (the analytic
    model's slowest stage), fill the step's cycles beyond it."""
    samples: int
    batch: int
    step: object
    analytic_step: dict
    fabric: dict
    analytic: dict
    bottleneck: str
    estimate: float
    measured: float | None
    error: float

    @property
    def ratio(self) -> float:
        return self.step.cycles / self.analytic_step["cycles"]

    def table(self) -> str:
        a, s = self.analytic_step, self.step
        lines = [f"whole step: {len(s.order)} kernels, forward and backward, routes and update; "
                 f"{self.samples} sample(s)",
                 f"  {'kernel':<14}{'fwd+bwd':>10}{'busy':>10}{'ends':>8}{'update':>16}"
                 "   (analytic fwd + bwd of a replica's samples; the fabric's busiest core, "
                 "last cycle; update: fabric (analytic))"]
        for i, name in enumerate(s.order):
            stage, r = s.stages[name], s.stages[name].mapping.replicas
            update = f"{s.updates[name]} ({a['updates'][name]:.0f})"
            lines.append(f"  {name:<14}{a['per_sample'][i].sum() / r:>10.0f}"
                         f"{stage.run.busy.max():>10.0f}{stage.end:>8}{update:>16}")
        lines.append(f"  bottleneck {self.bottleneck}:  {'analytic':>10}{'fabric':>10}"
                     f"{'fabric-analytic':>17}")
        for row in ROWS:
            lines.append(f"  {row:<24}{self.analytic[row]:>10.0f}{self.fabric[row]:>10.0f}"
                         f"{self.fabric[row] - self.analytic[row]:>17.0f}")
        lines.append(f"  {'step cycles':<24}{a['cycles']:>10.0f}{s.cycles:>10.0f}"
                     f"{s.cycles - a['cycles']:>17.0f}   (fabric / analytic {self.ratio:.3f})")
        lines.append(f"  static estimate of these samples: {self.estimate:.0f} cycles; fabric runs "
                     f"{'settled' if s.converged else 'did NOT settle'} in {s.rounds} round(s); "
                     f"largest difference from NumPy's results {self.error:.2g}")
        if self.measured is not None:
            lines.append(f"  measured step ({self.batch} samples): {self.measured:.0f} cycles")
        return "\n".join(lines)


def compare_step(plan, tensors: dict, samples: int, xp=np, depth: int = 4,
                 measured: float | None = None) -> StepComparison:
    """Run the whole step of `plan` for its first `samples` samples (`tensors` {kernel:
    operands by role, each (samples, ...)}) on the fabric, next to the analytic model."""
    kernels = [dataclasses.replace(k, samples=samples) for k in plan.kernels]
    step = Step(plan, kernels, tensors, samples, xp, depth)
    variant = 0 if plan.harvest else 1
    analytic = analytic_step(plan, kernels, tensors, variant)
    stage_time = analytic["per_sample"].sum(axis=1) / [plan.mapping[k.name].replicas for k in kernels]
    slowest = int(np.argmax(stage_time))
    name = kernels[slowest].name
    stage = step.stages[name]
    fabric = fabric_terms(stage.run, stage.program)
    fabric["fill"] = float(step.cycles - max(stage.run.busy.max(), fabric["link"]))
    replicas = plan.mapping[name].replicas              # the fabric's terms are one replica's
    terms = {row: value / replicas for row, value in analytic["terms"][name].items()}
    own = analytic["per_sample"][slowest].sum() / replicas
    terms["fill"] = analytic["cycles"] - own
    error = 0.0
    for s in step.stages.values():
        for got, want in s.outputs():
            error = max([error] + [float(np.abs(got[k] - want[k]).max()) for k in want])
    return StepComparison(samples, plan.kernels[0].samples, step, analytic, fabric, terms, name,
                          estimate_step(plan, kernels), measured, error)


def compare_update(tile: int, mapping, target, optimizer, xp=np, depth: int = 4,
                   seed: int = 0) -> Comparison:
    """The replicas' ring all-reduce and update of `tile` weights a core (`allreduce`, random
    gradients: the values do not change the time) next to `cost.update_cycles`, split into
    the update's compute, the ring's link share and the rest (its hops: fill)."""
    flops = cost.update_flops(optimizer)
    grads = np.random.default_rng(seed).standard_normal(
        (mapping.replicas, mapping.rows, mapping.cols, tile)).astype(np.float32)
    program = part("update")(tile, mapping, flops, grads)
    result = run(xp, program, target, depth, check_every=64 if is_cupy(xp) else 1)
    got, want = program.output(result), program.reference()
    total = float(cost.update_cycles(tile, mapping, target, optimizer))
    compute = float(cost.update_cycles(tile, mapping.replica, target, optimizer))
    link = float(np.ceil(cost.allreduce_share(tile * mapping.cols, mapping.replicas)))
    analytic = {"compute": compute, "link": link, "fill": total - compute - link,
                "total": np.array([compute + link])}
    fabric = fabric_terms(result, program)
    return Comparison("all-reduce", "update", mapping.replicas, fabric, analytic, total, result,
                      max(float(np.abs(got[k] - want[k]).max()) for k in want))
