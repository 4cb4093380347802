"""Place & route, simple version.

Placement: kernels are packed as rectangles on shelves in pipeline order, along a serpentine
(left to right on even shelves, right to left on odd ones) so that consecutive kernels stay
adjacent. Routing: every producer -> consumer edge gets a dimension-ordered (X then Y) Manhattan
route between rectangle centres; the wavelets each edge moves per step are summed per link.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cost import Mapping
from .target import Target


class PlacementError(ValueError):
    """The rectangles do not fit on the fabric."""


@dataclass(frozen=True)
class Rect:
    name: str
    row: int
    col: int
    height: int
    width: int

    @property
    def center(self) -> tuple[int, int]:
        return self.row + self.height // 2, self.col + self.width // 2

    def cells(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    value: str
    wavelets: int        # per step


@dataclass(frozen=True)
class Route:
    """A bundle of `lanes` parallel Manhattan routes along `path` (drawn through the centres):
    a region sends and receives over every row (or column) of cores facing the other one, so
    each link of the bundle carries `edge.wavelets / lanes`."""
    edge: Edge
    path: tuple[tuple[int, int], ...]   # corner points, Manhattan segments between them
    lanes: int = 1

    @property
    def load(self) -> float:
        return self.edge.wavelets / max(self.lanes, 1)

    @property
    def hops(self) -> int:
        return sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(self.path, self.path[1:]))


def free_positions(occupied: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (rows, cols) where a height x width rectangle touches no occupied core,
    found for every position at once with a summed-area table."""
    rows, cols = occupied.shape
    if height > rows or width > cols:
        return np.empty(0, int), np.empty(0, int)
    sat = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    sat[1:, 1:] = occupied.cumsum(0).cumsum(1)
    window = (sat[height:, width:] - sat[:-height, width:] - sat[height:, :-width] + sat[:-height, :-width])
    return np.nonzero(window == 0)


def _nearest_free(occupied, height, width, toward: tuple[float, float]):
    r, c = free_positions(occupied, height, width)
    if r.size == 0:
        return None
    dist = np.abs(r + height / 2 - toward[0]) + np.abs(c + width / 2 - toward[1])
    best = np.lexsort((c, r, dist))[0]
    return int(r[best]), int(c[best])


def place(order: list[str], mappings: dict[str, Mapping], target: Target) -> tuple[Rect, ...]:
    """Greedy placement in pipeline order: each rectangle goes to the free spot whose centre is
    nearest the previous kernel's centre (the first goes to the corner), so the pipeline winds
    across the fabric and consecutive kernels stay adjacent."""
    occupied = np.zeros((target.rows, target.cols), dtype=bool)
    rects: list[Rect] = []
    toward = (0.0, 0.0)
    for name in order:
        m = mappings[name]
        h, w = m.rows, m.width
        if h > target.rows or w > target.cols:
            raise PlacementError(f"kernel {name!r} ({h} x {w} cores) is larger than the "
                                 f"{target.rows} x {target.cols} fabric")
        spot = _nearest_free(occupied, h, w, toward)
        if spot is None:
            used = int(occupied.sum())
            raise PlacementError(f"kernels do not fit on the {target.rows} x {target.cols} fabric: "
                                 f"no free {h} x {w} spot for kernel {name!r} ({used:,} of "
                                 f"{target.cores:,} cores taken)")
        rect = Rect(name, spot[0], spot[1], h, w)
        occupied[rect.cells()] = True
        rects.append(rect)
        toward = (rect.row + h / 2, rect.col + w / 2)
    return tuple(rects)


def wire_length(rects: tuple[Rect, ...], pairs: list[tuple[str, str]]) -> int:
    """Total L1 distance between the centres of connected kernels (each pair once)."""
    where = {r.name: r.center for r in rects}
    return int(sum(abs(where[a][0] - where[b][0]) + abs(where[a][1] - where[b][1]) for a, b in pairs))


