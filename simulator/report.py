"""The utilization report of a step, after Cerebras' compile report.

Summary keys follow that report: Samples/s, Compute Samples/s (if only compute limited each
stage), Transmission Samples/s (if only links did), Active PEs %, Compute Utilization % (useful
FLOPs over the whole wafer's peak), plus harvesting (measured vs dense cycles) and the compiler's
static estimate next to the measurement.

Sparsity (DESIGN.md, "Sparsity"): each matmul kernel's row carries the measured densities of its
streamed x and dY, the MACs harvesting skipped and its speedup over its dense self; `tensors`
lists target vs actual density per followed tensor (drop outputs, ReLU outputs, masked weights),
as the caller measured them on the step's tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.kernels import kind_of
from compiler.plan import Plan

from .dynamic_report import dynamic_summary
from .measure import StepTiming


@dataclass
class Report:
    core_utilization: np.ndarray          # (rows, cols) busy / step cycles, 0 where no kernel
    kernels: list[dict]
    summary: dict
    sram_per_core: np.ndarray             # (rows, cols) bytes resident
    kernel_grid: np.ndarray               # (rows, cols) kernel index + 1, 0 where free
    kernel_names: list[str] = field(default_factory=list)
    link_load: tuple = ()                 # (horizontal, vertical) wavelets per step
    tensors: list[dict] = field(default_factory=list)   # target vs actual density per tensor


def build_report(plan: Plan, timing: StepTiming, harvest: bool, densities: dict | None = None,
                 tensors: list[dict] | None = None) -> Report:
    """`densities`: kernel name -> (x density, dY density) measured on the step's tensors
    (`simulator.measure.PlanContext.densities`); `tensors`: per-tensor density rows to carry."""
    t = plan.target
    util = np.zeros((t.rows, t.cols))
    sram = np.zeros((t.rows, t.cols))
    grid = np.zeros((t.rows, t.cols), dtype=np.int32)
    # a masked weight is stored compressed: the measured per-core memory replaces the plan's
    memory = {kt.name: kt.memory_per_core if kt.memory_per_core is not None else m
              for kt, m in zip(timing.kernels, (plan.memory_per_core()[k.name] for k in timing.kernels))}
    rows = []
    for i, kt in enumerate(timing.kernels):
        r, m = plan.rect[kt.name], plan.mapping[kt.name]
        util[r.cells()] = np.clip(kt.core_busy / timing.cycles, 0.0, 1.0) if timing.cycles else 0.0
        sram[r.cells()] = memory[kt.name]
        grid[r.cells()] = i + 1
        row = _kernel_row(plan, kt, m, memory[kt.name], util[r.cells()], timing)
        if densities and kt.name in densities:
            row["x_density"], row["dy_density"] = densities[kt.name]
        rows.append(row)
    summary = _summary(plan, timing, harvest, util, grid)
    summary.update(_sparsity_summary(tensors or []))
    summary.update(dynamic_summary(timing))      # halting and padding (empty without markers)
    return Report(util, rows, summary, sram, grid, [k.name for k in plan.kernels],
                  plan.link_loads(), list(tensors or []))


def _kernel_row(plan, kt, m, memory, util, timing) -> dict:
    kernel = plan.kernel[kt.name]
    cycles = float(kt.sample_cycles.sum()) / m.replicas + kt.update_cycles
    dense = float(kt.dense_sample_cycles.sum()) / m.replicas + kt.update_cycles
    padded = float(kt.variant_cycles("padded").sum()) / m.replicas + kt.update_cycles
    return {"name": kt.name, "kind": kernel.kind, "rows": m.rows, "cols": m.cols,
            "replicas": m.replicas, "pinned": kt.name in plan.pinned, "cycles": cycles,
            "dense_cycles": dense, "speedup_vs_dense": dense / cycles if cycles else 1.0,
            "padded_cycles": padded,
            "utilization": float(util.mean()), "macs": kt.executed_macs, "dense_macs": kt.dense_macs,
            "dense_macs_per_sample": kind_of(kernel).dense_macs(kernel),
            "harvested_macs": kt.dense_macs - kt.executed_macs,
            "harvested_fraction": 1.0 - kt.executed_macs / kt.dense_macs if kt.dense_macs else 0.0,
            "imbalance": _imbalance(kt.core_busy), "sram_bytes_per_core": memory,
            "per_sample_cycles": float(kt.sample_cycles.mean()), "loop_nest": str(kernel.nest)}


def _summary(plan: Plan, timing: StepTiming, harvest: bool, util: np.ndarray, grid) -> dict:
    t = plan.target
    samples = plan.kernels[0].samples
    seconds = timing.cycles / t.clock_hz
    macs = sum(k.executed_macs for k in timing.kernels)
    useful = sum(k.useful_macs for k in timing.kernels)
    estimate = plan.estimate()
    rates = timing.rates()
    allocated = grid > 0
    return {
        "wafer": t.name, "fabric": f"{t.rows} x {t.cols}", "samples_per_step": samples,
        "harvest": harvest, "step_cycles": timing.cycles, "dense_step_cycles": timing.dense_cycles,
        "harvest_speedup": timing.dense_cycles / timing.cycles if timing.cycles else 1.0,
        "step_seconds": seconds,
        "samples_per_s": samples / seconds if seconds else 0.0,
        "compute_samples_per_s": float(rates.compute_samples_per_s[timing.actual]),
        "transmission_samples_per_s": float(rates.transmission_samples_per_s[timing.actual]),
        "active_pes_pct": 100.0 * float(allocated.mean()),
        "mean_utilization_active_pct": 100.0 * float(util[allocated].mean()) if allocated.any() else 0.0,
        # useful FLOPs: multiplications by zero change nothing, whether or not they were executed
        "compute_utilization_pct": 100.0 * 2.0 * useful / (t.peak_flops * seconds) if seconds else 0.0,
        "executed_macs": macs, "useful_macs": useful, "dense_macs": sum(k.dense_macs for k in timing.kernels),
        "max_sram_bytes_per_core": max((float(np.max(kt.memory_per_core)) if kt.memory_per_core is not None
                                        else plan.memory_per_core()[kt.name] for kt in timing.kernels), default=0),
        "sram_bytes_per_core": t.sram_bytes,
        "estimate_step_cycles": estimate["cycles"],
        "estimate_vs_measured": estimate["cycles"] / timing.cycles if timing.cycles else 1.0,
    }


def _imbalance(busy: np.ndarray) -> float:
    """Busiest core over the mean core of the kernel: 1 when the work is even. Sparsity makes it
    uneven, because each core's work follows the non-zeros of its own tile."""
    mean = float(busy.mean())
    return float(busy.max()) / mean if mean else 1.0


def _sparsity_summary(tensors: list[dict]) -> dict:
    """Mean actual density of the induced (drop) outputs and of the ReLU outputs, if any."""
    out = {}
    for kind, key in (("drop", "drop_density"), ("relu", "relu_density")):
        values = [t["density"] for t in tensors if t["kind"] == kind and t["density"] is not None]
        if values:
            out[key] = float(np.mean(values))
    return out
