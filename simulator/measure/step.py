"""Timing measured from the data: one training step's cycles, counted from its tensors.

Each kernel's kind counts, per sample and per core, what the step's tensors made it receive and
compute (`KernelKind.measured_counts`: non-zeros of the streamed operands, real tokens, running
positions, masked weights); the counts go through the same evaluation (`compiler.estimate.
evaluate`, `compiler.cost`) and the same schedule (`compiler.schedule.step`) as the static
estimate's assumed counts, so the two differ only in where the counts come from.

The timing variants of the step are one axis through all of it (`context.variants`): the run
with zeros skipped ("harvested") and without ("dense"), and, for a model with `running` markers,
the fixed-depth and padded baselines. The run's own time is the harvested or the dense row,
as its `harvest` setting says.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler import cost, schedule
from compiler.evaluate import evaluate
from compiler.kernels import kind_of

from .context import DENSE, HARVESTED, PlanContext, Runs, variants
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

    @property
    def update_cycles(self) -> float:
        return float(self.updates[self.actual])

    @property
    def dense_update_cycles(self) -> float:
        return float(self.updates[self.variants.index(DENSE)])

    @property
    def executed_macs(self) -> float:
        return float(self.macs[self.actual])

    @property
    def dense_macs(self) -> float:
        return float(self.macs[self.variants.index(DENSE)])

    @property
    def useful_macs(self) -> float:
        """MACs on non-zero operands: the work that changes the result."""
        return float(self.macs[self.variants.index(HARVESTED)])


@dataclass
class StepTiming:
    """One step per variant (V,): `step_cycles`; `rates()` gives its Compute and Transmission
    Samples/s. `congestion` (V, K) and `replicas` (K,) are what the schedule used."""
    variants: tuple[str, ...]
    actual: int
    step_cycles: np.ndarray
    kernels: list[KernelTiming] = field(default_factory=list)
    dynamic: DynamicStats | None = None        # what the markers said (None: no markers)
    congestion: np.ndarray | None = None
    replicas: np.ndarray | None = None
    clock_hz: float = 1.0

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
                 if (t := context.tiles(xp, k, weight_masks or {})) is not None})
    replicas, hops, flights = context.schedule
    updates = context.updates
    timings = [measure_kernel(k, plan.mapping[k.name], env, runs, plan.target, plan.optimizer,
                              harvest, flight, updates[k.name])
               for k, flight in zip(plan.kernels, flights)]
    if positions is None:
        congestion = np.repeat(context.congestion, len(runs.variants), axis=0)
    else:
        congestion = plan.congestion_array(np.stack([positions.route_shares(v.positions)
                                                     for v in runs.variants]))
    stack = lambda key: np.stack([getattr(t, key) for t in timings], axis=1)  # noqa: E731
    cycles = schedule.step(stack("samples"), replicas, congestion, hops, stack("updates"))
    return StepTiming(tuple(v.name for v in runs.variants), own_variant(harvest), cycles, timings,
                      positions.stats() if positions is not None else None, congestion, replicas,
                      plan.target.clock_hz)


def own_variant(harvest: bool) -> int:
    """The index of the run's own variant: zeros skipped or not (`context.variants`)."""
    return 0 if harvest else 1


def measure_kernel(kernel, mapping, env: dict, runs: Runs, target, optimizer, harvest: bool = True,
                   flight: int = 1, dense_update=None) -> KernelTiming:
    """One kernel of a step, every variant of `runs`: its kind's counts from `env`, then the
    one evaluation; its update per variant (the kept weights only where zeros are skipped and
    its weight is masked), and the busy cycles of every core of every replica. `flight`: the
    samples its stage holds (for the memory of a masked weight); `dense_update`: the update of
    its weights unmasked, when already worked out (`PlanContext.updates`)."""
    kind, actual = kind_of(kernel), own_variant(harvest)
    counts = kind.measured_counts(kernel, mapping.replica, env, runs)
    cycles = evaluate(kernel, counts, mapping.replica, target)
    tiles = runs.tiles(kernel)
    dense = dense_update if dense_update is not None else \
        cost.update_cycles(kind.weights_per_core(kernel, mapping), mapping, target, optimizer)
    updates = [dense] * len(runs.variants)
    busiest = np.full(len(updates), float(dense) if np.ndim(dense) == 0 else float(np.max(dense)))
    memory = None
    if tiles is not None:                      # the kept weights where zeros are skipped
        held = cost.update_cycles(kind.weights_per_core(kernel, mapping, tiles), mapping, target,
                                  optimizer)
        updates = [held if v.harvest else dense for v in runs.variants]
        busiest = np.array([float(np.max(u)) for u in updates])
        if harvest:                            # stored compressed
            memory = kind.memory_per_core(kernel, mapping, target, optimizer, flight,
                                          kept=int(tiles.kept.max()))
    return KernelTiming(kernel.name, tuple(v.name for v in runs.variants), actual, cycles.sample,
                        busiest,
                        cycles.busy_total(actual, mapping, updates[actual]), cycles, memory,
                        mapping, updates[actual])