def refine(rects: tuple[Rect, ...], pairs: list[tuple[str, str]], target: Target,
           passes: int = 2) -> tuple[Rect, ...]:
    """Local refinement: lift each kernel out and put it back at the free spot nearest the
    centroid of the kernels it talks to, keeping the move only if total wire length falls.
    Sizes (and so the bottleneck) never change."""
    rects = list(rects)
    neighbours: dict[str, set[str]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    for _ in range(passes):
        improved = False
        for i, rect in enumerate(rects):
            near = [r for r in rects if r.name in neighbours.get(rect.name, ())]
            if not near:
                continue
            occupied = np.zeros((target.rows, target.cols), dtype=bool)
            for other in rects:
                if other is not rect:
                    occupied[other.cells()] = True
            centroid = (np.mean([r.center[0] for r in near]), np.mean([r.center[1] for r in near]))
            spot = _nearest_free(occupied, rect.height, rect.width, centroid)
            if spot is None or spot == (rect.row, rect.col):
                continue
            moved = Rect(rect.name, spot[0], spot[1], rect.height, rect.width)
            trial = rects[:i] + [moved] + rects[i + 1:]
            if wire_length(tuple(trial), pairs) < wire_length(tuple(rects), pairs):
                rects, improved = trial, True
        if not improved:
            break
    return tuple(rects)


def route(edges: list[Edge], rects: tuple[Rect, ...]) -> tuple[Route, ...]:
    """X-then-Y route from producer centre to consumer centre for every edge, as a bundle as
    wide as the two regions' facing sides allow."""
    where = {r.name: r for r in rects}
    routes = []
    for e in edges:
        a, b = where[e.src], where[e.dst]
        (r0, c0), (r1, c1) = a.center, b.center
        lanes = min(a.height, b.height) if abs(c1 - c0) >= abs(r1 - r0) else min(a.width, b.width)
        routes.append(Route(e, ((r0, c0), (r0, c1), (r1, c1)), max(1, lanes)))
    return tuple(routes)


def reduction_routes(kernels, mappings: dict, rects: tuple[Rect, ...], target: Target
                     ) -> tuple[Route, ...]:
    """Data-parallel replicas sit side by side; their gradient all-reduce runs as a ring along
    the region's middle row, each hop carrying 2 (r-1)/r of a core's weight tile per step."""
    from .cost import weights_per_core
    where = {r.name: r for r in rects}
    routes = []
    for k in kernels:
        m = mappings[k.name]
        if m.replicas < 2 or not k.param_numel:
            continue
        rect = where[k.name]
        row = rect.row + rect.height // 2
        tile = weights_per_core(k, m)
        load = int(np.ceil(2 * (m.replicas - 1) / m.replicas * tile * m.rows * m.cols))
        for q in range(m.replicas - 1):
            start = rect.col + q * m.cols + m.cols // 2
            edge = Edge(k.name, k.name, f"gradient all-reduce {q}->{q + 1}", load)
            routes.append(Route(edge, ((row, start), (row, start + m.cols))))
    return tuple(routes)


def link_loads(routes: tuple[Route, ...], target: Target) -> tuple[np.ndarray, np.ndarray]:
    """Wavelets per step on each horizontal link (rows, cols-1) and vertical link (rows-1, cols)."""
    horizontal = np.zeros((target.rows, max(target.cols - 1, 0)))
    vertical = np.zeros((max(target.rows - 1, 0), target.cols))
    for rt in routes:
        for (ra, ca), (rb, cb) in zip(rt.path, rt.path[1:]):
            if ra == rb and ca != cb:
                horizontal[ra, min(ca, cb):max(ca, cb)] += rt.load
            elif ca == cb and ra != rb:
                vertical[min(ra, rb):max(ra, rb), ca] += rt.load
    return horizontal, vertical


def occupancy(rects: tuple[Rect, ...], target: Target) -> np.ndarray:
    """Kernel index + 1 per core (0 = free); raises if two rectangles overlap."""
    grid = np.zeros((target.rows, target.cols), dtype=np.int32)
    for i, r in enumerate(rects):
        cells = grid[r.cells()]
        if cells.any():
            raise PlacementError(f"kernel {r.name!r} overlaps another kernel")
        cells[...] = i + 1
    return grid
