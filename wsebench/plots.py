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

from .formatting import fmt  # noqa: E402

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


# One colour scale in every rendering (the report's figures, the workbench's views): free
# cores, which no kernel holds, are this grey in every heatmap and in the placement map, so
# they never read as a value of the scale (viridis' 0 is dark purple: an idle core of a kernel).
FREE_CORE = "#d9d9d9"
MIN_FONT = 8.0              # points: the smallest kernel label drawn (6 px labels are unreadable)
MAX_FONT = 10.0
_BELOW_AXIS = 34            # points from the axes' bottom to below its tick labels and x label
_CHAR = 0.62                # a character's width in a sans-serif font, in ems (DejaVu Sans ~0.6)


def core_cmap(name: str):
    """Colormap `name` with masked values (free cores) drawn in `FREE_CORE`."""
    return matplotlib.colormaps[name].with_extremes(bad=FREE_CORE)


def free_masked(values, kernel_grid) -> np.ma.MaskedArray:
    """`values` with the free cores (kernel_grid == 0) masked: they draw as `FREE_CORE`."""
    return np.ma.masked_array(np.asarray(values, dtype=float), mask=np.asarray(kernel_grid) == 0)


def kernel_boxes(report) -> list[tuple[str, int, int, int, int]]:
    """(name, row, col, height, width) of each kernel's region, from `report.kernel_grid`."""
    boxes = []
    for index, name in enumerate(report.kernel_names, start=1):
        rows, cols = np.nonzero(report.kernel_grid == index)
        if rows.size:
            boxes.append((name, int(rows.min()), int(cols.min()),
                          int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)))
    return boxes


def _cell_points(ax, shape) -> float:
    """About how many points one core takes on `ax` (from its position before layout, which
    the layout shrinks by the labels' room: the 0.85 covers that)."""
    width, height = ax.figure.get_size_inches() * ax.get_position().size * 72 * 0.85
    rows, cols = shape
    return min(width / cols, height / rows)


def _fitting_font(text: str, width: float, height: float) -> "float | None":
    """The largest font in [MIN_FONT, MAX_FONT] (points) at which `text` fits a width x height
    point box on one line, else None."""
    size = min(MAX_FONT, (width - 2) / (_CHAR * max(len(text), 1)), height / 1.3)
    return size if size >= MIN_FONT else None


def label_plan(boxes, cell: float) -> list[tuple[tuple, str, float, bool]]:
    """Where each kernel's name goes: (box, text, fontsize, rotated) for a label drawn in its
    region. A region that holds its name (upright along a tall one) shows it; a smaller one
    shows its number (its index in the report's kernels) if that fits, and the legend names it."""
    out = []
    for number, box in boxes:
        name, _, _, height, width = box
        w, h = width * cell, height * cell
        for text in (name, str(number)):
            for rotated, (a, b) in ((False, (w, h)), (True, (h, w))):
                size = _fitting_font(text, a, b)
                if size is not None:
                    out.append((box, text, size, rotated))
                    break
            else:
                continue
            break
    return out


def _name_kernels(ax, report, color, backdrop: bool, colors=None) -> None:
    """Kernel names in their regions where they fit; a legend "n: name" for the others, with
    the number n in the region or, where even that does not fit, beside it on a leader line
    (`colors`: each kernel's face colour in the legend, else an outline)."""
    numbered = [(report.kernel_names.index(b[0]) + 1, b) for b in kernel_boxes(report)]
    placed = label_plan(numbered, _cell_points(ax, np.shape(report.kernel_grid)))
    inside, labelled = set(), set()
    for (name, row, col, height, width), text, size, rotated in placed:
        ax.text(col - 0.5 + width / 2, row - 0.5 + height / 2, text, ha="center", va="center",
                fontsize=size, color=color, clip_on=True, rotation=90 if rotated else 0,
                bbox=dict(boxstyle="round,pad=0.15", fc="black", ec="none", alpha=0.45)
                if backdrop else None)
        labelled.add(name)
        if text == name:
            inside.add(name)
    for n, box in numbered:
        if box[0] not in labelled:
            _number_beside(ax, n, box, np.shape(report.kernel_grid))
    handles = [patches.Patch(facecolor=colors[n - 1] if colors else "none",
                             edgecolor="black", label=f"{n}: {box[0]}")
               for n, box in numbered if box[0] not in inside]
    if handles:
        _kernel_legend(ax, handles)


