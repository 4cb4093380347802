"""The fabric's links: where each route's lanes run, and how many wavelets each link carries.

A link moves one 32-bit wavelet per cycle in each direction between neighbouring cores (Hot Chips
2020), so traffic going east never slows traffic going west. A route leaves its producer over
every boundary core that holds the data, one lane per core, and the load is spread over those
lanes (`placement.Route.bands`): a segment running east or west uses a band of rows, one running
north or south a band of columns, each link of the band carrying wavelets / lanes.

Loads are summed over the fabric with a 2-D difference array per direction (four corner updates
per segment, then two cumulative sums), so a step's link loads cost O(segments + cores) whatever
the width of the bands, and a route's peak is the largest load over its segments' rectangles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECTIONS = ("east", "west", "south", "north")


def segments(route):
    """(direction, rows slice, cols slice, lanes) of each non-empty segment of `route`: the
    rectangle of directed links its lanes use (east/west link j joins columns j and j + 1,
    south/north link i joins rows i and i + 1)."""
    bands = route.bands or ((None, None),) * (len(route.path) - 1)
    for ((ra, ca), (rb, cb)), (lo, hi) in zip(zip(route.path, route.path[1:]), bands):
        if ra == rb and ca != cb:
            rows = slice(ra, ra + 1) if lo is None else slice(lo, hi)
            yield ("east" if cb > ca else "west"), rows, slice(min(ca, cb), max(ca, cb)), \
                rows.stop - rows.start
        elif ca == cb and ra != rb:
            cols = slice(ca, ca + 1) if lo is None else slice(lo, hi)
            yield ("south" if rb > ra else "north"), slice(min(ra, rb), max(ra, rb)), cols, \
                cols.stop - cols.start


@dataclass(frozen=True, eq=False)
class RouteLinks:
    """Routes as rectangles of directed links, built once per plan; a step's link loads are
    then one difference array, whatever share of its wavelets each route carries."""
    direction: np.ndarray     # per segment: index into DIRECTIONS
    box: np.ndarray           # per segment: (row0, row1, col0, col1) of its links
    route: np.ndarray         # per segment: its route
    lanes: np.ndarray         # per segment: the lanes the route's wavelets spread over
    wavelets: np.ndarray      # per route: wavelets per step at full load
    values: tuple[str, ...]   # per route: the graph value it carries
    kernels: tuple[np.ndarray, ...]    # per kernel (plan order): the routes it sends or receives on
    shape: tuple[int, int]    # the fabric

    def loads(self, share=None) -> np.ndarray:
        """(4, rows, cols) wavelets per step on each directed link (`DIRECTIONS` order; the last
        column of east/west and last row of south/north are no link and stay 0), each route
        carrying `share` (routes,) of its wavelets (None: all)."""
        rows, cols = self.shape
        diff = np.zeros((len(DIRECTIONS), rows + 1, cols + 1))
        share = np.ones(len(self.wavelets)) if share is None else np.asarray(share, dtype=np.float64)
        weight = (self.wavelets * share)[self.route] / self.lanes
        r0, r1, c0, c1 = self.box.T
        for r, c, sign in ((r0, c0, 1.0), (r0, c1, -1.0), (r1, c0, -1.0), (r1, c1, 1.0)):
            np.add.at(diff, (self.direction, r, c), sign * weight)
        return np.cumsum(np.cumsum(diff, axis=1), axis=2)[:, :rows, :cols]

    def congestion(self, shares=None, samples: int = 1) -> np.ndarray:
        """(variants, kernels): per sample, the load of the busiest link (in its direction of
        travel) that any of a kernel's routes crosses; `shares` (variants, routes) scales each
        route's wavelets by the share of its rows a variant sends (None: all of them)."""
        shares = np.ones((1, len(self.wavelets))) if shares is None else np.atleast_2d(shares)
        out = np.zeros((shares.shape[0], len(self.kernels)))
        for v, share in enumerate(shares):
            loads = self.loads(share)
            peak = np.zeros(len(self.wavelets))
            for seg, (d, (r0, r1, c0, c1)) in enumerate(zip(self.direction, self.box)):
                peak[self.route[seg]] = max(peak[self.route[seg]], loads[d, r0:r1, c0:c1].max())
            out[v] = [peak[routes].max(initial=0.0) for routes in self.kernels]
        return out / max(samples, 1)


def route_links(routes, kernel_names, target) -> RouteLinks:
    """`RouteLinks` of `routes` (the sample routes, in plan order) for the kernels `kernel_names`."""
    direction, box, route, lanes = [], [], [], []
    for i, rt in enumerate(routes):
        for d, rows, cols, width in segments(rt):
            direction.append(DIRECTIONS.index(d))
            box.append((rows.start, rows.stop, cols.start, cols.stop))
            route.append(i)
            lanes.append(width)
    kernels = tuple(np.array([i for i, rt in enumerate(routes) if name in (rt.edge.src, rt.edge.dst)],
                             dtype=np.int64) for name in kernel_names)
    return RouteLinks(np.array(direction, dtype=np.int64),
                      np.array(box, dtype=np.int64).reshape(-1, 4),
                      np.array(route, dtype=np.int64), np.array(lanes, dtype=np.float64),
                      np.array([rt.edge.wavelets for rt in routes], dtype=np.float64),
                      tuple(rt.edge.value for rt in routes), kernels, (target.rows, target.cols))


def directed_link_loads(routes, target) -> dict[str, np.ndarray]:
    """Wavelets per step on each link, per direction: east/west (rows, cols - 1), south/north
    (rows - 1, cols)."""
    loads = route_links(routes, [], target).loads()
    rows, cols = target.rows, target.cols
    return {"east": loads[0, :, :cols - 1], "west": loads[1, :, :cols - 1],
            "south": loads[2, :rows - 1, :], "north": loads[3, :rows - 1, :]}


def link_loads(routes, target) -> tuple[np.ndarray, np.ndarray]:
    """Wavelets per step on each horizontal link (rows, cols - 1) and vertical link
    (rows - 1, cols), both directions together."""
    loads = directed_link_loads(routes, target)
    return loads["east"] + loads["west"], loads["south"] + loads["north"]
