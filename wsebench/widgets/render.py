"""PNG bytes for the workbench's live views (an ipywidgets.Image shows them, updated in place).

The heatmap is drawn straight from the per-core array with NumPy (one pixel block per core,
kernel regions outlined), so redrawing it every few steps costs milliseconds whatever the
fabric's size; the loss curve and the placement map (with kernel names) use matplotlib.
"""
from __future__ import annotations

import io
import math
from html import escape
from types import SimpleNamespace

import numpy as np

FREE_CORE = (224, 224, 224)     # cores no kernel holds
OUTLINE = (255, 255, 255)


def png(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


def figure_png(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _pool(values: np.ndarray, grid: np.ndarray, factor: int):
    """Shrink a big fabric by `factor`: mean utilization per block, the block's first kernel."""
    rows, cols = values.shape
    r, c = math.ceil(rows / factor), math.ceil(cols / factor)
    padded = np.zeros((r * factor, c * factor))
    padded[:rows, :cols] = values
    pooled = padded.reshape(r, factor, c, factor).mean(axis=(1, 3))
    return pooled, grid[::factor, ::factor]


def _outline(g: np.ndarray) -> np.ndarray:
    """One-pixel outlines of the regions (g > 0): a pixel whose upper or left neighbour is in
    another region, or whose lower or right neighbour is free or off the fabric."""
    p = np.pad(g, 1, constant_values=0)
    inner = p[1:-1, 1:-1]
    up, down, left, right = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    edge = (inner != up) | (inner != left) | (down == 0) | (right == 0)
    return edge & (inner > 0)


def heatmap_rgb(values: np.ndarray, grid: np.ndarray, size: int = 320,
                cmap: str = "viridis", vmax: float = 1.0) -> np.ndarray:
    """An RGB image of per-core `values` (0..vmax): about `size` pixels on the long side, free
    cores light grey, each kernel's region outlined."""
    import matplotlib
    values = np.nan_to_num(np.asarray(values, dtype=float))
    grid = np.asarray(grid)
    longest = max(values.shape)
    if longest > size:
        values, grid = _pool(values, grid, math.ceil(longest / size))
        longest = max(values.shape)
    scale = max(1, size // longest)
    colors = matplotlib.colormaps[cmap](np.clip(values / (vmax or 1.0), 0.0, 1.0))[..., :3]
    rgb = (colors * 255).round().astype(np.uint8)
    rgb[grid == 0] = FREE_CORE
    big = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    if scale >= 3:
        big[_outline(grid.repeat(scale, axis=0).repeat(scale, axis=1))] = OUTLINE
    return big


def heatmap_png(values, grid, size: int = 320) -> bytes:
    return png(heatmap_rgb(values, grid, size))


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


def placement_png(plan, inches: float = 4.2) -> bytes:
    from matplotlib.figure import Figure

    from ..plots import plot_placement
    fig = Figure(figsize=(inches, inches), layout="constrained")
    ax = fig.add_subplot()
    view = placement_view(plan)
    plot_placement(view, ax=ax)
    s = view.summary
    ax.set_title(f"{s['wafer']} {s['fabric']}: {s['active_pes_pct']:.0f}% of cores allocated",
                 fontsize=9)
    return figure_png(fig)


class LossPlot:
    """The live loss curve (and simulated samples/s, dashed, on a twin axis): one figure kept
    and redrawn with new data, which is several times cheaper than building a figure per frame."""

    def __init__(self, inches=(4.6, 3.2), dpi: int = 80):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        self.fig = Figure(figsize=inches, dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.15, right=0.82, bottom=0.14, top=0.9)
        self.ax = self.fig.add_subplot()
        self.twin = self.ax.twinx()
        (self.loss,) = self.ax.plot([], [], color="C0", label="loss")
        (self.rate,) = self.twin.plot([], [], color="C1", linestyle="--", linewidth=0.8)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("training loss")
        self.ax.grid(alpha=0.3)
        self.twin.set_ylabel("samples/s (simulated)", color="C1")
        self.twin.tick_params(axis="y", colors="C1")
        from matplotlib.ticker import EngFormatter
        self.twin.yaxis.set_major_formatter(EngFormatter(places=1))
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
    from ..html import _STYLE, fmt
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
            f"({t.rows} x {t.cols} cores)</h4><table>{head}{body}</table>"
            f"<p>Static estimate: {fmt(float(est['cycles']))} cycles/step, "
            f"{fmt(float(est['samples_per_s']))} samples/s. Train or Step to measure.</p></div>")


def dynamic_parts(result) -> list[str]:
    """Dynamic execution in the status line: ponder steps (ACT) and skipped padding."""
    parts = []
    ponder = getattr(result, "mean_ponder_steps", None)
    if ponder is not None:
        parts.append(f"mean ponder steps {ponder:.2f} ({result.speedup_vs_fixed_depth:.2f}x vs "
                     f"fixed depth)")
    padding = getattr(result, "padding_fraction", None)
    if padding:
        parts.append(f"padding {100 * padding:.0f}% not sent ({result.speedup_vs_padded:.2f}x vs "
                     f"padded)")
    return parts


def heatmap_caption(rep, steps: int) -> str:
    s = rep.summary
    return (f"<span style='font-size:0.85em'>busy / step cycles, 0 (dark) to 1 (yellow); grey: "
            f"free cores. {escape(str(s.get('wafer')))} {escape(str(s.get('fabric')))}, "
            f"{s.get('active_pes_pct', 0):.0f}% of cores allocated, step {steps}</span>")
