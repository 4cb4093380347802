"""compiler.placement: greedy nearest-free placement (replayed by brute force), refinement and
wire length, gradient reduction routes. Routes between kernels are tested in test_routing.py,
link loads in test_links.py. The property-based versions (hypothesis) live in test_placement_properties.py."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.mapping import Mapping
from compiler.errors import PlacementError
from compiler.placement import (Edge, Rect, Route, free_positions,
                                occupancy, place, reduction_routes, refine, wire_length)
from compiler.target import wafer
from tests.compiler.test_free_space import brute_nearest, grid_of, scan_nearest, scattered_rects

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


def test_free_positions_match_brute_force():
    r = np.random.default_rng(4)
    for _ in range(40):
        occupied = r.random((int(r.integers(1, 12)), int(r.integers(1, 12)))) < r.uniform(0, 0.4)
        h, w = int(r.integers(1, 6)), int(r.integers(1, 6))
        rows, cols = free_positions(occupied, h, w)
        got = set(zip(rows.tolist(), cols.tolist()))
        want = {(i, j) for i in range(occupied.shape[0] - h + 1)
                for j in range(occupied.shape[1] - w + 1) if not occupied[i:i + h, j:j + w].any()}
        assert got == want


def test_each_kernel_goes_to_the_free_spot_nearest_the_previous_one():
    """Greedy nearest placement, replayed here by brute force: the first kernel sits at the
    corner, each next one at the free spot whose centre is nearest the previous centre."""
    r = np.random.default_rng(5)
    small = wafer("classroom", rows=16, cols=16)
    checked = 0
    for _ in range(60):
        order, maps = random_mappings(r, int(r.integers(1, 9)), small, max_side=6)
        try:
            rects = place(order, maps, small)
        except PlacementError:
            continue
        check_placement(rects, order, maps, small)
        occupied = np.zeros((small.rows, small.cols), dtype=bool)
        toward = (0.0, 0.0)
        for rect in rects:
            assert (rect.row, rect.col) == brute_nearest(occupied, rect.height, rect.width, toward)
            occupied[rect.cells()] = True
            toward = (rect.row + rect.height / 2, rect.col + rect.width / 2)
        checked += 1
    assert checked > 30


def test_consecutive_equal_kernels_touch():
    """Equal rectangles wind across the fabric: each one shares a side with the one before."""
    order = [f"k{i}" for i in range(10)]
    maps = {n: Mapping(4, 7) for n in order}
    rects = place(order, maps, T)
    check_placement(rects, order, maps, T)
    assert (rects[0].row, rects[0].col) == (0, 0)
    for a, b in zip(rects, rects[1:]):
        side_by_side = (a.col + a.width == b.col or b.col + b.width == a.col) and \
            a.row < b.row + b.height and b.row < a.row + a.height
        stacked = (a.row + a.height == b.row or b.row + b.height == a.row) and \
            a.col < b.col + b.width and b.col < a.col + a.width
        assert side_by_side or stacked, (a, b)


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


# ---------------------------------------------------------------- rectangles and routes


def random_rects(r, n):
    rects = []
    for i in range(n):
        h, w = int(r.integers(1, 8)), int(r.integers(1, 8))
        rects.append(Rect(f"k{i}", int(r.integers(0, T.rows - h + 1)),
                          int(r.integers(0, T.cols - w + 1)), h, w))
    return tuple(rects)


def test_centers_lie_inside_rects():
    for rect in random_rects(np.random.default_rng(2), 50):
        cr, cc = rect.center
        assert rect.row <= cr < rect.row + rect.height
        assert rect.col <= cc < rect.col + rect.width


def test_route_hops_by_hand():
    rt = Route(Edge("a", "b", "v", 1), ((0, 0), (0, 5), (3, 5)))
    assert rt.hops == 8
    assert Route(Edge("a", "a", "v", 1), ((2, 2), (2, 2), (2, 2))).hops == 0


# ---------------------------------------------------------------- wire length, refinement


def test_wire_length_by_hand():
    rects = (Rect("a", 0, 0, 2, 2), Rect("b", 0, 10, 2, 2), Rect("c", 8, 10, 4, 4))
    # centres (1,1), (1,11), (10,12)
    assert wire_length(rects, [("a", "b")]) == 10
    assert wire_length(rects, [("a", "b"), ("b", "c")]) == 10 + 10
    assert wire_length(rects, []) == 0


def chain_pairs(names):
    return [(a, b) for a, b in zip(names, names[1:])]


def test_refine_keeps_sizes_and_never_lengthens_wires():
    r = np.random.default_rng(6)
    improved = 0
    for _ in range(40):
        order, maps = random_mappings(r, int(r.integers(2, 9)), T, max_side=8)
        try:
            rects = place(order, maps, T)
        except PlacementError:
            continue
        names = list(order)
        pairs = chain_pairs(names) + [(names[int(r.integers(len(names)))], names[0])]
        pairs = [p for p in pairs if p[0] != p[1]]
        better = refine(rects, pairs, T)
        check_placement(better, order, maps, T)                 # same sizes, inside, no overlap
        before, after = wire_length(rects, pairs), wire_length(better, pairs)
        assert after <= before
        improved += after < before
    assert improved > 0                                         # refinement does something


def test_refine_pulls_a_stray_kernel_back():
    """b talks to a and c, which sit side by side; b starts in the far corner. Two passes bring
    the three together (kernels move toward the centroid of the ones they talk to)."""
    rects = (Rect("a", 0, 0, 4, 4), Rect("b", 28, 28, 4, 4), Rect("c", 0, 4, 4, 4))
    pairs = [("a", "b"), ("b", "c")]
    better = refine(rects, pairs, T)
    assert wire_length(rects, pairs) == 108
    # the least possible: b touches both a and c, centres 4 apart (4 x 4 regions)
    assert wire_length(better, pairs) == 8
    occupancy(better, T)


def test_weighted_refine_puts_a_kernel_by_its_heavy_partner():
    """s exchanges whole activations with h (weight 100) and a light mask with each of l1..l3
    (weight 1), which sit in the far corner. Counting pairs alike, s moves first toward the
    light three and the others follow it there; weighing them by their traffic, s moves to h
    and the cluster forms in h's corner."""
    h = Rect("h", 0, 0, 4, 4)
    rects = (Rect("s", 14, 14, 2, 2), h, Rect("l1", 28, 24, 4, 4), Rect("l2", 28, 28, 4, 4),
             Rect("l3", 24, 28, 4, 4))
    pairs = [("h", "s"), ("l1", "s"), ("l2", "s"), ("l3", "s")]
    weights = {("h", "s"): 100, ("l1", "s"): 1, ("l2", "s"): 1, ("l3", "s"): 1}

    def from_h(rs):
        s = {x.name: x for x in rs}["s"].center
        return abs(s[0] - h.center[0]) + abs(s[1] - h.center[1])
    plain, weighted = refine(rects, pairs, T), refine(rects, pairs, T, weights=weights)
    assert from_h(weighted) <= 4 < 20 < from_h(plain)
    occupancy(weighted, T)


