"""The static estimate: the cost model fed with counts assumed from densities (no data needed).

Per kernel, its kind's `assumed_counts` (the plan's assumed densities of the streamed operands,
every value when harvesting is off) go through the one evaluation (`compiler.cost`) and the one
schedule (`compiler.schedule`), exactly as the measurement's counts do (`simulator.measure`).
`kernel_cycles` takes counts too, so a test can inject measured counts and get the measurement.
"""
from __future__ import annotations

import numpy as np

from . import cost, schedule
from .evaluate import KernelCycles, evaluate
from .kernels import ASSUMED, Kernel, kind_of


def kernel_cycles(kernel: Kernel, mapping, target, density=1.0, harvest: bool = True,
                  counts=None) -> KernelCycles:
    """The kernel at assumed `density` (one float, or (x, dY)), or on given `counts`."""
    if counts is None:
        counts = kind_of(kernel).assumed_counts(kernel, mapping, target, density, harvest)
    return evaluate(kernel, counts, mapping, target)


def sample_cycles(kernel: Kernel, mapping, target, density=1.0, harvest: bool = True) -> float:
    """Forward + backward cycles of one sample on one replica at assumed `density`: its busiest
    core's. Assumed counts are one distinct sample, and a run of one sample is its busiest
    core's (`cost.run_cycles`), so the mapping search, which asks this of every unrolling it
    tries, skips the run and the table."""
    kind = kind_of(kernel)
    counts = kind.assumed_counts(kernel, mapping, target, density, harvest)
    if np.any(counts.rows):
        return float(kernel_cycles(kernel, mapping, target, counts=counts).sample.max())
    c = kind.components(kernel, counts.values, mapping, target)
    return float(cost.per_core_cycles(c, c.shape[:2] + (mapping.rows, mapping.cols)).max())


def dense_sample_cycles(kernel: Kernel, mapping, target) -> float:
    """The same with harvesting off: the dense baseline."""
    return sample_cycles(kernel, mapping, target, 1.0, harvest=False)


def update_cycles(kernel: Kernel, mapping, target, optimizer) -> float:
    """The once-per-step update and all-reduce of the weights the fullest core holds."""
    return float(np.max(cost.update_cycles(kind_of(kernel).weights_per_core(kernel, mapping),
                                           mapping, target, optimizer)))


def memory_per_core(kernel: Kernel, mapping, target, optimizer, in_flight: int) -> int:
    return kind_of(kernel).memory_per_core(kernel, mapping, target, optimizer, in_flight)


def assumed_route_shares(plan):
    """(routes,) the share of its dense wavelets each route is assumed to send: with harvesting,
    the plan's density's non-zeros as (value, index) wavelets where fewer (`cost.wavelets`);
    None (all) when every route sends densely."""
    if not plan.harvest or plan.density >= 1.0:
        return None
    return np.full(len(plan.sample_routes), float(cost.sent_share(plan.density, plan.target)))


def estimate(plan) -> dict:
    """The plan's step at its assumed densities and harvest setting (`Plan.assumed`)."""
    names = [k.name for k in plan.kernels]
    target, samples = plan.target, plan.kernels[0].samples if plan.kernels else 0
    evaluated = [kernel_cycles(k, plan.mapping[k.name].replica, target, plan.density_of(k.name),
                               plan.harvest) for k in plan.kernels]
    per_sample = np.stack([e.sample[:, 0] for e in evaluated], axis=1) if evaluated \
        else np.zeros((len(ASSUMED), 0))
    splits = [e.split() for e in evaluated]
    compute = np.stack([c[:, 0] for c, _ in splits], axis=1) if splits else per_sample
    link = np.stack([lk[:, 0] for _, lk in splits], axis=1) if splits else per_sample
    replicas = np.array([plan.mapping[n].replicas for n in names], dtype=np.float64)
    congestion = plan.congestion_array(assumed_route_shares(plan))
    updates = np.array([[update_cycles(k, plan.mapping[k.name], target, plan.optimizer)
                         for k in plan.kernels]])
    cycles = float(schedule.step(np.repeat(per_sample[..., None], samples, axis=-1), replicas,
                                 congestion, plan.latency(), updates, plan.streaming)[0])
    rates = schedule.rates(compute[..., None], link[..., None], replicas, congestion,
                           target.clock_hz)
    clock = target.clock_hz
    # useful MACs at the assumed densities, as the measurement counts its own (non-zero
    # operands only); a plan sized dense assumes every MAC useful
    macs = sum(float(e.macs[0]) for e in evaluated) * samples
    stage = schedule.stage_times(per_sample[0], replicas, congestion[0])
    return {"cycles": cycles, "samples_per_s": samples * clock / cycles if cycles else 0.0,
            "per_sample_cycles": dict(zip(names, stage.tolist())),
            "compute_samples_per_s": float(rates.compute_samples_per_s[0]),
            "transmission_samples_per_s": float(rates.transmission_samples_per_s[0]),
            "active_pes_pct": 100.0 * sum(plan.mapping[n].cores for n in names) / target.cores,
            "compute_utilization_pct": 100.0 * 2 * macs / (target.peak_flops * cycles / clock)
            if cycles else 0.0,
            "congestion_cycles": dict(zip(names, congestion[0].tolist())),
            "density": plan.density, "harvest": plan.harvest}
