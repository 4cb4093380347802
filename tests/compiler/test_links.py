"""compiler.links: routes as bands of directed links, their loads summed by a difference array
(checked against a cell-by-cell sum), and the congestion each kernel's routes meet."""
from __future__ import annotations

import numpy as np

from compiler.links import DIRECTIONS, directed_link_loads, link_loads, route_links, segments
from compiler.placement import Edge, Rect, Route
from compiler.routing import route
from compiler.target import wafer

T = wafer("classroom")


def brute_force_loads(routes, target):
    """Every link of every segment, one at a time."""
    loads = np.zeros((4, target.rows, target.cols))
    for rt in routes:
        for direction, rows, cols, lanes in segments(rt):
            for r in range(rows.start, rows.stop):
                for c in range(cols.start, cols.stop):
                    loads[DIRECTIONS.index(direction), r, c] += rt.edge.wavelets / lanes
    return loads


def test_difference_array_equals_the_sum_link_by_link():
    r = np.random.default_rng(0)
    for _ in range(20):
        rects = []
        for i in range(6):
            h, w = r.integers(1, 8, size=2)
            rects.append(Rect(f"k{i}", int(r.integers(0, T.rows - h)), int(r.integers(0, T.cols - w)),
                              int(h), int(w)))
        edges = [Edge(f"k{a}", f"k{b}", f"v{j}", int(r.integers(1, 500)))
                 for j, (a, b) in enumerate(r.integers(0, 6, size=(10, 2))) if a != b]
        routes = route(edges, tuple(rects))
        np.testing.assert_allclose(route_links(routes, [], T).loads(), brute_force_loads(routes, T),
                                   atol=1e-9)


def test_link_loads_mark_the_links_used():
    rt = Route(Edge("a", "b", "v", 7), ((1, 2), (1, 5), (4, 5)))      # no bands: one lane
    h, v = link_loads((rt,), T)
    assert h[1, 2:5].tolist() == [7, 7, 7] and h.sum() == 21
    assert v[1:4, 5].tolist() == [7, 7, 7] and v.sum() == 21
    back = Route(Edge("b", "a", "v", 7), ((4, 5), (4, 2), (1, 2)))
    loads = directed_link_loads((back,), T)
    assert loads["west"][4, 2:5].tolist() == [7, 7, 7] and loads["north"][1:4, 2].tolist() == [7, 7, 7]
    assert loads["east"].sum() == loads["south"].sum() == 0


def test_a_band_spreads_the_load_over_its_lanes():
    rt = Route(Edge("a", "b", "v", 12), ((1, 2), (1, 5), (4, 5)), ((0, 4), (5, 7)))
    h, v = link_loads((rt,), T)
    assert h[0:4, 2:5].tolist() == [[3, 3, 3]] * 4 and h.sum() == 36
    assert v[1:4, 5:7].tolist() == [[6, 6]] * 3 and v.sum() == 36
    assert rt.lanes == 2 and rt.load == 6


def test_link_loads_add_up_over_routes():
    a = Route(Edge("a", "b", "v", 2), ((0, 0), (0, 3), (0, 3)))
    b = Route(Edge("a", "b", "w", 5), ((0, 1), (0, 2), (0, 2)))
    h, _ = link_loads((a, b), T)
    assert h[0, :3].tolist() == [2, 7, 2]


def test_congestion_slows_the_kernels_on_a_busy_link():
    """Two routes in the same direction over the same links add up; a link moves one wavelet
    per cycle, so the per-sample congestion is the busiest link's load over the samples."""
    one = Route(Edge("a", "b", "x", 40), ((0, 0), (0, 10)))
    two = Route(Edge("c", "b", "y", 20), ((0, 5), (0, 10)))
    jam = route_links((one, two), "abc", T).congestion(samples=4)
    np.testing.assert_array_equal(jam, [[15.0, 15.0, 15.0]])     # (40 + 20) / 4 on links 5..9
    wide = Route(Edge("a", "b", "x", 40), ((0, 0), (0, 10)), ((0, 4),))
    assert route_links((wide,), "abc", T).congestion(samples=4)[0, 0] == 2.5


def test_bands_that_do_not_overlap_do_not_add_up():
    one = Route(Edge("a", "b", "x", 40), ((1, 0), (1, 10)), ((0, 4),))
    two = Route(Edge("c", "d", "y", 40), ((6, 0), (6, 10)), ((4, 8),))
    np.testing.assert_array_equal(route_links((one, two), "abcd", T).congestion(samples=1),
                                  [[10.0, 10.0, 10.0, 10.0]])


def test_links_carry_each_direction_separately():
    there = Route(Edge("a", "b", "x", 40), ((0, 0), (0, 10)))
    back = Route(Edge("b", "a", "dx", 40), ((0, 10), (0, 0)))
    np.testing.assert_array_equal(route_links((there, back), "ab", T).congestion(samples=4),
                                  [[10.0, 10.0]])


def test_route_shares_scale_each_route_per_variant():
    """A variant that sends half of a route's rows loads its links half as much."""
    one = Route(Edge("a", "b", "x", 40), ((0, 0), (0, 10)))
    two = Route(Edge("c", "b", "y", 20), ((0, 5), (0, 10)))
    jam = route_links((one, two), "abc", T).congestion([[1.0, 1.0], [0.5, 0.5], [1.0, 0.0]], samples=4)
    np.testing.assert_array_equal(jam, [[15, 15, 15], [7.5, 7.5, 7.5], [10, 10, 10]])