# ---------------------------------------------------------------- gradient reduction routes


def test_reduction_routes_chain_the_replicas(make_matmul, make_generated):
    kernels = (make_matmul("fc1", k=64, n=32, samples=8), make_generated("act", elements=32, samples=8),
               make_matmul("fc2", k=32, n=16, samples=8), make_matmul("fc3", k=16, n=8, samples=8))
    maps = {"fc1": Mapping(4, 3, 3), "act": Mapping(1, 2, 4), "fc2": Mapping(2, 2, 1),
            "fc3": Mapping(3, 1, 2)}
    rects = place([k.name for k in kernels], maps, T)
    routes = reduction_routes(kernels, maps, rects, T)
    where = {x.name: x for x in rects}
    by_kernel = {}
    for rt in routes:
        assert rt.edge.src == rt.edge.dst
        assert rt.edge.value.startswith("gradient all-reduce")
        assert rt.edge.wavelets > 0
        by_kernel.setdefault(rt.edge.src, []).append(rt)
    # one hop per pair of neighbouring replicas; none for one replica or no weights
    assert {n: len(v) for n, v in by_kernel.items()} == {"fc1": 2, "fc3": 1}
    for name, rts in by_kernel.items():
        rect, m = where[name], maps[name]
        for q, rt in enumerate(rts):
            (r0, c0), (r1, c1) = rt.path[0], rt.path[-1]
            assert r0 == r1 == rect.row + rect.height // 2       # along the middle row
            assert c0 == rect.col + q * m.cols + m.cols // 2      # replica q's centre column
            assert c1 - c0 == m.cols                             # to replica q + 1's
            assert rect.col <= c0 < c1 < rect.col + rect.width    # inside the region


def reference_refine(rects, pairs, target, passes=2, weights=None):
    """`placement.refine` measuring the total (weighted) wire length after every trial move."""
    rects, talks = list(rects), {frozenset(pair) for pair in pairs}
    weight = {frozenset(p): 1 if weights is None else weights[p] for p in pairs}

    def length(rs):
        where = {r.name: r.center for r in rs}
        return sum(weight[frozenset((a, b))] * (abs(where[a][0] - where[b][0])
                                                + abs(where[a][1] - where[b][1])) for a, b in pairs)
    total = length(rects)
    for _ in range(passes):
        improved = False
        for i, rect in enumerate(rects):
            near = [r for r in rects if frozenset((r.name, rect.name)) in talks]
            if not near:
                continue
            occupied = grid_of(rects[:i] + rects[i + 1:], (target.rows, target.cols))
            w = [weight[frozenset((r.name, rect.name))] for r in near]
            centroid = (np.dot(w, [r.center[0] for r in near]) / sum(w),
                        np.dot(w, [r.center[1] for r in near]) / sum(w))
            spot = scan_nearest(occupied, rect.height, rect.width, centroid)
            if spot is not None and spot != (rect.row, rect.col):
                trial = rects[:i] + [Rect(rect.name, *spot, rect.height, rect.width)] + rects[i + 1:]
                if length(trial) < total:
                    rects, total, improved = trial, length(trial), True
        if not improved:
            break
    return tuple(rects)


def test_refine_is_the_reference_refinement():
    r = np.random.default_rng(13)
    target = wafer("classroom", rows=24, cols=30)
    moved = moved_weighted = 0
    for _ in range(30):
        rects = tuple(scattered_rects(r, target.rows, target.cols, 14, 7))
        names = [x.name for x in rects]
        pairs = sorted({tuple(sorted((names[int(a)], names[int(b)])))
                        for a, b in r.integers(0, len(names), (len(names) + 3, 2)) if a != b})
        passes = int(r.integers(1, 4))
        got = refine(rects, pairs, target, passes)
        assert got == reference_refine(rects, pairs, target, passes)
        moved += got != rects
        weights = {p: int(r.integers(1, 1000)) for p in pairs}
        heavy = refine(rects, pairs, target, passes, weights)
        assert heavy == reference_refine(rects, pairs, target, passes, weights)
        moved_weighted += heavy != got
    assert moved > 5                     # the references are compared on real moves
    assert moved_weighted > 5            # and the weights change where kernels go
