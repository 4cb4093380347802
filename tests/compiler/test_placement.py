"""compiler.placement: rectangles on the fabric, Manhattan routes, link loads."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.cost import Mapping
from compiler.placement import (Edge, PlacementError, Rect, Route, link_loads, occupancy, place,
                                route)
from compiler.target import wafer

T = wafer("classroom")


def random_mappings(r, n, target, max_side=10):
    names = [f"k{i}" for i in range(n)]
    maps = {}
    for name in names:
        replicas = int(r.integers(1, 3))
        maps[name] = Mapping(int(r.integers(1, max_side + 1)),
                             int(r.integers(1, max(1, max_side // replicas) + 1)), replicas)
    return names, maps


def check_placement(rects, order, maps, target):
    assert [r.name for r in rects] == order
    for r in rects:
        m = maps[r.name]
        assert (r.height, r.width) == (m.rows, m.width)
        assert 0 <= r.row and r.row + r.height <= target.rows
        assert 0 <= r.col and r.col + r.width <= target.cols
    grid = occupancy(rects, target)                 # raises on overlap
    assert (grid > 0).sum() == sum(m.cores for m in maps.values())
    for i, r in enumerate(rects):
        assert (grid[r.cells()] == i + 1).all()


def test_random_placements_are_valid():
    r = np.random.default_rng(0)
    placed = 0
    for _ in range(300):
        order, maps = random_mappings(r, int(r.integers(1, 12)), T)
        try:
            rects = place(order, maps, T)
        except PlacementError:
            continue
        check_placement(rects, order, maps, T)
        placed += 1
    assert placed > 100


def test_mlp_like_placement():
    order = ["fc1", "fc2", "log_softmax"]
    maps = {"fc1": Mapping(8, 16), "fc2": Mapping(16, 4), "log_softmax": Mapping(2, 2)}
    rects = place(order, maps, T)
    check_placement(rects, order, maps, T)


def test_consecutive_kernels_on_a_shelf_touch():
    """Serpentine packing: kernel i+1 starts where kernel i ends on the same shelf."""
    order = [f"k{i}" for i in range(10)]
    maps = {n: Mapping(4, 7) for n in order}
    rects = place(order, maps, T)
    check_placement(rects, order, maps, T)
    for a, b in zip(rects, rects[1:]):
        if a.row == b.row:
            assert a.col + a.width == b.col or b.col + b.width == a.col


def test_kernel_larger_than_fabric():
    with pytest.raises(PlacementError, match="big"):
        place(["big"], {"big": Mapping(T.rows + 1, 1)}, T)
    with pytest.raises(PlacementError, match="wide"):
        place(["wide"], {"wide": Mapping(1, 20, 2)}, T)       # 40 columns with replicas


def test_too_many_kernels():
    order = [f"k{i}" for i in range(5)]
    maps = {n: Mapping(20, 20) for n in order}               # 5 x 400 > 1024 cores
    with pytest.raises(PlacementError):
        place(order, maps, T)


def test_full_fabric_fits_exactly():
    order = [f"k{i}" for i in range(4)]
    maps = {n: Mapping(16, 16) for n in order}
    rects = place(order, maps, T)
    check_placement(rects, order, maps, T)
    assert (occupancy(rects, T) > 0).all()


def test_occupancy_detects_overlap():
    with pytest.raises(PlacementError, match="b"):
        occupancy((Rect("a", 0, 0, 4, 4), Rect("b", 3, 3, 2, 2)), T)
    grid = occupancy((Rect("a", 0, 0, 4, 4), Rect("b", 4, 4, 2, 2)), T)
    assert grid.shape == (T.rows, T.cols)
    assert (grid == 1).sum() == 16 and (grid == 2).sum() == 4


def test_empty_placement():
    assert place([], {}, T) == ()


# ---------------------------------------------------------------- routes


def random_rects(r, n):
    rects = []
    for i in range(n):
        h, w = int(r.integers(1, 8)), int(r.integers(1, 8))
        rects.append(Rect(f"k{i}", int(r.integers(0, T.rows - h + 1)),
                          int(r.integers(0, T.cols - w + 1)), h, w))
    return tuple(rects)


def random_edges(r, rects, n):
    names = [x.name for x in rects]
    return [Edge(names[int(r.integers(len(names)))], names[int(r.integers(len(names)))], f"v{i}",
                 int(r.integers(1, 100))) for i in range(n)]


def test_routes_are_manhattan():
    r = np.random.default_rng(1)
    for _ in range(50):
        rects = random_rects(r, 6)
        where = {x.name: x for x in rects}
        edges = random_edges(r, rects, 10)
        routes = route(edges, rects)
        assert [rt.edge for rt in routes] == edges
        for rt in routes:
            (r0, c0), (r1, c1) = where[rt.edge.src].center, where[rt.edge.dst].center
            assert rt.hops == abs(r0 - r1) + abs(c0 - c1)
            assert rt.path[0] == (r0, c0) and rt.path[-1] == (r1, c1)
            for a, b in zip(rt.path, rt.path[1:]):
                assert a[0] == b[0] or a[1] == b[1]        # axis-aligned segments


def test_centers_lie_inside_rects():
    for rect in random_rects(np.random.default_rng(2), 50):
        cr, cc = rect.center
        assert rect.row <= cr < rect.row + rect.height
        assert rect.col <= cc < rect.col + rect.width


def test_route_hops_by_hand():
    rt = Route(Edge("a", "b", "v", 1), ((0, 0), (0, 5), (3, 5)))
    assert rt.hops == 8
    assert Route(Edge("a", "a", "v", 1), ((2, 2), (2, 2), (2, 2))).hops == 0


def test_link_loads_sum_to_wavelet_hops():
    r = np.random.default_rng(3)
    for _ in range(50):
        rects = random_rects(r, 5)
        routes = route(random_edges(r, rects, 12), rects)
        horizontal, vertical = link_loads(routes, T)
        assert horizontal.shape == (T.rows, T.cols - 1)
        assert vertical.shape == (T.rows - 1, T.cols)
        assert (horizontal >= 0).all() and (vertical >= 0).all()
        total = sum(rt.edge.wavelets * rt.hops for rt in routes)
        assert horizontal.sum() + vertical.sum() == pytest.approx(total)


def test_link_loads_mark_the_links_used():
    rt = Route(Edge("a", "b", "v", 7), ((1, 2), (1, 5), (4, 5)))
    h, v = link_loads((rt,), T)
    assert h[1, 2:5].tolist() == [7, 7, 7] and h.sum() == 21
    assert v[1:4, 5].tolist() == [7, 7, 7] and v.sum() == 21
    # going the other way loads the same links
    back = Route(Edge("b", "a", "v", 7), ((4, 5), (4, 2), (1, 2)))
    h2, v2 = link_loads((back,), T)
    assert h2.sum() == v2.sum() == 21
    assert h2[4, 2:5].tolist() == [7, 7, 7] and v2[1:4, 2].tolist() == [7, 7, 7]


def test_link_loads_add_up_over_routes():
    a = Route(Edge("a", "b", "v", 2), ((0, 0), (0, 3), (0, 3)))
    b = Route(Edge("a", "b", "w", 5), ((0, 1), (0, 2), (0, 2)))
    h, _ = link_loads((a, b), T)
    assert h[0, :3].tolist() == [2, 7, 2]
