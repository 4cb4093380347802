"""Timing measured from the data: one training step's cycles, counted from its tensors.

Each kernel's kind counts, per sample and per core, what the step's tensors made it receive and
compute (`KernelKind.measured_counts`: non-zeros of the streamed operands, real tokens, running
positions, masked weights); the counts go through the same evaluation (`compiler.evaluate`,
`compiler.cost`) and the same schedule (`compiler.schedule.step`) as the static
estimate's assumed counts, so the two differ only in where the counts come from.

The timing variants of the step are one axis through all of it (`context.variants`): the run
with zeros skipped ("harvested") and without ("dense"), and, for a model with `running` markers,
the fixed-depth and padded baselines. The run's own time is the harvested or the dense row,
as its `harvest` setting says.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from compiler import cost, schedule
from compiler.evaluate import evaluate_all
from compiler.kernels import kind_of

from ..backend import nonzeros
from .compiled import compile_step
from .context import DENSE, HARVESTED, PlanContext, Runs, update_of, variants
from .positions import DynamicStats, step_positions


@dataclass
class KernelTiming:
    """One kernel in one step, per variant (`variants`, the first axis): `samples` (V, S)
    cycles of each sample, `updates` (V,) the update on its busiest core, `macs` (V,)
    executed; `busy_total` the busy cycles of all its cores in the run's own variant
    (`actual`), `core_busy` the same per core; `memory_per_core` the measured bytes when a
    masked weight is stored compressed; `cycles` the evaluation (`compiler.evaluate`)."""
    name: str
    variants: tuple[str, ...]
    actual: int
    samples: np.ndarray
    updates: np.ndarray
    busy_total: float
    cycles: object = None
    memory_per_core: int | None = None
    mapping: object = None
    update: object = 0.0              # the run's own update per core (rows, cols) or uniform

    @property
    def macs(self) -> np.ndarray:
        """(V,) MACs executed in the step."""
        return self.cycles.macs

    @property
    def core_busy(self) -> np.ndarray:
        """(rows, cols * replicas) busy cycles of every core in the run's own variant."""
        return self.cycles.busy(self.actual, self.mapping, self.update)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(V, S) cycles if only compute, or only the links, limited the kernel."""
        return self.cycles.split()

    def variant_cycles(self, variant: str) -> np.ndarray:
        """(samples,) cycles of `variant`; a baseline the step has not got is the run itself."""
        return self.samples[self.variants.index(variant)] if variant in self.variants \
            else self.sample_cycles

    @property
    def sample_cycles(self) -> np.ndarray:
        return self.samples[self.actual]

    @property
    def dense_sample_cycles(self) -> np.ndarray:
        return self.variant_cycles(DENSE)

    def at(self, values: np.ndarray, variant: str | None = None) -> float:
        """`values` (V,) of `variant` (the run's own when None)."""
        return float(values[self.actual if variant is None else self.variants.index(variant)])

    update_cycles = property(lambda self: self.at(self.updates))
    dense_update_cycles = property(lambda self: self.at(self.updates, DENSE))
    executed_macs = property(lambda self: self.at(self.macs))
    dense_macs = property(lambda self: self.at(self.macs, DENSE))
    useful_macs = property(lambda self: self.at(self.macs, HARVESTED),
                           doc="MACs on non-zero operands: the work that changes the result.")


@dataclass
class StepTiming:
    """One step per variant (V,): `step_cycles`; `rates()` gives its Compute and Transmission
    Samples/s. `congestion` (V, K) and `replicas` (K,) are what the schedule used;
    `congestion_of` gives the congestion (an array, or a function worked out on first use).
    `measured`: the kernels' arrays (`StepKernels`); `kernels` each one's `KernelTiming`."""
    variants: tuple[str, ...]
    actual: int
    step_cycles: np.ndarray
    measured: "StepKernels"
    dynamic: DynamicStats | None = None        # what the markers said (None: no markers)
    congestion_of: Any = None
    replicas: np.ndarray | None = None
    clock_hz: float = 1.0

    @cached_property
    def kernels(self) -> list[KernelTiming]:
        return self.measured.timings()

    @property
    def busy_total(self) -> float:
        """Busy cycles of every core of every kernel in the run's own variant."""
        return float(self.measured.busy.sum())

    @cached_property
    def congestion(self) -> np.ndarray | None:
        return self.congestion_of() if callable(self.congestion_of) else self.congestion_of

    def rates(self) -> schedule.Rates:
        """Compute and Transmission Samples/s of each variant (`compiler.schedule.rates`)."""
        splits = [k.split() for k in self.kernels]
        return schedule.rates(np.stack([c for c, _ in splits], axis=1),
                              np.stack([lk for _, lk in splits], axis=1), self.replicas,
                              self.congestion, self.clock_hz)

    def variant(self, name: str) -> float | None:
        return float(self.step_cycles[self.variants.index(name)]) if name in self.variants else None

    @property
    def cycles(self) -> float:
        return float(self.step_cycles[self.actual])

    @property
    def dense_cycles(self) -> float:
        return self.variant(DENSE)

    @property
    def fixed_depth_cycles(self) -> float | None:
        return self.variant("fixed_depth")

    @property
    def padded_cycles(self) -> float | None:
        return self.variant("padded")


def measure_step(context: PlanContext, xp, env: dict, harvest: bool = True,
                 weight_masks: dict | None = None) -> StepTiming:
    """Time one training step of `context.plan` from the tensors the executor left in `env`.

    `weight_masks` (fqn -> bool array shaped like the parameter): the masks the step ran with;
    a kernel whose weight has one skips the masked weights when zeros are skipped, and stores
    the kept ones compressed (smaller update and memory)."""
    plan = context.plan
    positions = step_positions(plan, env, context.layout)
    runs = Runs(xp, variants(harvest, positions is not None), positions,
                {k.name: t for k in plan.kernels
                 if (t := context.tiles(xp, k, weight_masks)) is not None} if weight_masks else {})
    replicas, hops = context.schedule
    measured = _compiled(context, env, runs, harvest) or \
        measure_arrays(plan.kernels, context.mappings, env, runs, plan.target, plan.optimizer,
                       harvest, context)
    samples = measured.samples
    full = context.full_load(len(runs.variants))
    # Every route's load is at most its full load, so where the full load binds no stage the
    # step is the same with either; the exact loads, and the non-zeros they are counted from,
    # are then worked out only if asked for, from the values the routes carried this step.
    lazy = (full[..., None] <= samples / replicas[:, None]).all() and \
        _holdable(context, env)
    carried = {n: env[n] for n in context.route_values[0] if n in env} if lazy else env
    exact = lambda: _congestion(context, _route_shares(context, xp, carried, runs, positions,  # noqa: E731
                                                       harvest), len(runs.variants))
    congestion = exact if lazy else exact()
    cycles = schedule.step(samples, replicas, full if callable(congestion) else congestion, hops,
                           measured.updates, plan.streaming, _token_shares(plan, positions, runs))
    return StepTiming(runs.names, own_variant(harvest), cycles, measured,
                      positions.stats() if positions is not None else None, congestion, replicas,
                      plan.target.clock_hz)


HOLD_BYTES = 64 * 2**20      # route values a lazy congestion may keep alive past its step


def _holdable(context: PlanContext, env: dict) -> bool:
    """Whether the values the routes carried are small enough to keep until asked for (a big
    model's would double its activations' memory through the next step). Their sizes are the
    plan's, the same every step: summed on the first."""
    if context.route_bytes is None:
        context.route_bytes = sum(getattr(env.get(n), "nbytes", 0) for n in context.route_values[0])
    return context.route_bytes <= HOLD_BYTES


def _route_shares(context: PlanContext, xp, env: dict, runs: Runs, positions, harvest: bool):
    """(variants, routes) the share of its full load each sample route carries, or None when
    every route carries all of it: the rows its positions run (pads and halted positions take
    no link) and, in a variant that skips zeros, only the non-zeros as (value, index) wavelets
    where that is fewer. The density of a route's value is read off this step's tensors over
    the rows that ran, and every variant that skips zeros sends its own rows at that density.
    A recurrent block's tensors hold the state of positions that halted, not what a
    fixed-depth run would send, so with recurrent steps the links are charged by positions
    alone."""
    plan = context.plan
    routes = len(plan.sample_routes)
    ran = positions.route_shares("actual") if positions is not None else None
    recurrent = positions is not None and bool(positions.layout.recurrent)
    filtering = (harvest or any(runs.harvests)) and not recurrent
    sent = sent_shares(context, xp, env, ran) if filtering else None
    if positions is None and sent is None:
        return None
    rows = [positions.route_shares(v.positions) if positions is not None else np.ones(routes)
            for v in runs.variants]
    return np.stack([r * (sent if sent is not None and v.harvest else 1.0)
                     for r, v in zip(rows, runs.variants)])


def _congestion(context: PlanContext, shares, variants_: int) -> np.ndarray:
    """(variants, kernels) per-sample congestion of routes carrying `shares` of their load,
    each distinct row of shares evaluated once, the full load read from the context."""
    if shares is None:
        return context.full_load(variants_)
    distinct, which = np.unique(shares, axis=0, return_inverse=True)
    full = (distinct == 1.0).all(axis=1)
    out = np.empty((len(distinct), len(context.plan.kernels)))
    out[full] = context.congestion[0]
    if (~full).any():
        out[~full] = context.plan.congestion_array(distinct[~full])
    return out[np.ravel(which)]


def sent_shares(context: PlanContext, xp, env: dict, ran=None) -> np.ndarray | None:
    """(routes,) the share of the dense wavelets of the rows it sends that each sample route's
    sender sends when zeros are filtered (`compiler.cost.sent_share`), from the non-zeros of
    the value it carries over the `ran` (routes,) share of its rows that ran (all when None;
    1 where the value is not in `env`); None when every route sends densely."""
    names, which = context.route_values
    found = [env.get(name) for name in names]
    density = np.array([nonzeros(xp, v) / v.size if v is not None and getattr(v, "size", 0) else 1.0
                        for v in found])[which]
    if ran is not None:
        density = density / np.maximum(ran, 1e-12)
    shares = cost.sent_share(density, context.plan.target)
    return None if (shares == 1.0).all() else shares


def _token_shares(plan, positions, runs: Runs):
    """(variants, samples, chunks) of a streamed sequence model whose pads are marked, else
    None (every token an equal share)."""
    chunks = plan.streaming.chunks
    if positions is None or chunks <= 1:
        return None
    shares = [positions.token_shares(v.positions, chunks) for v in runs.variants]
    return None if any(s is None for s in shares) else np.stack(shares)


def own_variant(harvest: bool) -> int:
    """The index of the run's own variant: zeros skipped or not (`context.variants`)."""
    return 0 if harvest else 1


def _compiled(context: PlanContext, env: dict, runs: Runs, harvest: bool) -> "StepKernels | None":
    """The step's kernels from the plan's compiled program (`compiled.compile_step`, made on
    the first step it applies to), or None where it does not apply."""
    actual = own_variant(harvest)
    if runs.positions is not None or runs.masked:
        return None
    if actual not in context.compiled:
        context.compiled[actual] = compile_step(context, runs, actual, env)
    program = context.compiled[actual]
    found = program.measure(env) if program is not None else None
    if found is None:
        context.compiled[actual] = None       # its counts depend on the data after all
        return None
    plan, variants_ = context.plan, len(runs.variants)
    return StepKernels(found.samples, context.update_busiest(variants_), found.busy,
                       lambda: [_timing(k, m, c, [context.updates[k.name]] * variants_, busy, runs,
                                        plan.target, plan.optimizer, harvest, context)
                                for k, m, c, busy in zip(plan.kernels, context.mappings,
                                                         found.cycles(), found.busy)])


def measure_kernel(kernel, mapping, env: dict, runs: Runs, target, optimizer,
                   harvest: bool = True) -> KernelTiming:
    """One kernel of a step (`measure_arrays`)."""
    return measure_arrays([kernel], [mapping], env, runs, target, optimizer, harvest).timings()[0]


@dataclass
class StepKernels:
    """A step's kernels, per variant (the first axis): `samples` (V, K, S) the cycles of each
    kernel's samples, `updates` (V, K) each one's update on its busiest core, `busy` (K,) the
    busy cycles of all its cores in the run's own variant; `timings()` each one's
    `KernelTiming`, made when first asked for (the reports), not every step."""
    samples: np.ndarray
    updates: np.ndarray
    busy: np.ndarray
    made: Any

    def timings(self) -> list[KernelTiming]:
        if callable(self.made):
            self.made = self.made()
        return self.made


def measure_arrays(kernels: list, mappings: list, env: dict, runs: Runs, target, optimizer,
                   harvest: bool = True, context: PlanContext | None = None) -> StepKernels:
    """Kernels of a step, every variant of `runs`: their kinds' counts from `env`, then the one
    evaluation (`compiler.evaluate.evaluate_all`); each one's update per variant (the kept
    weights only where zeros are skipped and its weight is masked), and the busy cycles of
    every core of every replica. With the plan's `context`: the updates of unmasked weights
    and the samples each stage holds are taken from it, and a kernel whose kind counted this
    step with the very same `Counts` object as the last (counts that do not depend on the
    data) keeps its last evaluation."""
    actual = own_variant(harvest)
    counts = [kind_of(k).measured_counts(k, m.replica, env, runs) for k, m in zip(kernels, mappings)]
    last = context.cycles if context is not None else {}
    cycles = [last.get(k.name) for k in kernels]
    fresh = [i for i, (c, n) in enumerate(zip(cycles, counts)) if c is None or c.counts is not n]
    for i, evaluated in zip(fresh, evaluate_all([(kernels[i], counts[i], mappings[i].replica)
                                                 for i in fresh], target)):
        cycles[i] = evaluated
    if context is not None:
        context.cycles = {k.name: c for k, c in zip(kernels, cycles)}
    updates = [_updates(k, m, runs, target, optimizer, context) for k, m in zip(kernels, mappings)]
    unmasked = context is not None and not any(runs.tiles(k) is not None for k in kernels)
    busiest = context.update_busiest(len(runs.variants)) if unmasked else \
        np.array([[u.busiest for u in per] for per in updates]).T
    busy = np.array([c.busy_total(actual, m.replicas, u[actual].total)
                     for c, m, u in zip(cycles, mappings, updates)])
    return StepKernels(np.stack([c.sample for c in cycles], axis=1), busiest, busy,
                       lambda: [_timing(*item, runs, target, optimizer, harvest, context)
                                for item in zip(kernels, mappings, cycles, updates, busy)])


def _updates(kernel, mapping, runs: Runs, target, optimizer, context) -> list:
    """The kernel's update (`context.Update`) in each variant: the kept weights where zeros
    are skipped and its weight is masked, all of them otherwise."""
    dense = context.updates[kernel.name] if context is not None else \
        update_of(kernel, mapping, target, optimizer)
    tiles = runs.tiles(kernel)
    if tiles is None:
        return [dense] * len(runs.variants)
    held = update_of(kernel, mapping, target, optimizer, tiles)
    return [held if v.harvest else dense for v in runs.variants]


def _timing(kernel, mapping, cycles, updates: list, busy: float, runs: Runs, target, optimizer,
            harvest: bool, context: PlanContext | None) -> KernelTiming:
    """A kernel's timing from its evaluated `cycles`, its `updates` per variant and its `busy`
    cycles; a masked weight is stored compressed when zeros are skipped."""
    actual, tiles, memory = own_variant(harvest), runs.tiles(kernel), None
    if tiles is not None and harvest:
        flight = context.in_flight[kernel.name] if context is not None else 1
        memory = kind_of(kernel).memory_per_core(kernel, mapping, target, optimizer, flight,
                                                 kept=int(tiles.kept.max()))
    return KernelTiming(kernel.name, runs.names, actual, cycles.sample,
                        np.array([u.busiest for u in updates]), float(busy), cycles, memory,
                        mapping, updates[actual].per_core)
