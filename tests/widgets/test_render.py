"""wsebench.widgets.render: the workbench's PNG views are the report's own figures."""
from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
from matplotlib.colors import to_rgb

from wsebench import plots
from wsebench.widgets import render


def pixels(data: bytes) -> np.ndarray:
    from PIL import Image
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def fake_report(values, grid, names):
    return SimpleNamespace(core_utilization=values, kernel_grid=grid, kernel_names=names,
                           summary={"wafer": "test", "fabric": "x", "active_pes_pct": 50.0})


def two_kernels(shape=(16, 24)):
    values, grid = np.zeros(shape), np.zeros(shape, dtype=int)
    grid[:8, :12], values[:8, :12] = 1, 0.2
    grid[8:, 12:], values[8:, 12:] = 2, 0.9
    return fake_report(values, grid, ["first", "second"])


def colours(image: np.ndarray) -> set:
    return {tuple(int(v) for v in p) for p in image.reshape(-1, 3)}


def test_heatmap_shows_free_cores_grey_and_utilization_on_the_colour_scale():
    image = pixels(render.heatmap_png(two_kernels(), steps=3))
    assert image.shape[1] == render.VIEW_PX          # drawn at the size the workbench shows it
    cmap = plots.core_cmap("viridis")

    def share(rgb) -> float:        # of the pixels within 3 levels of `rgb` (resampling)
        near = np.abs(image.astype(int) - np.round(255 * np.asarray(rgb[:3]))).max(-1) <= 3
        return near.mean()
    assert share(to_rgb(plots.FREE_CORE)) > 0.08          # half the cores are free: grey
    assert share(cmap(0.2)) > 0.03 and share(cmap(0.9)) > 0.03
    # viridis' 0 (dark purple) shows only in the colorbar: no free core takes it
    assert share(cmap(0.0)) < 0.01


def test_heatmap_of_a_big_fabric_keeps_the_view_size():
    values = np.random.default_rng(0).random((757, 996))
    image = pixels(render.heatmap_png(fake_report(values, np.ones((757, 996), int), ["all"]), 1))
    assert image.shape[1] == render.VIEW_PX and image.shape[0] < 1.2 * render.VIEW_PX


def test_placeholder_is_a_visible_picture_not_an_empty_image():
    image = pixels(render.placeholder_png("no plan yet:\npress Compile"))
    assert image.shape[1] == render.VIEW_PX and len(colours(image)) > 4    # frame and text
    assert render.placeholder_png("a") != render.placeholder_png("b")


def test_heatmap_caption_formats_the_share_with_one_decimal():
    report = two_kernels()
    report.summary["active_pes_pct"] = 26.171875
    caption = render.heatmap_caption(report)
    assert "26.2% of cores allocated" in caption and "grey: free cores" in caption


def scale_span(image: np.ndarray, cmap) -> int:
    """The most entries of `cmap`'s 256 that one pixel column of the image's right half shows:
    a colorbar spans most of the scale, a heatmap column has one value per core."""
    table = np.round(255 * cmap(np.arange(256) / 255)[:, :3])
    right = image[:, image.shape[1] // 2:].astype(float)
    dist = ((right[:, :, None, :] - table[None, None]) ** 2).sum(-1)      # rows, cols, 256
    index = np.where(dist.min(-1) < 3 * 12 ** 2, dist.argmin(-1), -1)
    return max(len(set(index[:, x]) - {-1}) for x in range(index.shape[1]))


def test_heatmap_has_a_colorbar():
    image = pixels(render.heatmap_png(two_kernels(), steps=3))
    assert scale_span(image, plots.core_cmap("viridis")) >= 100
    placement = pixels(render.placeholder_png("no step yet"))
    assert scale_span(placement, plots.core_cmap("viridis")) < 5       # the check can fail
