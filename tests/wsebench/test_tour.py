"""wsebench.tour: the tour's pictures carry the real Target's and Plan's numbers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import wsebench as wb  # noqa: E402
from compiler.target import wafer  # noqa: E402
from wsebench import tour  # noqa: E402


@pytest.fixture(scope="module")
def plan():
    model = wb.models.mlp(in_features=8, hidden=32, out_features=3, depth=3, dropout=0.0, seed=0)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    return wb.compile(model, torch.nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1)).plan


@pytest.mark.parametrize("name", ["classroom", "wse2"])
def test_the_core_and_mesh_pictures_say_the_targets_numbers(name):
    target = wafer(name)
    core = tour.draw_core(target).get_title() + " ".join(
        t.get_text() for t in tour.draw_core(target).texts)
    assert f"{target.sram_bytes // 1024} KB" in core and f"{target.simd} FP16 FMAC lanes" in core
    assert f"{target.link_bits}-bit wavelet" in core and {"N", "S", "E", "W", "ramp"} <= set(core.split())
    mesh = tour.draw_mesh(target).get_title()
    assert f"{target.rows} x {target.cols} = {target.cores:,} cores" in mesh


def test_a_wavelet_moves_one_hop_at_a_time_along_its_route(plan):
    for route in plan.sample_routes:
        cells = tour.route_cells(route)
        assert len(cells) == route.hops + 1
        assert cells[0] == tuple(route.path[0]) and cells[-1] == tuple(route.path[-1])
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(cells, cells[1:]))
    longest = max(plan.sample_routes, key=lambda rt: rt.hops)
    assert f"{longest.hops} hops" in tour.draw_wavelet(plan).get_title()


def test_the_kernel_picture_names_its_mapping(plan):
    kernel = plan.kernels[1]
    m = plan.mapping[kernel.name]
    ax = tour.draw_kernel(plan, kernel.name)
    assert f"{m.rows} x {m.cols} cores" in ax.get_title()
    words = " ".join(t.get_text() for t in ax.texts)
    assert f"{m.cols} columns of cores split {kernel.nest.col_dim!r}" in words
