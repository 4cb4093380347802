"""wsebench.plots: images have the fabric's shape, kernels are outlined where the plan put them."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from wsebench import plots


def test_heatmap_image_has_the_fabric_shape_and_values(tiny_run):
    report = tiny_run["report"]
    fig = plots.plot_heatmap(report)
    assert isinstance(fig, Figure)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (32, 32) == report.core_utilization.shape
    np.testing.assert_allclose(np.ma.getdata(image), report.core_utilization)
    # free cores are masked: drawn in the one free-core grey, never as a value of the scale
    np.testing.assert_array_equal(np.ma.getmaskarray(image), report.kernel_grid == 0)
    cmap = fig.axes[0].images[0].get_cmap()
    assert cmap.get_bad()[:3] == pytest.approx(to_rgb(plots.FREE_CORE))


def test_heatmap_has_axes_and_a_colorbar(tiny_run):
    fig = plots.plot_heatmap(tiny_run["report"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "fabric column" and ax.get_ylabel() == "fabric row"
    bar = ax.images[0].colorbar
    assert bar is not None and bar.ax.get_ylabel() == "busy cycles / step cycles"
    assert bar.ax.get_position().height == pytest.approx(ax.get_position().height)


def test_sram_heatmap_shows_bytes_per_core(tiny_run):
    report = tiny_run["report"]
    image = np.asarray(plots.plot_heatmap(report, what="sram").axes[0].images[0].get_array())
    np.testing.assert_array_equal(image, report.sram_per_core)
    assert image.max() <= report.summary["sram_bytes_per_core"]


def test_heatmap_rejects_unknown_quantity(tiny_run):
    with pytest.raises(ValueError, match="utilization, sram"):
        plots.plot_heatmap(tiny_run["report"], what="power")


def _named(ax) -> set[str]:
    """Kernel names in their regions, and those the legend names ("3: fc3")."""
    inside = {t.get_text() for t in ax.texts}
    legend = ax.get_legend()
    listed = {t.get_text().split(": ", 1)[1] for t in legend.get_texts()} if legend else set()
    return inside | listed


@pytest.mark.parametrize("plot", [plots.plot_heatmap, plots.plot_placement])
def test_every_kernel_is_outlined_and_named_readably(tiny_run, plot):
    report = tiny_run["report"]
    ax = plot(report).axes[0]
    assert _named(ax) >= set(report.kernel_names)
    assert all(t.get_fontsize() >= plots.MIN_FONT for t in ax.texts)      # no 6 px labels
    # each kernel the legend names carries its number on the map, inside or on a leader line
    legend = ax.get_legend()
    listed = [t.get_text().split(":")[0] for t in legend.get_texts()] if legend else []
    assert set(listed) <= {t.get_text() for t in ax.texts}
    assert len([p for p in ax.patches if not p.get_fill()]) == len(report.kernel_names)


def test_large_regions_hold_their_name_small_ones_their_number_and_a_legend_entry():
    boxes = [(1, ("big_kernel", 0, 0, 20, 20)), (2, ("small_kernel", 20, 0, 2, 2)),
             (3, ("tall_kernel", 0, 20, 30, 3)), (4, ("tiny", 22, 5, 1, 1))]
    placed = {box[0]: (text, size, rotated) for box, text, size, rotated in
              plots.label_plan(boxes, cell=6.0)}
    assert placed["big_kernel"][0] == "big_kernel" and not placed["big_kernel"][2]
    assert placed["tall_kernel"][0] == "tall_kernel" and placed["tall_kernel"][2]   # upright
    assert placed["small_kernel"][0] == "2"            # its number; the legend names it
    assert "tiny" not in placed                        # no room even for a number
    assert all(plots.MIN_FONT <= size <= plots.MAX_FONT for _, size, _ in placed.values())


def test_small_kernels_are_listed_in_a_legend(tiny_run):
    report = tiny_run["report"]
    ax = plots.plot_placement(report).axes[0]
    inside = {t.get_text() for t in ax.texts}
    legend = ax.get_legend()
    listed = [t.get_text() for t in legend.get_texts()] if legend else []
    missing = [n for n in report.kernel_names if n not in inside]
    assert "log_softmax" in missing                 # its 2 x 2 region cannot hold the name
    assert listed == [f"{report.kernel_names.index(n) + 1}: {n}" for n in missing]


def test_kernel_boxes_cover_exactly_the_allocated_cores(tiny_run):
    report = tiny_run["report"]
    covered = np.zeros(report.kernel_grid.shape, dtype=int)
    for _, row, col, height, width in plots.kernel_boxes(report):
        covered[row:row + height, col:col + width] += 1
    np.testing.assert_array_equal(covered, (report.kernel_grid > 0).astype(int))


def test_placement_shows_the_kernel_grid(tiny_run):
    report = tiny_run["report"]
    fig = plots.plot_placement(report)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), report.kernel_grid)
    free = fig.axes[0].images[0].get_cmap()(0)
    assert free[:3] == pytest.approx(to_rgb(plots.FREE_CORE))           # the same grey as heatmaps


def test_history_plot_draws_loss_and_throughput(tiny_run):
    history = tiny_run["history"]
    fig = plots.plot_history(history)
    loss_line = fig.axes[0].lines[0]
    assert list(loss_line.get_ydata()) == history.losses
    assert len(fig.axes) == 2                                   # the samples/s twin axis
    assert len(plots.plot_history(history, throughput=False).axes) == 1


def test_history_and_report_plot_methods_return_figures(tiny_run):
    assert isinstance(tiny_run["history"].plot(), Figure)
    assert isinstance(tiny_run["report"].plot(), Figure)


def test_plot_into_given_axes(tiny_run):
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.plot_heatmap(tiny_run["report"], ax=left) is fig
    assert plots.plot_placement(tiny_run["report"], ax=right) is fig
    assert left.images and right.images


def test_save_png_writes_a_png(tiny_run, tmp_path):
    path = plots.save_png(plots.plot_heatmap(tiny_run["report"]), tmp_path / "sub" / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _sparse_report(harvest: bool):
    import torch
    import torch.nn as nn

    import wsebench as wb
    model = wb.models.mlp(16, 128, 4, depth=3, activation="relu", seed=0)
    x, y = wb.data.blobs(32, 16, 4)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                         mapping={"fc2": wb.Mapping(8, 4)},
                         sparsity={"harvest": harvest, "drop": [
                             {"targets": ["act1"], "fraction": 0.8, "where": "both"}]})
    session.step(x, y)
    return session.report()


def test_balance_heatmap_shows_per_core_imbalance_under_sparsity():
    on, off = _sparse_report(True), _sparse_report(False)
    fc2 = on.kernel_names.index("fc2") + 1
    image = np.asarray(plots.plot_heatmap(on, what="balance").axes[0].images[0].get_array())
    np.testing.assert_allclose(image, plots.core_balance(on))
    region = image[on.kernel_grid == fc2]
    assert region.max() == 1.0 and region.min() < 1.0, "sparse tiles leave some cores waiting"
    util = on.core_utilization[on.kernel_grid == fc2]
    assert util.min() < util.max(), "the utilization heatmap shows the same imbalance"
    region = off.kernel_grid == fc2
    dense = plots.core_balance(off)[np.ix_(region.any(axis=1), region.any(axis=0))]
    # dense tiles: every core that adds partial sums in both chains is equally busy; the first
    # row (forward sums) and the first column (dX sums) have none to add (cost.Components)
    np.testing.assert_array_equal(dense[1:, 1:], 1.0)
    assert (dense[0] < 1.0).all() and (dense[:, 0] < 1.0).all()
    row = next(k for k in on.kernels if k["name"] == "fc2")
    assert row["imbalance"] > 1.0


def test_density_plot_has_a_bar_per_tensor_and_ticks_at_targets():
    report = _sparse_report(True)
    ax = plots.plot_densities(report).axes[0]
    assert len(ax.patches) == len(report.tensors)
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([t["density"] for t in report.tensors])
    targets = [t for t in report.tensors if t["target_density"] is not None]
    assert len(ax.lines) == len(targets) >= 2              # forward drop and gradient drop


def _many_small_kernels(n: int = 14):
    """A fabric of n one-row kernels with long names, like a transformer's."""
    from types import SimpleNamespace
    grid = np.zeros((32, 32), dtype=int)
    for i in range(n):
        grid[2 * i, 1:3] = i + 1
    return SimpleNamespace(kernel_grid=grid, core_utilization=(grid > 0) * 0.5,
                           kernel_names=[f"layers.{i}.attn.sdpa" for i in range(n)],
                           summary={"wafer": "w", "fabric": "32 x 32", "active_pes_pct": 3.0})


@pytest.mark.parametrize("plot", [plots.plot_heatmap, plots.plot_placement])
def test_a_long_kernel_legend_grows_the_figure_and_stays_inside_it(plot):
    import io
    fig = plot(_many_small_kernels())
    legend = fig.axes[0].get_legend()
    assert len(legend.get_texts()) == 14
    assert fig.get_figheight() > 5.0                       # grown from the default (6, 5)
    fig.savefig(io.BytesIO(), format="png")                # lays it out
    box = legend.get_window_extent()
    assert box.y0 >= 0 and box.y1 <= fig.bbox.height      # no entry cut off at the bottom
