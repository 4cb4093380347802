"""compiler.routing: Manhattan routes bundled over lanes (one per boundary core), taken where
they have the most lanes when alone, and laid around each other where they would share a band
(the busiest link after all routes never exceeds what the lanes-only rule gives, in the cases
built here by hand). Rerouting ends where no route has a strictly lighter candidate, so a route
with a free parallel corridor never stays on a busier one, and re-laying only the routes whose
candidates' links changed gives the same routes as re-laying all. Link loads themselves are
tested in test_links.py."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.links import link_loads, route_links
from compiler.placement import Edge, Rect, Route
import compiler.routing as routing
from compiler.routing import Changes, Laid, LinkLoads, candidates, extent, route
from compiler.target import wafer
from tests.compiler.test_placement import random_rects

T = wafer("classroom")


def lanes_only(edges, rects):
    """The rule before congestion was counted: each edge alone on the fabric, the candidate
    with the most lanes at its narrowest (first on a tie)."""
    where = {r.name: r for r in rects}
    return tuple(max(candidates(e, where[e.src], where[e.dst], extent(rects)),
                     key=lambda rt: rt.lanes) for e in edges)


def busiest_link(routes, rects):
    loads = LinkLoads(rects)
    for rt in routes:
        loads.add(Laid(rt))
    return float(loads.loads.max())


def random_edges(r, rects, n):
    names = [x.name for x in rects]
    return [Edge(names[int(r.integers(len(names)))], names[int(r.integers(len(names)))], f"v{i}",
                 int(r.integers(1, 100))) for i in range(n)]


def around(rt, a, b) -> int:
    """How far past the nearer centre a route that goes around two regions sharing columns
    (rows) turns (0 for any other route): its middle leg runs outside both regions."""
    if len(rt.path) != 4:
        return 0
    x_outer = rt.path[0][0] == rt.path[1][0]
    axis = 1 if x_outer else 0
    turn, ends = rt.path[1][axis], sorted((rt.path[0][axis], rt.path[3][axis]))
    if ends[0] <= turn <= ends[1]:
        return 0
    sides = [(x.col, x.col + x.width) if x_outer else (x.row, x.row + x.height) for x in (a, b)]
    assert max(lo for lo, _ in sides) < min(hi for _, hi in sides)       # they share them
    lo, hi = rt.bands[1]
    assert hi <= min(lo for lo, _ in sides) or lo >= max(hi for _, hi in sides)    # outside both
    return min(abs(turn - e) for e in ends)


def test_routes_are_manhattan():
    r = np.random.default_rng(1)
    for _ in range(50):
        rects = random_rects(r, 6)
        where = {x.name: x for x in rects}
        edges = random_edges(r, rects, 10)
        routes = route(edges, rects)
        assert [rt.edge for rt in routes] == edges
        for rt in routes:
            src, dst = where[rt.edge.src], where[rt.edge.dst]
            (r0, c0), (r1, c1) = rt.path[0], rt.path[-1]
            assert rt.hops == abs(r0 - r1) + abs(c0 - c1) + 2 * around(rt, src, dst)
            assert rt.hops <= (abs(src.center[0] - dst.center[0]) + abs(src.center[1] - dst.center[1])
                               + 2 * around(rt, src, dst))
            inside = lambda p, x: x.row <= p[0] < x.row + x.height and x.col <= p[1] < x.col + x.width  # noqa: E731
            assert inside(rt.path[0], src) and inside(rt.path[-1], dst)
            if rt.path[0] != src.center:                   # straight: over rows or columns both hold
                assert len(rt.path) == 2 and rt.lanes == rt.bands[0][1] - rt.bands[0][0]
            for a, b in zip(rt.path, rt.path[1:]):
                assert a[0] == b[0] or a[1] == b[1]        # axis-aligned segments


def test_every_link_of_a_band_carries_its_share():
    """A route's wavelets spread over its lanes: summed over the links of a band, each hop of
    the path carries every wavelet once, so all links together carry wavelets x hops."""
    r = np.random.default_rng(3)
    for _ in range(50):
        rects = random_rects(r, 5)
        routes = route(random_edges(r, rects, 12), rects)
        horizontal, vertical = link_loads(routes, T)
        assert horizontal.shape == (T.rows, T.cols - 1)
        assert vertical.shape == (T.rows - 1, T.cols)
        assert (horizontal >= -1e-9).all() and (vertical >= -1e-9).all()
        for rt in routes:
            assert rt.load == pytest.approx(rt.edge.wavelets / rt.lanes)
        total = sum(rt.edge.wavelets * rt.hops for rt in routes)
        assert horizontal.sum() + vertical.sum() == pytest.approx(total)


def test_route_lanes_are_the_boundary_cores():
    """A route leaves over the producer's side and enters over the consumer's (straight over
    the rows or columns two regions share, where that is widest), as wide as its narrower part;
    the per-link load falls by the lanes."""
    left, right = Rect("a", 0, 0, 6, 2), Rect("b", 1, 20, 4, 3)
    (rt,) = route([Edge("a", "b", "v", 120)], (left, right))
    assert rt.lanes == 4 and rt.load == 30
    top, bottom = Rect("a", 0, 0, 2, 5), Rect("b", 20, 1, 2, 8)
    (rt,) = route([Edge("a", "b", "v", 120)], (top, bottom))
    # straight down over the 4 shared columns, or Y-X-Y: out over a's 5 columns, in over b's 8
    assert rt.lanes == 5 and rt.load == 24 and len(rt.path) == 4 and rt.bands[0] == (0, 5)
    narrow = Rect("b", 20, 1, 2, 3)
    (rt,) = route([Edge("a", "b", "v", 120)], (top, narrow))
    assert rt.lanes == 3 and rt.bands[-1] == (1, 4)          # straight down b's (narrower) columns
    one = Rect("c", 10, 10, 1, 1)
    (rt,) = route([Edge("a", "c", "v", 7)], (left, one))
    assert rt.lanes == 1 and rt.load == 7
    assert Route(Edge("a", "b", "v", 9), ((0, 0), (0, 1))).load == 9     # no bands: one lane


def test_route_turns_where_it_has_more_lanes():
    """A tall thin producer sends east over its rows, then the route turns into a wide consumer
    over its columns (X then Y); a wide flat producer goes south first (Y then X)."""
    tall, wide = Rect("a", 0, 0, 10, 1), Rect("b", 20, 30, 2, 12)
    (rt,) = route([Edge("a", "b", "v", 100)], (tall, wide))
    assert rt.path[1] == (tall.center[0], wide.center[1]) and rt.lanes == 10
    flat, thin = Rect("a", 0, 0, 1, 12), Rect("b", 20, 30, 9, 1)
    (rt,) = route([Edge("a", "b", "v", 100)], (flat, thin))
    assert rt.path[1] == (thin.center[0], flat.center[1]) and rt.lanes == 9


def test_a_route_alone_takes_the_most_lanes():
    """With nothing else on the fabric, the busiest link a candidate meets is its own narrowest
    band, so the choice is the lanes-only rule's, route for route."""
    r = np.random.default_rng(4)
    for _ in range(100):
        rects = random_rects(r, 4)
        edges = random_edges(r, rects, 1)
        assert route(edges, rects) == lanes_only(edges, rects)


