"""The static estimate and the compile report of a Plan (modelled on Cerebras' compile report).

Estimated Samples/s comes from the pipeline recurrence over per-sample stage times at the
assumed densities; Compute Samples/s and Transmission Samples/s are the rates if only compute,
or only the links, limited each stage; congestion on a shared link slows every kernel whose
routes cross it (a link moves one wavelet per cycle).
"""
from __future__ import annotations

import numpy as np

from . import attention, cost
from .cost import Mapping, tile_sizes
from .pipeline import step_cycles
from .placement import directed_link_loads, route_segments

REDUCTION = "gradient all-reduce"


def _sample_routes(plan):
    return tuple(r for r in plan.routes if not r.edge.value.startswith(REDUCTION))


def congestion(plan) -> dict[str, float]:
    """Per kernel: the per-sample load of the busiest link (in the direction of travel) that any
    of its routes crosses."""
    samples = max(plan.kernels[0].samples, 1) if plan.kernels else 1
    routes = _sample_routes(plan)
    loads = directed_link_loads(routes, plan.target)
    out = {k.name: 0.0 for k in plan.kernels}
    for rt in routes:
        peak = 0.0
        for direction, rows, cols in route_segments(rt):
            peak = max(peak, float(loads[direction][rows, cols].max()))
        for name in (rt.edge.src, rt.edge.dst):
            out[name] = max(out[name], peak / samples)
    return out


def _components(plan, kernel) -> tuple[float, float, float]:
    """(per-sample cycles, compute-only cycles, link-only cycles) at the assumed densities."""
    m, target = plan.mapping[kernel.name], plan.target
    if kernel.kind == "attention":
        return attention.split_cycles(kernel, Mapping(m.rows, m.cols), target)
    sample = cost.estimate_sample_cycles(kernel, Mapping(m.rows, m.cols), target,
                                         plan.density_of(kernel.name))
    if kernel.kind != "matmul":
        c = cost.generated_components(kernel.nest.extent("e"), kernel.nest.flops_per_point, m, target)
        return sample, c["compute"], c["link"]
    dx, ddy = plan.density_of(kernel.name)
    tokens = kernel.nest.extent("t")
    tk, tn = tile_sizes(kernel.nest.extent("i"), m.rows), tile_sizes(kernel.nest.extent("j"), m.cols)
    c = cost.matmul_components((dx * tk * tokens)[None], (ddy * tn * tokens)[None], tk, tn, target,
                               True, tokens, computes_dx=kernel.computes_dx)
    compute = float(np.max(c["fwd_compute"] + c["bwd_compute"]))
    link = float(np.max(np.maximum(c["fwd_link"], c["bwd_link"])))
    return sample, compute, link


def stage_times(per_sample: np.ndarray, replicas: np.ndarray, congestion_cycles: np.ndarray):
    """A stage is as slow as its share of the samples, or its busiest link, whichever is more."""
    return np.maximum(per_sample / replicas, congestion_cycles)


def estimate(plan) -> dict:
    names = [k.name for k in plan.kernels]
    parts = np.array([_components(plan, k) for k in plan.kernels]).reshape(-1, 3)
    replicas = np.array([plan.mapping[n].replicas for n in names], dtype=np.float64)
    jam = plan.congestion()
    congested = np.array([jam[n] for n in names])
    stage = stage_times(parts[:, 0], replicas, congested)
    updates = np.array([cost.update_cycles(k, plan.mapping[k.name], plan.target, plan.optimizer)
                        for k in plan.kernels])
    samples = plan.kernels[0].samples if plan.kernels else 0
    hops = plan.hops()
    cycles = step_cycles(np.repeat(stage[:, None], samples, axis=1), hops, float(hops.sum()), updates)
    clock = plan.target.clock_hz
    macs = sum(k.dense_macs_per_sample for k in plan.kernels) * samples
    rate = lambda per: clock / per if per > 0 else float("inf")  # noqa: E731
    return {"cycles": cycles, "samples_per_s": samples * clock / cycles if cycles else 0.0,
            "per_sample_cycles": dict(zip(names, stage.tolist())),
            "compute_samples_per_s": rate(float(np.max(parts[:, 1] / replicas, initial=0))),
            "transmission_samples_per_s": rate(float(np.max(np.maximum(parts[:, 2] / replicas,
                                                                        congested), initial=0))),
            "active_pes_pct": 100.0 * sum(plan.mapping[n].cores for n in names) / plan.target.cores,
            "compute_utilization_pct": 100.0 * 2 * macs / (plan.target.peak_flops * cycles / clock)
            if cycles else 0.0,
            "congestion_cycles": jam, "density": plan.density}


