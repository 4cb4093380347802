"""wsebench.plots: images have the fabric's shape, kernels are outlined where the plan put them."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from wsebench import plots


def test_heatmap_image_has_the_fabric_shape_and_values(tiny_run):
    report = tiny_run["report"]
    fig = plots.plot_heatmap(report)
    assert isinstance(fig, Figure)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (32, 32) == report.core_utilization.shape
    np.testing.assert_allclose(np.asarray(image), report.core_utilization)
    assert np.all(np.asarray(image)[report.kernel_grid == 0] == 0)   # free cores show as 0


def test_sram_heatmap_shows_bytes_per_core(tiny_run):
    report = tiny_run["report"]
    image = np.asarray(plots.plot_heatmap(report, what="sram").axes[0].images[0].get_array())
    np.testing.assert_array_equal(image, report.sram_per_core)
    assert image.max() <= report.summary["sram_bytes_per_core"]


def test_heatmap_rejects_unknown_quantity(tiny_run):
    with pytest.raises(ValueError, match="utilization, sram"):
        plots.plot_heatmap(tiny_run["report"], what="power")


def test_every_kernel_is_outlined_and_named(tiny_run):
    report = tiny_run["report"]
    ax = plots.plot_heatmap(report).axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert labels == set(report.kernel_names)
    assert len(ax.patches) == len(report.kernel_names)


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
    assert {t.get_text() for t in fig.axes[0].texts} == set(report.kernel_names)


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
    dense = plots.core_balance(off)[off.kernel_grid == fc2]
    np.testing.assert_array_equal(dense, 1.0)            # dense tiles: every core equally busy
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