def test_routes_that_would_share_a_band_go_around_each_other():
    """Two heavy edges between square regions on a diagonal: alone, each would leave east over
    the producer's 8 rows (X then Y, first on the tie with Y then X over its 8 columns). Laid
    together, the second leaves south instead, and the busiest link carries half as much."""
    top_left, bottom_right = Rect("a", 0, 0, 8, 8), Rect("b", 20, 30, 8, 8)
    edges = [Edge("a", "b", "x", 800), Edge("a", "b", "y", 800)]
    piled, spread = lanes_only(edges, (top_left, bottom_right)), route(edges, (top_left, bottom_right))
    assert (piled[0].path, piled[0].bands) == (piled[1].path, piled[1].bands)
    assert (spread[0].path, spread[0].bands) != (spread[1].path, spread[1].bands)
    assert busiest_link(piled, (top_left, bottom_right)) == pytest.approx(2 * 800 / 8)
    assert busiest_link(spread, (top_left, bottom_right)) == pytest.approx(800 / 8)


def test_laying_around_never_loads_a_link_more_than_piling_up():
    """Random layouts with many edges between a few regions: the greedy router's busiest link is
    at most the lanes-only rule's (it starts from the heaviest edge, the one that sets the
    lanes-only peak on its own band)."""
    r = np.random.default_rng(5)
    worse = 0
    for _ in range(40):
        rects = random_rects(r, 4)
        edges = random_edges(r, rects, 10)
        worse += busiest_link(route(edges, rects), rects) > busiest_link(lanes_only(edges, rects), rects) + 1e-9
    assert worse == 0