def kernel_table(plan) -> list[dict]:
    est = estimate(plan)
    memory = plan.memory_per_core()
    link_in = {k.name: 0 for k in plan.kernels}
    link_out = dict(link_in)
    for rt in _sample_routes(plan):
        link_out[rt.edge.src] += rt.edge.wavelets
        link_in[rt.edge.dst] += rt.edge.wavelets
    rows = []
    for k in plan.kernels:
        m, r = plan.mapping[k.name], plan.rect[k.name]
        rows.append({"name": k.name, "kind": k.kind, "rows": m.rows, "cols": m.cols,
                     "replicas": m.replicas, "pinned": k.name in plan.pinned, "at": (r.row, r.col),
                     "cycles_per_sample": est["per_sample_cycles"][k.name],
                     "congestion_cycles": est["congestion_cycles"][k.name],
                     "memory_per_core": memory[k.name], "link_in": link_in[k.name],
                     "link_out": link_out[k.name], "loop_nest": str(k.nest)})
    return rows


def format_report(plan) -> str:
    t, est = plan.target, estimate(plan)
    meta = dict(plan.meta)
    horizontal, vertical = plan.link_loads()
    busiest = max(float(horizontal.max(initial=0)), float(vertical.max(initial=0)))
    width = max([14] + [len(k.name) + 2 for k in plan.kernels])     # "layers.11.attn.sdpa" fits
    lines = [f"Compile report: {t.name} ({t.rows} x {t.cols} cores, {t.sram_bytes:,} B SRAM/core, "
             f"{t.clock_hz / 1e9:g} GHz), optimizer {plan.optimizer.kind}, "
             f"strategy {meta.get('strategy', 'auto')}",
             f"  Samples/s (estimated)   {est['samples_per_s']:>16,.0f}   "
             f"({est['cycles']:,.0f} cycles/step at density {plan.density:g})",
             f"  Compute Samples/s       {est['compute_samples_per_s']:>16,.0f}",
             f"  Transmission Samples/s  {est['transmission_samples_per_s']:>16,.0f}",
             f"  Active PEs              {est['active_pes_pct']:>15.1f}%",
             f"  Compute Utilization     {est['compute_utilization_pct']:>15.1f}%",
             f"  wire length {meta.get('wire_length', 0):,} hops; most-loaded link "
             f"{busiest:,.0f} wavelets/step; search relaxed {meta.get('relaxations', 0)} time(s)",
             f"  {'kernel':<{width}}{'kind':<10}{'rows x cols x repl':>19}{'at':>10}{'cyc/sample':>11}"
             f"{'mem/core B':>11}{'link in':>9}{'link out':>9}"]
    for row in kernel_table(plan):
        shape = f"{row['rows']} x {row['cols']} x {row['replicas']}" + ("*" if row["pinned"] else " ")
        at = f"({row['at'][0]},{row['at'][1]})"
        lines.append(f"  {row['name']:<{width}}{row['kind']:<10}{shape:>19}{at:>10}"
                     f"{row['cycles_per_sample']:>11.1f}{row['memory_per_core']:>11,}"
                     f"{row['link_in']:>9,}{row['link_out']:>9,}")
    lines.append("  (* pinned by the user; kind: matmul, attention = hand-optimized, generated = from "
                 "its loop nest)")
    return "\n".join(lines)
