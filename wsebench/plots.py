"""Matplotlib views of a run: per-core heatmaps, the kernel placement and the loss curve.

Figures are made with `matplotlib.figure.Figure`, not pyplot, so library code never opens a
window or leaves figures registered with pyplot (in a notebook that would draw each one twice:
once from pyplot's end-of-cell flush and once as the returned value). Every function returns the
Figure; pass `ax` to draw into an existing one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") \
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
        and sys.platform.startswith("linux"):
    matplotlib.use("Agg")  # headless: no display to open, and no GUI toolkit to probe for one

from matplotlib import patches  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_HEATMAPS = {
    "utilization": ("core_utilization", "busy cycles / step cycles", "viridis"),
    "sram": ("sram_per_core", "SRAM bytes resident per core", "magma"),
    "balance": (None, "busy cycles / busiest core of the kernel", "cividis"),
}


def _enable_notebook_display() -> None:
    """Have IPython show a returned Figure as a PNG even if pyplot was never imported."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]

    def to_png(fig):
        from io import BytesIO
        buf = BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()

    png.for_type(Figure, to_png)


_enable_notebook_display()


def _axes(ax, figsize=(6.0, 5.0)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def kernel_boxes(report) -> list[tuple[str, int, int, int, int]]:
    """(name, row, col, height, width) of each kernel's region, from `report.kernel_grid`."""
    boxes = []
    for index, name in enumerate(report.kernel_names, start=1):
        rows, cols = np.nonzero(report.kernel_grid == index)
        if rows.size:
            boxes.append((name, int(rows.min()), int(cols.min()),
                          int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)))
    return boxes


def _label(ax, box, color, backdrop: bool) -> None:
    """The kernel's name at its region's centre; upright along tall, narrow regions."""
    name, row, col, height, width = box
    tall = height >= 3 * width
    size = max(5, min(9, 3 + 2 * (min(height, 2 * width) if tall else min(height, width))))
    ax.text(col - 0.5 + width / 2, row - 0.5 + height / 2, name, ha="center", va="center",
            fontsize=size, color=color, clip_on=True, rotation=90 if tall else 0,
            bbox=dict(boxstyle="round,pad=0.15", fc="black", ec="none", alpha=0.45)
            if backdrop else None)


def _outline_kernels(ax, report, color="white", backdrop=True) -> None:
    for box in kernel_boxes(report):
        _, row, col, height, width = box
        # imshow puts cell (r, c) at [c-0.5, c+0.5] x [r-0.5, r+0.5]
        ax.add_patch(patches.Rectangle((col - 0.5, row - 0.5), width, height, fill=False,
                                       edgecolor=color, linewidth=1.2))
        _label(ax, box, color, backdrop)


def core_balance(report) -> np.ndarray:
    """Each core's busy cycles over those of the busiest core of its kernel (0 where free).
    A kernel is as fast as its busiest core, so under sparsity, where each core's work follows
    the non-zeros of its own tile, values below 1 are cores left waiting: the imbalance."""
    util = np.asarray(report.core_utilization, dtype=float)
    out = np.zeros_like(util)
    for index in np.unique(report.kernel_grid[report.kernel_grid > 0]):
        cells = report.kernel_grid == index
        top = util[cells].max()
        out[cells] = util[cells] / top if top > 0 else 0.0
    return out


def plot_heatmap(report, ax=None, what: str = "utilization"):
    """Per-core image of `what`, shaped (rows, cols) like the fabric: "utilization" (busy /
    step cycles), "sram" (bytes resident) or "balance" (`core_balance`: busy / busiest core of
    the kernel, which shows the imbalance sparsity causes); free cores show as 0 and each
    kernel's region is outlined and named."""
    if what not in _HEATMAPS:
        raise ValueError(f"what must be one of {', '.join(_HEATMAPS)}, got {what!r}")
    attr, label, cmap = _HEATMAPS[what]
    values = core_balance(report) if attr is None else np.asarray(getattr(report, attr), dtype=float)
    vmax = float(report.summary.get("sram_bytes_per_core") or values.max() or 1.0) \
        if what == "sram" else 1.0
    fig, ax = _axes(ax)
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, label=label, shrink=0.85)
    _outline_kernels(ax, report)
    s = report.summary
    ax.set_title(f"{what} per core: {s.get('wafer', '')} {s.get('fabric', '')}")
    ax.set_xlabel("fabric column")
    ax.set_ylabel("fabric row")
    return fig