def test_link_loads_follow_the_routes_added():
    """The router's running loads equal the finished routes' difference-array sum."""
    r = np.random.default_rng(6)
    rects = random_rects(r, 5)
    routes = route(random_edges(r, rects, 12), rects)
    running = LinkLoads(rects)
    for rt in routes:
        running.add(Laid(rt))
    full = route_links(routes, [], T).loads()
    rows, cols = (min(a, b) for a, b in zip(running.loads.shape[1:], full.shape[1:]))
    np.testing.assert_allclose(running.loads[:, :rows, :cols], full[:, :rows, :cols], atol=1e-9)
    assert running.loads.sum() == pytest.approx(full.sum())      # nothing outside the overlap


def test_rerouting_ends_where_no_route_has_a_lighter_candidate():
    """After `route`, taking any one route off and trying each of its candidates against all the
    others' loads finds none whose busiest link is lighter than the route's own (the fixed point
    of rip-up and reroute); in particular a candidate on links no other route loads (a free
    parallel path) bounds the route's busiest link by that candidate's own load."""
    r = np.random.default_rng(7)
    free_seen = 0
    for _ in range(30):
        rects = random_rects(r, 5)
        where = {x.name: x for x in rects}
        edges = random_edges(r, rects, 14)
        routes = route(edges, rects)
        for (x, loads), e in zip(each_against_the_others(routes, rects), edges):
            own = loads.peak_with(x)
            for cand in map(Laid, candidates(e, where[e.src], where[e.dst])):
                assert loads.peak_with(cand) >= own * (1 - 1e-9)
                if all(loads.loads[d, rows, cols].max() < 1e-9 for d, rows, cols, _ in cand.bands):
                    free_seen += 1
                    assert own <= max((per_link for *_, per_link in cand.bands), default=0.0) + 1e-9
    assert free_seen > 0


def each_against_the_others(routes, rects):
    """Each route (as `Laid`) with the link loads of all the other routes, one at a time."""
    loads = LinkLoads(rects)
    laid = [Laid(rt) for rt in routes]
    for x in laid:
        loads.add(x)
    for x in laid:
        loads.add(x, sign=-1.0)
        yield x, loads
        loads.add(x)


def test_a_bundle_with_a_free_parallel_corridor_leaves_the_busy_one():
    """a and b, far apart and offset, talk X-Y-X: out east over a's rows, down, in over b's
    rows. A heavy route c -> d runs down the columns half way between them. Alone, a -> b would
    turn half way (its first three-leg candidate); laid with c -> d, it turns hugging a or b
    instead, so its busiest link carries only its own wavelets, and c -> d's is not loaded more."""
    a, b = Rect("a", 0, 0, 8, 2), Rect("b", 30, 60, 8, 2)
    c, d = Rect("c", 0, 28, 2, 8), Rect("d", 40, 28, 2, 8)
    rects = (a, b, c, d)
    heavy, light = Edge("c", "d", "x", 8000), Edge("a", "b", "y", 800)
    middle = candidates(light, a, b)
    alone = route([light], rects)[0]
    assert any(len(rt.path) == 4 and rt.path[1][1] == (a.center[1] + b.center[1]) // 2
               for rt in middle)
    both = route([heavy, light], rects)
    loads = LinkLoads(rects)
    loads.add(Laid(both[0]))
    assert loads.peak_with(Laid(both[1])) == pytest.approx(800 / 8)
    assert busiest_link(both, rects) == pytest.approx(8000 / 8)
    assert Laid(alone).lanes == Laid(both[1]).lanes == 8


def test_relaying_only_changed_routes_gives_the_routes_of_relaying_all(monkeypatch):
    """A route is laid again only when a link its candidates use has changed since it was last
    laid; relaying every route every pass gives the same routes."""
    r = np.random.default_rng(8)
    cases = []
    for _ in range(20):
        rects = random_rects(r, 5)
        cases.append((random_edges(r, rects, 14), rects))
    skipping = [route(e, x) for e, x in cases]
    monkeypatch.setattr(routing.Changes, "touch", lambda self, reach, since: True)
    assert [route(e, x) for e, x in cases] == skipping


