"""Pictures of the wafer for the tour (notebook 00_wafer_101), drawn from the real `Target` and
a real `Plan`, so every number on them is the one the simulator uses.

- `draw_core(target)`: one core: its router with five ports (north, south, east, west and the
  ramp to its own processor), the processor's SIMD lanes and its SRAM (Hot Chips 2019: each core
  has its own SRAM and a router that moves one 32-bit wavelet per link per cycle each way).
- `draw_mesh(target)`: a patch of the 2-D mesh: every core linked to its four neighbours.
- `draw_kernel(plan, name)`: a kernel's rectangle of cores on the plan's wafer, with the loop
  dimension each axis of the rectangle unrolls.
- `draw_wavelet(plan, route)`: a route between two kernels and where one wavelet is after
  every few cycles on it (one hop per `Target.hop_cycles`).
Each returns its axes; `.figure` is the figure to show.
"""
from __future__ import annotations

from matplotlib import patches
from matplotlib.figure import Figure

PORTS = {"N": (0, 1), "S": (0, -1), "E": (1, 0), "W": (-1, 0)}


def _axes(ax, size=(6, 6)):
    """`ax`, or the axes of a new figure made without pyplot (a notebook shows the figure a
    cell returns, once, whatever the backend)."""
    if ax is None:
        ax = Figure(figsize=size, layout="constrained").subplots()
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _box(ax, x, y, w, h, text, color, size=10):
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color,
                                        ec="black", lw=1.2))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def draw_core(target, ax=None):
    """One core of `target`: router (five ports), processor (SIMD lanes) and SRAM."""
    ax = _axes(ax)
    cx, cy = 5.0, 6.4                                   # the router's centre
    _box(ax, cx - 1.4, cy - 1.4, 2.8, 2.8, "router", "#ffe9a8", 12)
    for name, (dx, dy) in PORTS.items():
        x0, y0 = cx + 1.45 * dx, cy + 1.45 * dy
        length = 1.2 if name == "S" else 1.9
        ax.annotate("", xy=(x0 + length * dx, y0 + length * dy), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="<->", lw=2.5, color="#3366cc"))
        ax.text(x0 + (length + 0.4) * dx + 0.35 * abs(dy), y0 + (length + 0.35) * dy, name,
                fontsize=11, ha="center", va="center", fontweight="bold", color="#3366cc")
    ax.annotate("", xy=(7.6, 2.0), xytext=(cx + 1.0, cy - 1.45),
                arrowprops=dict(arrowstyle="<->", lw=2.5, color="#cc6633"))
    ax.text(7.3, 3.8, "ramp", color="#cc6633", fontsize=11, fontweight="bold")
    _box(ax, 6.0, 0.1, 3.9, 1.8, f"processor\n{target.simd} FP{target.value_bits} FMAC lanes",
         "#d9ead3")
    _box(ax, 0.1, 0.1, 3.5, 1.8, f"SRAM\n{target.sram_bytes // 1024} KB", "#cfe2f3")
    ax.annotate("", xy=(3.65, 1.0), xytext=(5.95, 1.0),
                arrowprops=dict(arrowstyle="<->", lw=2, color="gray"))
    ax.text(4.8, 1.25, f"{target.sram_read_bytes} B read\n{target.sram_write_bytes} B write\n"
            "per cycle", ha="center", va="bottom", fontsize=8)
    ax.text(cx, 2.6, "(S: to the core below)", ha="center", fontsize=8, color="#3366cc")
    ax.set_xlim(-0.3, 10.3)
    ax.set_ylim(-0.3, 10.6)
    ax.set_title(f"one core of {target.name}: each link moves one {target.link_bits}-bit wavelet "
                 f"per cycle each way\n({target.dense_values_per_wavelet} FP{target.value_bits} "
                 f"values, or one value + its index), at {target.clock_hz / 1e9:g} GHz", fontsize=10)
    return ax


def _bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def draw_mesh(target, rows: int = 4, cols: int = 6, ax=None):
    """A `rows` x `cols` patch of the mesh (the wafer has `target.rows` x `target.cols`)."""
    ax = _axes(ax, (7, 5))
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                ax.plot([c, c + 1], [r, r], color="#3366cc", lw=2, zorder=1)
            if r + 1 < rows:
                ax.plot([c, c], [r, r + 1], color="#3366cc", lw=2, zorder=1)
            ax.add_patch(patches.Rectangle((c - 0.3, r - 0.3), 0.6, 0.6, fc="#d9ead3", ec="black",
                                           zorder=2))
    ax.set_xlim(-0.8, cols - 0.2)
    ax.set_ylim(-0.8, rows - 0.2)
    ax.set_title(f"a {rows} x {cols} patch of the mesh: every core talks only to its four "
                 f"neighbours\n{target.name} has {target.rows} x {target.cols} = {target.cores:,} "
                 f"cores, {_bytes(target.cores * target.sram_bytes)} of SRAM in all",
                 fontsize=10)
    return ax


