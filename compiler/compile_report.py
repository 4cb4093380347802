"""The compile report of a Plan (modelled on Cerebras' compile report): the static estimate's
rates (`compiler.estimate`), active PEs, and a per-kernel table with the (x, dY) densities each
kernel was sized for and where they came from: calibrated on the example batch, given by the
user, or assumed (`Plan.density`). `wb.compile` records the source in the plan's meta under
`DENSITY_SOURCE` and the kernels it covers under `DENSITY_KERNELS`.
"""
from __future__ import annotations

from .kernels import KINDS
from .placement import is_sample_route

# Plan.meta keys: where the plan's densities came from ("calibrated", "given" or "assumed"),
# the kernels that source covers (the others assume `Plan.density`), and why a sparsity-aware
# compile kept the dense-sized plan (both plans' measured cycles on the example batch).
DENSITY_SOURCE, DENSITY_KERNELS, DENSITY_CHECK = "densities", "density_kernels", "density_check"


def kernel_table(plan) -> list[dict]:
    est = plan.estimate()
    memory = plan.memory_per_core()
    link_in = {k.name: 0 for k in plan.kernels}
    link_out = dict(link_in)
    for rt in filter(is_sample_route, plan.routes):
        link_out[rt.edge.src] += rt.edge.wavelets
        link_in[rt.edge.dst] += rt.edge.wavelets
    rows = []
    for k in plan.kernels:
        m, r = plan.mapping[k.name], plan.rect[k.name]
        x_density, dy_density = plan.density_of(k.name)
        rows.append({"name": k.name, "kind": k.kind, "rows": m.rows, "cols": m.cols,
                     "replicas": m.replicas, "pinned": k.name in plan.pinned, "at": (r.row, r.col),
                     "cycles_per_sample": est["per_sample_cycles"][k.name],
                     "congestion_cycles": est["congestion_cycles"][k.name],
                     "memory_per_core": memory[k.name], "link_in": link_in[k.name],
                     "link_out": link_out[k.name], "loop_nest": str(k.nest),
                     "x_density": float(x_density), "dy_density": float(dy_density),
                     "density_source": density_source(plan, k.name)})
    return rows


def density_source(plan, name: str) -> str:
    """Where kernel `name`'s assumed densities came from: "calibrated" (on the example batch),
    "given" (by the user) or "assumed" (`plan.density` for every kernel)."""
    meta = dict(plan.meta)
    if name in meta.get(DENSITY_KERNELS, ()):
        return meta[DENSITY_SOURCE]
    return "assumed"


def format_report(plan) -> str:
    t, est = plan.target, plan.estimate()
    meta = dict(plan.meta)
    horizontal, vertical = plan.link_loads()
    busiest = max(float(horizontal.max(initial=0)), float(vertical.max(initial=0)))
    width = max([14] + [len(k.name) + 2 for k in plan.kernels])     # "layers.11.attn.sdpa" fits
    lines = [f"Compile report: {t.name} ({t.rows} x {t.cols} cores, {t.sram_bytes:,} B SRAM/core, "
             f"{t.clock_hz / 1e9:g} GHz), optimizer {plan.optimizer.kind}, "
             f"strategy {meta.get('strategy', 'auto')}",
             f"  Samples/s (estimated)   {est['samples_per_s']:>16,.0f}   "
             f"({est['cycles']:,.0f} cycles/step; assumed: {_assumed(plan)})",
             f"  Compute Samples/s       {est['compute_samples_per_s']:>16,.0f}",
             f"  Transmission Samples/s  {est['transmission_samples_per_s']:>16,.0f}",
             f"  Active PEs              {est['active_pes_pct']:>15.1f}%",
             f"  Compute Utilization     {est['compute_utilization_pct']:>15.1f}%",
             f"  wire length {meta.get('wire_length', 0):,} hops; most-loaded link "
             f"{busiest:,.0f} wavelets/step; search relaxed {meta.get('relaxations', 0)} time(s)",
             f"  {'kernel':<{width}}{'kind':<10}{'rows x cols x repl':>19}{'at':>10}{'cyc/sample':>11}"
             f"{'mem/core B':>11}{'link in':>9}{'link out':>9}{'density x/dY':>14}"]
    for row in kernel_table(plan):
        shape = f"{row['rows']} x {row['cols']} x {row['replicas']}" + ("*" if row["pinned"] else " ")
        at = f"({row['at'][0]},{row['at'][1]})"
        lines.append(f"  {row['name']:<{width}}{row['kind']:<10}{shape:>19}{at:>10}"
                     f"{row['cycles_per_sample']:>11.1f}{row['memory_per_core']:>11,}"
                     f"{row['link_in']:>9,}{row['link_out']:>9,}"
                     f"{row['x_density']:>7.2f}/{row['dy_density']:.2f}{_MARK[row['density_source']]}")
    kinds = "; ".join(f"{name}: {kind.origin}" for name, kind in KINDS.items())
    lines.append(f"  (* pinned by the user; density c: calibrated on the example batch, g: given, "
                 f"unmarked: assumed; kind {kinds})")
    return "\n".join(lines)


_MARK = {"calibrated": "c", "given": "g", "assumed": " "}


def _assumed(plan) -> str:
    """What the estimate assumed: harvesting, the operands' densities, the precision."""
    if not plan.harvest:
        return f"harvesting off, every value dense, {plan.precision}"
    covered = [k.name for k in plan.kernels if density_source(plan, k.name) != "assumed"]
    if covered:
        source = dict(plan.meta)[DENSITY_SOURCE]
        where = " on the example batch" if source == "calibrated" else ""
        density = (f"densities {source}{where} for {len(covered)} kernel(s), "
                   f"{plan.density:g} for the rest")
    else:
        custom = {d for _, d in plan.densities if tuple(d) != (plan.density, plan.density)}
        density = f"density {plan.density:g}" if not custom else "densities given per kernel"
    check = dict(plan.meta).get(DENSITY_CHECK)
    return f"harvesting on, {density}, {plan.precision}" + (f" ({check})" if check else "")