def plot_densities(report, ax=None):
    """Target vs actual density per followed tensor of the last step (drop outputs, ReLU
    outputs, masked weights): a bar per tensor, a black tick at its target where it has one."""
    rows = list(report.tensors)
    fig, ax = _axes(ax, figsize=(7.0, max(2.5, 0.32 * len(rows) + 1.2)))
    if not rows:
        ax.text(0.5, 0.5, "no drop, ReLU or masked-weight tensors in this run", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    colors = {"drop": "C0", "drop gradient": "C1", "relu": "C2", "weight": "C3"}
    y = np.arange(len(rows))
    ax.barh(y, [r["density"] or 0.0 for r in rows], color=[colors.get(r["kind"], "C7") for r in rows])
    for i, r in enumerate(rows):
        if r["target_density"] is not None:
            ax.plot([r["target_density"]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_yticks(y, [f"{r['kind']}: {r['module'] or r['kernel']} ({r['tensor']})" for r in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("density (non-zero fraction); black tick: target")
    ax.set_title("sparsity per tensor: actual vs target")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_placement(report, ax=None):
    """Which kernel holds each core (free cores light grey), with the kernels' names."""
    n = len(report.kernel_names)
    colors = ["#eeeeee"] + [matplotlib.colormaps["tab20"](i % 20) for i in range(n)]
    fig, ax = _axes(ax)
    ax.imshow(report.kernel_grid, cmap=ListedColormap(colors), vmin=-0.5, vmax=n + 0.5,
              interpolation="nearest")
    _outline_kernels(ax, report, color="black", backdrop=False)
    s = report.summary
    ax.set_title(f"placement: {s.get('wafer', '')} {s.get('fabric', '')}, "
                 f"{s.get('active_pes_pct', 0):.0f}% of cores allocated")
    ax.set_xlabel("fabric column")
    ax.set_ylabel("fabric row")
    return fig


def plot_history(history, ax=None, throughput: bool = True, label: str | None = None):
    """Loss per step; with `throughput`, simulated samples/s on a twin axis (dashed)."""
    fig, ax = _axes(ax, figsize=(7.0, 4.0))
    steps = [r.step for r in history]
    ax.plot(steps, [r.loss for r in history], color="C0", label=label or "loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if throughput and len(history):
        twin = ax.twinx()
        twin.plot(steps, [r.samples_per_s for r in history], color="C1", linestyle="--",
                  linewidth=0.8, label="samples/s (simulated)")
        twin.set_ylabel("samples/s on the wafer (simulated)", color="C1")
        twin.tick_params(axis="y", colors="C1")
    ax.set_title("training on the wafer")
    return fig


def plot_histories(histories: dict, ax=None):
    """Loss curves of several runs (label -> History) on one axis."""
    fig, ax = _axes(ax, figsize=(7.0, 4.0))
    for i, (label, history) in enumerate(histories.items()):
        ax.plot([r.step for r in history], [r.loss for r in history], color=f"C{i}",
                linestyle="-" if i == 0 else "--", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    return fig


def save_png(fig, path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG (creating the folder); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def plot_floorplan(solution, ax=None, label: bool = True):
    """An ISPD contest floorplan (`compiler.ispd.solver.Solution`): every kernel's rectangle on
    the fabric, coloured by its time per sample; the slowest kernel sets the throughput."""
    from matplotlib import cm
    from matplotlib.colors import Normalize
    g = solution.graph
    fig, ax = _axes(ax, figsize=(7.0, 6.2))
    times = {n: o.time for n, o in solution.options.items()}
    norm = Normalize(vmin=min(times.values()), vmax=max(times.values()))
    cmap = matplotlib.colormaps["viridis"]
    for name, r in solution.rects.items():
        ax.add_patch(patches.Rectangle((r.col, r.row), r.width, r.height, facecolor=cmap(norm(times[name])),
                                       edgecolor="black", linewidth=0.4))
        if label and min(r.width, r.height) >= 0.04 * max(g.width, g.height):
            ax.text(r.col + r.width / 2, r.row + r.height / 2, name, ha="center", va="center",
                    fontsize=6, color="white", rotation=90 if r.height > 2 * r.width else 0)
    ax.set_xlim(0, g.width)
    ax.set_ylim(g.height, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (tiles)")
    ax.set_ylabel("y (tiles)")
    ax.set_title(f"{g.test}: max time {solution.max_time:g} = {solution.ratio:.3f} x T*, "
                 f"{100 * solution.fabric_used:.1f}% of the fabric", fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="kernel time (cycles/sample)")
    return fig
