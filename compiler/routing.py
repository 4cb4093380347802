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
Ebeling, FPGA 1995) until a whole pass moves no route. A route moves only to a candidate whose
busiest link is strictly lighter than its own, so each move lowers the fabric's sorted vector of
link loads (no link gets as heavy as the route's old busiest one, which gets lighter) and the
passes end (bottleneck routing games have this finite improvement property: Banner & Orda, IEEE
JSAC 2007). A route alone on the fabric thus takes the candidate with the most lanes at its
narrowest; one that would pile onto a band other routes load turns another way, and the X-Y-X
and Y-X-Y candidates turn in the middle or hug either region, so a bundle has parallel
corridors to move to. Two regions one above the other (side by side) share only their columns
(rows), so their straight route has as many lanes as those; going around either side, a bundle
leaves and enters over their long sides instead, one lane per boundary core that holds the data,
at twice the distance to its corridor in hops (`Plan.latency` charges centre to centre).
`Router` keeps the routes and their loads, so that a region moved afterwards (`compiler.relieve`)
has only its own routes laid again, and the rip-up loop then runs from there.
"""
from __future__ import annotations

import copy

import numpy as np

from .links import DIRECTIONS, segments
from .placement import Edge, Rect, Route


def route(edges: list[Edge], rects: tuple[Rect, ...], fabric: tuple[int, int] | None = None
          ) -> tuple[Route, ...]:
    """A route for every edge (in `edges` order), laid heaviest first on the candidate whose
    busiest link carries the fewest wavelets with it added (ties: more lanes at the narrowest,
    then the order of `candidates`), then each ripped up and laid again, pass after pass, until
    no route finds a candidate strictly lighter than its own (see the module docstring).
    `fabric`: the (rows, cols) routes may use (None: as far as the rectangles reach)."""
    return Router(edges, rects, fabric).routes


class Router:
    """The routes of `route` and the link loads they make, kept so that a region can move
    (`moved`) and only what that changes is laid again: the moved region's routes, then any
    route whose candidates cross a link whose load changed (the rip-up loop of `route`)."""

    def __init__(self, edges: list[Edge], rects: tuple[Rect, ...],
                 fabric: tuple[int, int] | None = None):
        self.edges, self.where = edges, {r.name: r for r in rects}
        self.fabric = fabric or extent(rects)
        self.options = [self._options(e) for e in edges]
        self.loads, self.changed = LinkLoads(rects, self.fabric), Changes()
        self.reach = [self.changed.reach(opts) for opts in self.options]
        self.chosen: list[Laid | None] = [None] * len(edges)
        self.laid_at = [0] * len(edges)     # the changes already made when each was last laid
        self.order = sorted(range(len(edges)), key=lambda i: -edges[i].wavelets)
        self._lay()

    def _options(self, e: Edge) -> list[Laid]:
        return [Laid(rt) for rt in candidates(e, self.where[e.src], self.where[e.dst], self.fabric)]

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(laid.route for laid in self.chosen)

    def peaks(self) -> np.ndarray:
        """(edges,) wavelets per step on the busiest link of each route (all routes' loads)."""
        loads = self.loads.loads
        return np.array([max((loads[d, rows, cols].max() for d, rows, cols, _ in laid.bands),
                             default=0.0) for laid in self.chosen])

    def moved(self, rect: Rect) -> "Router":
        """A copy with region `rect.name` at `rect` (the same shape or not): its routes are
        taken off, their candidates remade, and they are laid again against the others (the
        rip-up loop among themselves; `settled` lets every other route move as well)."""
        new = copy.copy(self)
        new.where = {**self.where, rect.name: rect}
        new.loads, new.changed = copy.deepcopy(self.loads), copy.deepcopy(self.changed)
        new.options, new.reach = list(self.options), list(self.reach)
        new.chosen, new.laid_at = list(self.chosen), list(self.laid_at)
        mine = [i for i in self.order if rect.name in (self.edges[i].src, self.edges[i].dst)]
        for i in mine:
            new.loads.add(new.chosen[i], sign=-1.0)
            new.changed.log(new.chosen[i])
            new.options[i] = new._options(self.edges[i])
            new.reach[i] = new.changed.reach(new.options[i])
            new.chosen[i] = None
        new._lay(mine)
        return new

    def settled(self) -> "Router":
        """Itself, after the rip-up loop has run over every route until none moves."""
        self._lay(self.order)
        return self

    def _lay(self, order: list[int] | None = None) -> None:
        """Lay every unlaid route of `order` (indices, heaviest first; None: all), then rip
        them up and lay them again until none moves."""
        loads, changed, chosen = self.loads, self.changed, self.chosen
        moved = True
        while moved:
            moved = False
            for i in self.order if order is None else order:
                old = chosen[i]
                if old is not None and not changed.touch(self.reach[i], self.laid_at[i]):
                    continue        # no link its candidates use changed: it would stay where it is
                self.laid_at[i] = len(changed)
                if old is not None:
                    loads.add(old, sign=-1.0)
                # a laid route moves only to a candidate strictly lighter than its own place
                below = np.inf if old is None else loads.peak_with(old) * (1 - 1e-9)
                best = loads.lightest(self.options[i], below)
                if best is not None:
                    chosen[i], moved = best, True
                    changed.log(best, old)
                loads.add(chosen[i])


def candidates(edge: Edge, a: Rect, b: Rect, fabric: tuple[int, int] | None = None
               ) -> list[Route]:
    """The routes `edge` may take from region a to region b, in order of preference on a tie:
    X-Y, Y-X, straight, then X-Y-X and Y-X-Y with the middle leg half way, hugging a's side,
    hugging b's, or, where the two regions share columns (rows), around them on either side
    within `fabric` (rows, cols; None: as far as a and b reach)."""
    fabric = fabric or extent((a, b))
    three = {}
    for where in ("middle", "source", "target", "around-low", "around-high"):
        for x_outer in (True, False):
            rt = _three_legs(edge, a, b, x_outer, where, fabric[1] if x_outer else fabric[0])
            if rt is not None:
                three.setdefault((rt.path, rt.bands), rt)
    return ([_dimension_ordered(edge, a, b, True), _dimension_ordered(edge, a, b, False)]
            + _straight(edge, a, b) + list(three.values()))


def extent(rects) -> tuple[int, int]:
    """(rows, cols) up to the farthest rectangle's far edge."""
    return (max((r.row + r.height for r in rects), default=0),
            max((r.col + r.width for r in rects), default=0))


class Laid:
    """A candidate route with its bands as (direction index, rows, cols, wavelets per link)."""

    def __init__(self, rt: Route):
        self.route, self.lanes = rt, rt.lanes
        self.bands = [(DIRECTIONS.index(d), rows, cols, rt.edge.wavelets / lanes)
                      for d, rows, cols, lanes in segments(rt)]


class LinkLoads:
    """Wavelets per step on every directed link of the area the rectangles span, as routes are
    added (the dense counterpart of `links.RouteLinks`, which sums a finished plan's)."""

    def __init__(self, rects: tuple[Rect, ...], fabric: tuple[int, int] | None = None):
        rows, cols = fabric or extent(rects)
        self.loads = np.zeros((len(DIRECTIONS), rows + 1, cols + 1))

    def peak_with(self, laid: Laid) -> float:
        """The busiest link of the route's bands once its own wavelets are added."""
        return max((self.loads[d, rows, cols].max() + per_link
                    for d, rows, cols, per_link in laid.bands), default=0.0)

    def lightest(self, options: list[Laid], below: float = np.inf) -> Laid | None:
        """The option whose busiest link, with it added, carries the fewest wavelets (ties: more
        lanes, then the first), among those below `below`; None if none is."""
        best, bound = None, (below, -np.inf)
        for laid in options:
            key = self._key_under(laid, bound)
            if key is not None:
                best, bound = laid, key
        return best

    def _key_under(self, laid: Laid, bound: tuple) -> tuple | None:
        """(peak_with, -lanes) of `laid` if it is below `bound`, else None: a candidate is
        dropped at its first band that reaches the bound (branch and bound)."""
        peak = 0.0
        for d, rows, cols, per_link in laid.bands:
            peak = max(peak, float(self.loads[d, rows, cols].max()) + per_link)
            if (peak, -laid.lanes) >= bound:
                return None
        return (peak, -laid.lanes) if (peak, -laid.lanes) < bound else None

    def add(self, laid: Laid, sign: float = 1.0) -> None:
        """Lay the route's wavelets on its bands (`sign` -1: take them off again)."""
        for d, rows, cols, per_link in laid.bands:
            self.loads[d, rows, cols] += sign * per_link


class Changes:
    """The rectangles of directed links whose loads routes changed, in order, so a route is
    laid again only when a link one of its candidates uses has changed since it was last laid
    (the loads its candidates would meet, hence its choice, are otherwise the same)."""

    def __init__(self):
        self.boxes = np.zeros((0, 5), dtype=np.int64)     # direction, row0, row1, col0, col1
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def reach(options: list[Laid]) -> np.ndarray:
        """(directions, 4): per direction, the box (row0, row1, col0, col1) that holds every
        band the candidates run that way (empty: 0, 0, 0, 0)."""
        box = np.zeros((len(DIRECTIONS), 4), dtype=np.int64)
        for d, rows, cols, _ in (band for laid in options for band in laid.bands):
            here = (rows.start, rows.stop, cols.start, cols.stop)
            box[d] = here if not box[d].any() else (min(box[d, 0], here[0]), max(box[d, 1], here[1]),
                                                    min(box[d, 2], here[2]), max(box[d, 3], here[3]))
        return box

    def log(self, *laids: Laid | None) -> None:
        """The bands of the routes laid or taken off."""
        new = [(d, rows.start, rows.stop, cols.start, cols.stop)
               for laid in laids if laid is not None for d, rows, cols, _ in laid.bands]
        if self.size + len(new) > len(self.boxes):
            grown = np.zeros((2 * (self.size + len(new)), 5), dtype=np.int64)
            grown[:self.size] = self.boxes[:self.size]
            self.boxes = grown
        self.boxes[self.size:self.size + len(new)] = np.array(new, dtype=np.int64).reshape(-1, 5)
        self.size += len(new)

    def touch(self, reach: np.ndarray, since: int) -> bool:
        """Whether a change logged from `since` on overlaps `reach` in its direction."""
        d, r0, r1, c0, c1 = self.boxes[since:self.size].T
        box = reach[d]
        return bool(((r0 < box[:, 1]) & (box[:, 0] < r1) & (c0 < box[:, 3]) & (box[:, 2] < c1)).any())


def _three_legs(edge: Edge, a: Rect, b: Rect, x_outer: bool, where: str = "middle",
                limit: int = 0) -> Route | None:
    """X-Y-X (`x_outer`: out over a's rows, in over b's rows) or Y-X-Y. The middle leg spreads
    over as many lanes as the narrower end has. It turns half way (`where` "middle", within the
    span of columns (rows) the two regions cover), or runs just outside a's side ("source") or
    b's side ("target") facing the other: a bundle's parallel corridors; None where that
    corridor's centre line is not between the two centres (the route would not be shortest).
    Where the regions share columns (rows), so that no corridor runs between them, it may go
    around them, just past their low ("around-low") or high side ("around-high"), if that is
    on the fabric (`limit`: its columns (rows)); the route then enters over b's long sides."""
    (r0, c0), (r1, c1) = a.center, b.center
    if x_outer:
        ends = (a.row, a.row + a.height), (b.row, b.row + b.height)
        sides = (a.col, a.col + a.width), (b.col, b.col + b.width)
        start, stop = c0, c1
    else:
        ends = (a.col, a.col + a.width), (b.col, b.col + b.width)
        sides = (a.row, a.row + a.height), (b.row, b.row + b.height)
        start, stop = r0, r1
    span = (min(sides[0][0], sides[1][0]), max(sides[0][1], sides[1][1]))
    lanes = min(hi - lo for lo, hi in ends)
    ahead = stop >= start             # b lies toward higher columns (rows)
    lo = {"middle": (start + stop) // 2 - lanes // 2,
          "source": sides[0][1] if ahead else sides[0][0] - lanes,
          "target": sides[1][0] - lanes if ahead else sides[1][1],
          "around-low": span[0] - lanes, "around-high": span[1]}[where]
    turn = (start + stop) // 2 if where == "middle" else lo + lanes // 2
    if where.startswith("around"):
        shared = max(sides[0][0], sides[1][0]) < min(sides[0][1], sides[1][1])
        facing = (r0 != r1) if x_outer else (c0 != c1)       # one above the other (side by side)
        if not (shared and facing) or lo < 0 or lo + lanes > limit:
            return None
        band = (lo, lo + lanes)
    elif not min(start, stop) <= turn <= max(start, stop):
        return None
    else:
        lo = max(span[0], min(lo, span[1] - lanes))
        band = (lo, min(lo + lanes, span[1]))
    path = (((r0, c0), (r0, turn), (r1, turn), (r1, c1)) if x_outer
            else ((r0, c0), (turn, c0), (turn, c1), (r1, c1)))
    return Route(edge, path, (ends[0], band, ends[1]))


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
