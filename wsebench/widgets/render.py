"""PNG bytes for the workbench's live views (an ipywidgets.Image shows them, updated in place).

Every picture is the report's own matplotlib rendering (`wsebench.plots`), so the widget's
heatmap and placement have the same colour scale (free cores grey), axes, colorbar and kernel
names as the figures `Report.plot()` and `wsebench report` draw. Until a view has something
true to show it gets a `placeholder_png` (no broken-image icon).
"""
from __future__ import annotations

import functools
import io
from html import escape
from types import SimpleNamespace

import numpy as np

from ..formatting import fmt
from ..plots import fit_legend, plot_heatmap, plot_placement

# heatmap and placement: room for the colorbar and a kernel legend; drawn at the size the
# workbench shows them (VIEW_PX wide), so an 8-point label is 10 pixels on the screen. The
# three views (LOSS_PX + 2 VIEW_PX and margins) fit one row of a 1,050 px notebook output.
DPI = 90
VIEW_INCHES = (3.7, 3.4)
LOSS_INCHES = (3.8, 3.0)
VIEW_PX = round(VIEW_INCHES[0] * DPI)
LOSS_PX = round(LOSS_INCHES[0] * DPI)


def png(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


def figure_png(fig, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _figure(inches=VIEW_INCHES):
    from matplotlib.figure import Figure
    fig = Figure(figsize=inches, layout="constrained")
    return fig, fig.add_subplot()


@functools.lru_cache(maxsize=32)
def placeholder_png(text: str, inches: tuple = VIEW_INCHES) -> bytes:
    """A light, dashed frame with `text` in it: what a view shows before it has data."""
    from matplotlib import patches
    fig, ax = _figure(inches)
    ax.set_axis_off()
    ax.add_patch(patches.FancyBboxPatch((0.03, 0.03), 0.94, 0.94, boxstyle="round,pad=0",
                                        transform=ax.transAxes, fill=True, fc="#f7f7f7",
                                        ec="#bbbbbb", linestyle="--"))
    ax.text(0.5, 0.5, text, ha="center", va="center", color="#666666", fontsize=10,
            transform=ax.transAxes, wrap=True)
    return figure_png(fig)


def heatmap_png(report, steps: int) -> bytes:
    """The per-core utilization heatmap of `report`, as `Report.plot()` draws it."""
    fig, ax = _figure()
    plot_heatmap(report, ax=ax)
    ax.set_title(f"utilization per core, step {fmt(steps)}", fontsize=9)
    return _map_png(fig, ax)


def _map_png(fig, ax) -> bytes:
    """A map's PNG, its figure taller by its kernel legend (VIEW_PX wide whatever the model)."""
    fit_legend(ax)
    return figure_png(fig)


def plan_grid(plan) -> tuple[np.ndarray, list[str]]:
    """(rows, cols) kernel index + 1 per core (0 where free) and the kernel names, from a Plan."""
    t = plan.target
    grid = np.zeros((t.rows, t.cols), dtype=np.int32)
    names = [k.name for k in plan.kernels]
    for i, name in enumerate(names):
        grid[plan.rect[name].cells()] = i + 1
    return grid, names


def placement_view(plan):
    """What `wsebench.plots.plot_placement` needs, from a Plan alone (no step has to run)."""
    grid, names = plan_grid(plan)
    t = plan.target
    return SimpleNamespace(kernel_grid=grid, kernel_names=names,
                           summary={"wafer": t.name, "fabric": f"{t.rows} x {t.cols}",
                                    "active_pes_pct": 100.0 * float((grid > 0).mean())})


def placement_png(plan) -> bytes:
    fig, ax = _figure()
    view = placement_view(plan)
    plot_placement(view, ax=ax)
    s = view.summary
    ax.set_title(f"{s['wafer']} {s['fabric']}: {fmt(s['active_pes_pct'], '%')} of cores "
                 "allocated", fontsize=9)
    return _map_png(fig, ax)


class LossPlot:
    """The live loss curve (and simulated samples/s, dashed, on a twin axis): one figure kept
    and redrawn with new data, which is several times cheaper than building a figure per frame."""

    def __init__(self, inches=LOSS_INCHES, dpi: int = DPI):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        # constrained: the twin axis' tick labels (samples/s with thousands separators, up to
        # "68,000,000") get the room they need instead of running off the right edge
        self.fig = Figure(figsize=inches, dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()
        self.twin = self.ax.twinx()
        (self.loss,) = self.ax.plot([], [], color="C0", label="loss")
        (self.rate,) = self.twin.plot([], [], color="C1", linestyle="--", linewidth=0.8)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("training loss")
        self.ax.grid(alpha=0.3)
        self.twin.set_ylabel("samples/s (simulated)", color="C1")
        self.twin.tick_params(axis="y", colors="C1")
        from matplotlib.ticker import FuncFormatter
        self.twin.yaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt(value)))
        self.ax.set_title("training on the wafer")

    def png(self, history) -> bytes:
        steps = [r.step for r in history]
        self.loss.set_data(steps, [r.loss for r in history])
        self.rate.set_data(steps, [r.samples_per_s for r in history])
        for ax in (self.ax, self.twin):
            ax.relim()
            ax.autoscale_view()
        self.fig.canvas.draw()
        rgba = np.asarray(self.fig.canvas.buffer_rgba())
        return png(rgba[..., :3])


def loss_png(history) -> bytes:
    return LossPlot().png(history)


def plan_html(plan) -> str:
    """The compile report before any step: each kernel's mapping, place and memory, and the
    compiler's static estimate (the measurement replaces it once a step has run)."""
    from ..html import _STYLE, scroll
    memory = plan.memory_per_core()
    est = plan.estimate()
    head = ("<tr><th class='k'>kernel</th><th class='k'>kind</th><th>rows</th><th>cols</th>"
            "<th>replicas</th><th>pinned</th><th>at (row, col)</th><th>SRAM/core (B)</th>"
            "<th>estimated cycles/sample</th></tr>")
    body = ""
    for k in plan.kernels:
        m, r = plan.mapping[k.name], plan.rect[k.name]
        body += (f"<tr><td class='k'>{escape(k.name)}</td><td class='k'>{escape(k.kind)}</td>"
                 f"<td>{m.rows}</td><td>{m.cols}</td><td>{m.replicas}</td>"
                 f"<td>{fmt(k.name in plan.pinned)}</td><td>({r.row}, {r.col})</td>"
                 f"<td>{fmt(memory[k.name])}</td>"
                 f"<td>{fmt(float(est['per_sample_cycles'][k.name]))}</td></tr>")
    t = plan.target
    return (f"{_STYLE}<div class='wsebench-report'><h4>Compiled for {escape(t.name)} "
            f"({t.rows} x {t.cols} cores)</h4>{scroll(f'<table>{head}{body}</table>')}"
            f"<p>Static estimate: {fmt(float(est['cycles']))} cycles/step, "
            f"{fmt(float(est['samples_per_s']))} samples/s. Train or Step to measure.</p></div>")


def heatmap_caption(rep) -> str:
    s = rep.summary
    return (f"<span style='font-size:0.85em'>busy / step cycles of each core (colorbar); grey: "
            f"free cores. {escape(str(s.get('wafer')))} {escape(str(s.get('fabric')))}, "
            f"{fmt(s.get('active_pes_pct', 0), '%')} of cores allocated</span>")