def draw_kernel(plan, name: str, ax=None):
    """`name`'s rectangle of cores on `plan`'s wafer, the other kernels faint, with the loop
    dimensions its rows and columns of cores unroll."""
    ax = _axes(ax, (7, 7))
    for rect in plan.rect.values():
        own = rect.name == name
        ax.add_patch(patches.Rectangle((rect.col - 0.5, rect.row - 0.5), rect.width, rect.height,
                                       fc="#f4a261" if own else "#eeeeee", ec="black",
                                       lw=2 if own else 0.5))
        if not own and rect.width * rect.height >= 12:
            ax.text(rect.col + rect.width / 2 - 0.5, rect.row + rect.height / 2 - 0.5, rect.name,
                    ha="center", va="center", fontsize=7, color="dimgray")
    rect, kernel, mapping = plan.rect[name], plan.kernel[name], plan.mapping[name]
    nest = kernel.nest
    ax.text(rect.col + rect.width / 2 - 0.5, rect.row - 1.2,
            f"{mapping.cols} columns of cores split {nest.col_dim!r} ({nest.extent(nest.col_dim)})",
            ha="center", fontsize=9)
    ax.text(rect.col - 1.2, rect.row + rect.height / 2 - 0.5,
            f"{mapping.rows} rows split {nest.row_dim!r} ({nest.extent(nest.row_dim)})",
            ha="right", va="center", rotation=90, fontsize=9)
    ax.set_xlim(-0.5 - 2, plan.target.cols + 0.5)
    ax.set_ylim(plan.target.rows + 0.5, -0.5 - 2)
    ax.set_title(f"kernel {name!r} ({kernel.kind}): {mapping.rows} x {mapping.cols} cores"
                 f"{f' x {mapping.replicas} replicas' if mapping.replicas > 1 else ''} of "
                 f"{plan.target.name}'s {plan.target.rows} x {plan.target.cols}", fontsize=10)
    return ax


def route_cells(route) -> list[tuple[int, int]]:
    """The (row, col) cores a route's centre line visits, in order, one hop apart."""
    cells = [tuple(route.path[0])]
    for (r0, c0), (r1, c1) in zip(route.path, route.path[1:]):
        while cells[-1] != (r1, c1):
            r, c = cells[-1]
            cells.append((r + (r1 > r) - (r1 < r), c + (c1 > c) - (c1 < c)) if r != r1
                         else (r, c + (c1 > c) - (c1 < c)))
    return cells


def draw_wavelet(plan, route=None, frames: int = 5, ax=None):
    """A wavelet on `route` (default: the plan's longest sample route): the route's centre
    line, and where the wavelet is after every few cycles, one hop per `hop_cycles`."""
    ax = draw_kernel_background(plan, ax)
    route = route or max(plan.sample_routes, key=lambda rt: rt.hops)
    cells = route_cells(route)
    ax.plot([c for _, c in cells], [r for r, _ in cells], color="#3366cc", lw=2)
    every = max(1, (len(cells) - 1) // max(frames - 1, 1))
    for hop in range(0, len(cells), every):
        r, c = cells[hop]
        ax.plot(c, r, "o", color="#cc3333", ms=9)
        ax.text(c + 0.4, r - 0.4, f"{hop * plan.target.hop_cycles}", fontsize=8, color="#cc3333")
    ax.set_title(f"a wavelet from {route.edge.src!r} to {route.edge.dst!r}: {route.hops} hops; "
                 "red: where it is after that many cycles", fontsize=10)
    return ax


def draw_kernel_background(plan, ax=None):
    """Every kernel's rectangle, faint, with its name: the map routes are drawn over."""
    ax = _axes(ax, (7, 7))
    for rect in plan.rect.values():
        ax.add_patch(patches.Rectangle((rect.col - 0.5, rect.row - 0.5), rect.width, rect.height,
                                       fc="#eeeeee", ec="gray", lw=0.5))
        if rect.width * rect.height >= 12:
            ax.text(rect.col + rect.width / 2 - 0.5, rect.row + rect.height / 2 - 0.5, rect.name,
                    ha="center", va="center", fontsize=7, color="dimgray")
    ax.set_xlim(-0.5, plan.target.cols - 0.5)
    ax.set_ylim(plan.target.rows - 0.5, -0.5)
    return ax