def _number_beside(ax, number: int, box, shape) -> None:
    """`number` next to a region too small to hold it, on a leader line, towards the middle."""
    _, row, col, height, width = box
    y, x = row - 0.5 + height / 2, col - 0.5 + width / 2
    away = (10 if x < shape[1] / 2 else -14, -12 if y < shape[0] / 2 else 10)
    ax.annotate(str(number), (x, y), xytext=away, textcoords="offset points", fontsize=MIN_FONT,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                arrowprops=dict(arrowstyle="-", color="black", linewidth=0.6))


def _kernel_legend(ax, handles) -> None:
    """The legend of the kernels not named in their regions, below the axes' x label."""
    from matplotlib.transforms import ScaledTranslation
    below = ax.transAxes + ScaledTranslation(0, -_BELOW_AXIS / 72, ax.figure.dpi_scale_trans)
    ax.legend(handles=handles, fontsize=MIN_FONT, loc="upper left", title="kernels",
              title_fontsize=MIN_FONT, bbox_to_anchor=(0.0, 0.0), bbox_transform=below,
              ncol=_legend_columns(ax, [h.get_label() for h in handles]), frameon=False,
              handlelength=1.0, alignment="left", columnspacing=1.0)
    ax.set_anchor("N")          # the map at the top of its space, the legend right below it


def _legend_columns(ax, labels) -> int:
    """As many columns as fit the axes' width (a column: its longest label and the patch)."""
    width = ax.figure.get_size_inches()[0] * ax.get_position().width * 72
    column = (max(map(len, labels)) * _CHAR + 3) * MIN_FONT
    return int(max(1, min(len(labels), 4, width // column)))


def fit_legend(ax) -> None:
    """For a figure made for one map: the kernel legend gets a band of its own height under
    the map (the figure grows by it), outside the layout, so many small kernels (a
    transformer's) neither run off the bottom nor squeeze the map away."""
    legend, fig = ax.get_legend(), ax.figure
    engine = fig.get_layout_engine()
    if legend is None or not hasattr(engine, "set"):
        return
    from matplotlib.backends.backend_agg import RendererAgg
    # its size is in points whatever the figure's: measured with a renderer of its own
    renderer = RendererAgg(*(fig.get_size_inches() * fig.dpi), fig.dpi)
    band = legend.get_window_extent(renderer).height / fig.dpi + 0.1
    height = fig.get_figheight() + band
    fig.set_figheight(height)
    legend.set_in_layout(False)
    engine.set(rect=(0, band / height, 1, 1 - band / height))
    legend.set_bbox_to_anchor((0.02, band / height), transform=fig.transFigure)


def _outline_kernels(ax, report, color="white", backdrop=True, colors=None) -> None:
    for _, row, col, height, width in kernel_boxes(report):
        # imshow puts cell (r, c) at [c-0.5, c+0.5] x [r-0.5, r+0.5]
        ax.add_patch(patches.Rectangle((col - 0.5, row - 0.5), width, height, fill=False,
                                       edgecolor=color, linewidth=1.2))
    _name_kernels(ax, report, color, backdrop, colors)


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
    the kernel, which shows the imbalance sparsity causes); free cores are `FREE_CORE` grey
    (masked) and each kernel's region is outlined and named."""
    if what not in _HEATMAPS:
        raise ValueError(f"what must be one of {', '.join(_HEATMAPS)}, got {what!r}")
    attr, label, cmap = _HEATMAPS[what]
    values = core_balance(report) if attr is None else np.asarray(getattr(report, attr), dtype=float)
    vmax = float(report.summary.get("sram_bytes_per_core") or values.max() or 1.0) \
        if what == "sram" else 1.0
    own = ax is None
    fig, ax = _axes(ax)
    image = ax.imshow(free_masked(values, report.kernel_grid), cmap=core_cmap(cmap), vmin=0.0,
                      vmax=vmax, interpolation="nearest")
    # an inset colorbar is exactly as tall as the map, whatever the kernel legend below adds
    fig.colorbar(image, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0]), label=label)
    _outline_kernels(ax, report)
    if own:
        fit_legend(ax)
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
    """Which kernel holds each core (free cores `FREE_CORE` grey), with the kernels' names."""
    n = len(report.kernel_names)
    colors = [matplotlib.colormaps["tab20"](i % 20) for i in range(n)]
    own = ax is None
    fig, ax = _axes(ax)
    ax.imshow(report.kernel_grid, cmap=ListedColormap([FREE_CORE] + colors), vmin=-0.5,
              vmax=n + 0.5, interpolation="nearest")
    _outline_kernels(ax, report, color="black", backdrop=False, colors=colors)
    if own:
        fit_legend(ax)
    s = report.summary
    ax.set_title(f"placement: {s.get('wafer', '')} {s.get('fabric', '')}, "
                 f"{fmt(s.get('active_pes_pct', 0), '%')} of cores allocated")
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
