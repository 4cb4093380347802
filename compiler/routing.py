"""Routing: a Manhattan route for every producer -> consumer edge between placed rectangles.

Each route is a bundle of parallel lanes, one per boundary core that holds the data (`Route`;
Hot Chips 2020: the fabric's routers move one 32-bit wavelet per link per cycle each way, and a
colour's route is set statically). The candidates for an edge are X-then-Y, Y-then-X, a straight
route over the rows (or columns) two facing regions share, and X-Y-X or Y-X-Y (two flat regions
talk over their columns).

Routes share links, and a link's wavelets add up (`compiler.links`): the congestion a kernel meets
is the busiest link its routes cross. So the routes are laid greedily, heaviest first, each on
the candidate whose busiest link carries the least once it is added, then ripped up and laid
again one at a time against all the others (rip-up and reroute, as in PathFinder: McMurchie &
Ebeling, FPGA 1995). A route alone on the fabric thus takes the candidate with the most lanes at
its narrowest; one that would pile onto a band other routes load turns another way.
"""
from __future__ import annotations

import numpy as np

from .links import DIRECTIONS, segments
from .placement import Edge, Rect, Route

REROUTE_PASSES = 2      # after the greedy pass; on BERT-base/wse2 a third changes nothing


def route(edges: list[Edge], rects: tuple[Rect, ...]) -> tuple[Route, ...]:
    """A route for every edge (in `edges` order), laid heaviest first on the candidate whose
    busiest link carries the fewest wavelets with it added (ties: more lanes at the narrowest,
    then the order of `candidates`), then each ripped up and laid again, `REROUTE_PASSES` times."""
    where = {r.name: r for r in rects}
    options = [[Laid(rt) for rt in candidates(e, where[e.src], where[e.dst])] for e in edges]
    loads = LinkLoads(rects)
    chosen: list[Laid | None] = [None] * len(edges)
    for _ in range(1 + REROUTE_PASSES):
        for i in sorted(range(len(edges)), key=lambda i: -edges[i].wavelets):
            if chosen[i] is not None:
                loads.add(chosen[i], sign=-1.0)
            chosen[i] = min(options[i], key=lambda laid: (loads.peak_with(laid), -laid.lanes))
            loads.add(chosen[i])
    return tuple(laid.route for laid in chosen)


def candidates(edge: Edge, a: Rect, b: Rect) -> list[Route]:
    """The routes `edge` may take from region a to region b, in order of preference on a tie."""
    return ([_dimension_ordered(edge, a, b, True), _dimension_ordered(edge, a, b, False)]
            + _straight(edge, a, b) + [_three_legs(edge, a, b, True), _three_legs(edge, a, b, False)])


class Laid:
    """A candidate route with its bands as (direction index, rows, cols, wavelets per link)."""

    def __init__(self, rt: Route):
        self.route, self.lanes = rt, rt.lanes
        self.bands = [(DIRECTIONS.index(d), rows, cols, rt.edge.wavelets / lanes)
                      for d, rows, cols, lanes in segments(rt)]


class LinkLoads:
    """Wavelets per step on every directed link of the area the rectangles span, as routes are
    added (the dense counterpart of `links.RouteLinks`, which sums a finished plan's)."""

    def __init__(self, rects: tuple[Rect, ...]):
        rows = max((r.row + r.height for r in rects), default=0) + 1
        cols = max((r.col + r.width for r in rects), default=0) + 1
        self.loads = np.zeros((len(DIRECTIONS), rows, cols))

    def peak_with(self, laid: Laid) -> float:
        """The busiest link of the route's bands once its own wavelets are added."""
        return max((self.loads[d, rows, cols].max() + per_link
                    for d, rows, cols, per_link in laid.bands), default=0.0)

    def add(self, laid: Laid, sign: float = 1.0) -> None:
        """Lay the route's wavelets on its bands (`sign` -1: take them off again)."""
        for d, rows, cols, per_link in laid.bands:
            self.loads[d, rows, cols] += sign * per_link


def _three_legs(edge: Edge, a: Rect, b: Rect, x_outer: bool) -> Route:
    """X-Y-X (`x_outer`: out over a's rows, in over b's rows) or Y-X-Y, turning half way; the
    middle leg spreads over as many lanes as the narrower end has, within the span of rows
    (or columns) the two regions cover."""
    (r0, c0), (r1, c1) = a.center, b.center
    if x_outer:
        cm = (c0 + c1) // 2
        path = ((r0, c0), (r0, cm), (r1, cm), (r1, c1))
        ends = (a.row, a.row + a.height), (b.row, b.row + b.height)
        span = (min(a.col, b.col), max(a.col + a.width, b.col + b.width))
        turn = cm
    else:
        rm = (r0 + r1) // 2
        path = ((r0, c0), (rm, c0), (rm, c1), (r1, c1))
        ends = (a.col, a.col + a.width), (b.col, b.col + b.width)
        span = (min(a.row, b.row), max(a.row + a.height, b.row + b.height))
        turn = rm
    lanes = min(hi - lo for lo, hi in ends)
    lo = min(max(span[0], turn - lanes // 2), span[1] - lanes)
    return Route(edge, path, (ends[0], (max(lo, span[0]), min(lo + lanes, span[1])), ends[1]))


def _straight(edge: Edge, a: Rect, b: Rect) -> list[Route]:
    """The straight routes between two regions that share rows (east/west, over the shared rows)
    or columns (north/south, over the shared columns), drawn along the middle of what they share."""
    routes = []
    lo, hi = max(a.row, b.row), min(a.row + a.height, b.row + b.height)
    if lo < hi and a.center[1] != b.center[1]:
        mid = (lo + hi - 1) // 2
        routes.append(Route(edge, ((mid, a.center[1]), (mid, b.center[1])), ((lo, hi),)))
    lo, hi = max(a.col, b.col), min(a.col + a.width, b.col + b.width)
    if lo < hi and a.center[0] != b.center[0]:
        mid = (lo + hi - 1) // 2
        routes.append(Route(edge, ((a.center[0], mid), (b.center[0], mid)), ((lo, hi),)))
    return routes


def _dimension_ordered(edge: Edge, a: Rect, b: Rect, x_first: bool) -> Route:
    """X-then-Y (or Y-then-X) from a's centre to b's: the first segment's lanes are a's rows (or
    columns), the second's b's columns (or rows); a route with one segment is as wide as the
    narrower of the two sides it joins."""
    (r0, c0), (r1, c1) = a.center, b.center
    rows = lambda r: (r.row, r.row + r.height)           # noqa: E731
    cols = lambda r: (r.col, r.col + r.width)            # noqa: E731
    narrower = lambda x, y: min(x, y, key=lambda band: band[1] - band[0])   # noqa: E731
    if x_first:
        path, first, second = ((r0, c0), (r0, c1), (r1, c1)), rows, cols
    else:
        path, first, second = ((r0, c0), (r1, c0), (r1, c1)), cols, rows
    moves_first, moves_second = path[0] != path[1], path[1] != path[2]
    band_first = first(a) if moves_second else narrower(first(a), first(b))
    band_second = second(b) if moves_first else narrower(second(a), second(b))
    return Route(edge, path, (band_first, band_second))