def test_changes_touch_only_overlapping_boxes_in_the_same_direction():
    changes = Changes()
    east = Laid(Route(Edge("a", "b", "v", 10), ((5, 0), (5, 10)), ((4, 7),)))   # rows 4-6, links 0-9
    changes.log(east)
    reach = Changes.reach([east])
    assert changes.touch(reach, 0) and not changes.touch(reach, 1)
    west = Laid(Route(Edge("b", "a", "v", 10), ((5, 10), (5, 0)), ((4, 7),)))
    assert not changes.touch(Changes.reach([west]), 0)       # the same links, other direction
    apart = Laid(Route(Edge("a", "b", "v", 10), ((9, 0), (9, 10)), ((8, 10),)))
    assert not changes.touch(Changes.reach([apart]), 0)
    changes.log(apart)
    assert changes.touch(Changes.reach([apart]), 0) and not changes.touch(reach, 1)


def test_stacked_regions_talk_around_over_their_long_sides():
    """Two tall regions one above the other share their 10 columns: straight down those columns
    is 10 lanes. Going around either side, a bundle leaves and enters over the 35 rows, so three
    heavy edges spread over both sides and the busiest link carries 2 / 35 of an edge, not the
    1 / 10 a single straight route would; the detour costs twice the distance to its corridor."""
    top, bottom = Rect("a", 0, 40, 35, 10), Rect("b", 35, 40, 35, 10)
    edges = [Edge("a", "b", f"v{i}", 3500) for i in range(3)]
    routes = route(edges, (top, bottom), (80, 100))
    assert busiest_link(routes, (top, bottom)) == pytest.approx(2 * 3500 / 35)
    assert {rt.lanes for rt in routes} == {35}
    assert {rt.bands[1] for rt in routes} == {(5, 40), (50, 85)}          # both sides
    for rt in routes:
        assert rt.hops == (bottom.center[0] - top.center[0]) + 2 * abs(rt.path[1][1] - top.center[1])
    # on a fabric with no room beside them they stay on the shared columns
    squeezed = route(edges, (Rect("a", 0, 0, 35, 10), Rect("b", 35, 0, 35, 10)), (70, 10))
    assert {rt.lanes for rt in squeezed} == {10}


def fixed_point(edges, routes, rects):
    """Whether no route has a candidate strictly lighter than its own against the others."""
    where = {x.name: x for x in rects}
    return not any(loads.peak_with(Laid(c)) < loads.peak_with(x) * (1 - 1e-9)
                   for (x, loads), e in zip(each_against_the_others(routes, rects), edges)
                   for c in candidates(e, where[e.src], where[e.dst], extent(rects)))


def test_a_moved_region_is_routed_from_its_new_spot_and_settles_to_a_fixed_point():
    """`Router.moved` re-lays only the moved region's routes (each from a candidate of its new
    spot; every other route stays as it was), keeps the link loads the sum of its routes', and
    the original router untouched; `settled` then lets every route move, ending where no route
    has a lighter candidate, as `route` does. `peaks` is each route's busiest link."""
    r = np.random.default_rng(11)
    for _ in range(20):
        rects = random_rects(r, 5)
        edges = random_edges(r, rects, 14)
        fabric = extent(rects)
        router = routing.Router(edges, rects, fabric)
        before = router.routes
        old = rects[0]
        spot = Rect(old.name, int(r.integers(0, fabric[0] - old.height + 1)),
                    int(r.integers(0, fabric[1] - old.width + 1)), old.height, old.width)
        moved = router.moved(spot)
        assert router.routes == before and router.where[old.name] == old
        here = tuple(spot if x.name == old.name else x for x in rects)
        where = {x.name: x for x in here}
        for e, rt, was in zip(edges, moved.routes, before):
            if old.name in (e.src, e.dst):
                assert rt in candidates(e, where[e.src], where[e.dst], fabric)
            else:
                assert rt == was
        sums = LinkLoads(here, fabric)
        for rt in moved.routes:
            sums.add(Laid(rt))
        assert np.allclose(moved.loads.loads, sums.loads)
        peaks = moved.peaks()
        for i, rt in enumerate(moved.routes):
            assert peaks[i] == pytest.approx(max((sums.loads[d, rows, cols].max()
                                                  for d, rows, cols, _ in Laid(rt).bands),
                                                 default=0.0))
        settled = moved.settled()
        assert fixed_point(edges, settled.routes, here)
        sums = LinkLoads(here, fabric)
        for rt in settled.routes:
            sums.add(Laid(rt))
        assert np.allclose(settled.loads.loads, sums.loads)


def test_router_routes_are_route():
    r = np.random.default_rng(12)
    for _ in range(10):
        rects = random_rects(r, 5)
        edges = random_edges(r, rects, 12)
        assert routing.Router(edges, rects).routes == route(edges, rects)
