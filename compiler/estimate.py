"""The static estimate: the cost model fed with counts assumed from densities (no data needed).

Per kernel, its kind's `assumed_counts` (the plan's assumed densities of the streamed operands,
every value when harvesting is off) go through the one evaluation (`compiler.cost`) and the one
schedule (`compiler.schedule`), exactly as the measurement's counts do (`simulator.measure`).
`kernel_cycles` takes counts too, so a test can inject measured counts and get the measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cost, schedule
from .kernels import ASSUMED, Kernel, kind_of


@dataclass(frozen=True)
class KernelCycles:
    """A kernel evaluated on counts, per variant and sample: `core` (V, S, rows, cols) cycles of
    each core, `sample` (V, S) the kernel's time (busiest core + overhead), `compute` and `link`
    (V, S) if only compute or only the links limited it, `macs` (V,) executed."""
    core: np.ndarray
    sample: np.ndarray
    compute: np.ndarray
    link: np.ndarray
    macs: np.ndarray


def evaluate(kernel: Kernel, counts, mapping, target) -> KernelCycles:
    """`counts` (of the kernel's kind, on one replica's `mapping`) through the one evaluation."""
    c = kind_of(kernel).components(kernel, counts, mapping, target)
    terms = np.broadcast(c.fwd_compute, c.fwd_link, c.bwd_compute, c.bwd_link)
    shape = terms.shape[:3] + (mapping.rows, mapping.cols)
    core = cost.per_core_cycles(c, shape)
    compute, link = cost.split(c, shape)
    return KernelCycles(core, cost.sample_cycles(core, target), compute, link, np.asarray(c.macs))


def kernel_cycles(kernel: Kernel, mapping, target, density=1.0, harvest: bool = True,
                  counts=None) -> KernelCycles:
    """The kernel at assumed `density` (one float, or (x, dY)), or on given `counts`."""
    if counts is None:
        counts = kind_of(kernel).assumed_counts(kernel, mapping, target, density, harvest)
    return evaluate(kernel, counts, mapping, target)


def sample_cycles(kernel: Kernel, mapping, target, density=1.0, harvest: bool = True) -> float:
    """Forward + backward cycles of one sample on one replica at assumed `density`."""
    return float(kernel_cycles(kernel, mapping, target, density, harvest).sample.max())


def dense_sample_cycles(kernel: Kernel, mapping, target) -> float:
    """The same with harvesting off: the dense baseline."""
    return sample_cycles(kernel, mapping, target, 1.0, harvest=False)


def update_cycles(kernel: Kernel, mapping, target, optimizer) -> float:
    """The once-per-step update and all-reduce of the weights the fullest core holds."""
    return float(np.max(cost.update_cycles(kind_of(kernel).weights_per_core(kernel, mapping),
                                           mapping, target, optimizer)))


def memory_per_core(kernel: Kernel, mapping, target, optimizer, in_flight: int) -> int:
    return kind_of(kernel).memory_per_core(kernel, mapping, target, optimizer, in_flight)


def estimate(plan) -> dict:
    """The plan's step at its assumed densities and harvest setting (`Plan.assumed`)."""
    names = [k.name for k in plan.kernels]
    target, samples = plan.target, plan.kernels[0].samples if plan.kernels else 0
    evaluated = [kernel_cycles(k, plan.mapping[k.name].replica, target, plan.density_of(k.name),
                               plan.harvest) for k in plan.kernels]
    stack = lambda key: np.stack([getattr(e, key)[:, 0] for e in evaluated], axis=1)  # noqa: E731
    per_sample = stack("sample") if evaluated else np.zeros((len(ASSUMED), 0))
    replicas = np.array([plan.mapping[n].replicas for n in names], dtype=np.float64)
    congestion = plan.congestion_array()
    updates = np.array([[update_cycles(k, plan.mapping[k.name], target, plan.optimizer)
                         for k in plan.kernels]])
    figures = schedule.step(np.repeat(per_sample[..., None], samples, axis=-1),
                            stack("compute")[..., None] if evaluated else per_sample[..., None],
                            stack("link")[..., None] if evaluated else per_sample[..., None],
                            replicas, congestion, plan.hops(), updates, target.clock_hz)
    cycles = float(figures.cycles[0])
    clock = target.clock_hz
    macs = sum(kind_of(k).dense_macs(k) for k in plan.kernels) * samples
    stage = schedule.stage_times(per_sample[0], replicas, congestion[0])
    return {"cycles": cycles, "samples_per_s": samples * clock / cycles if cycles else 0.0,
            "per_sample_cycles": dict(zip(names, stage.tolist())),
            "compute_samples_per_s": float(figures.compute_samples_per_s[0]),
            "transmission_samples_per_s": float(figures.transmission_samples_per_s[0]),
            "active_pes_pct": 100.0 * sum(plan.mapping[n].cores for n in names) / target.cores,
            "compute_utilization_pct": 100.0 * 2 * macs / (target.peak_flops * cycles / clock)
            if cycles else 0.0,
            "congestion_cycles": dict(zip(names, congestion[0].tolist())),
            "density": plan.density, "harvest": plan.harvest}
