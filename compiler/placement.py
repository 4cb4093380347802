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
    edge: Edge
    path: tuple[tuple[int, int], ...]   # corner points, Manhattan segments between them

    @property
    def hops(self) -> int:
        return sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(self.path, self.path[1:]))


def place(order: list[str], mappings: dict[str, Mapping], target: Target) -> tuple[Rect, ...]:
    """Serpentine shelf packing in pipeline order; raises PlacementError when a shelf overflows."""
    rects, row, col, shelf_height, direction = [], 0, 0, 0, 1
    for name in order:
        m = mappings[name]
        h, w = m.rows, m.width
        if h > target.rows or w > target.cols:
            raise PlacementError(f"kernel {name!r} ({h} x {w} cores) is larger than the "
                                 f"{target.rows} x {target.cols} fabric")
        fits = col + w <= target.cols if direction > 0 else col - w >= 0
        if not fits:
            row, shelf_height, direction = row + shelf_height, 0, -direction
            col = 0 if direction > 0 else target.cols
        if row + h > target.rows:
            raise PlacementError(f"kernels do not fit on the {target.rows} x {target.cols} "
                                 f"fabric (ran out of rows at kernel {name!r})")
        left = col if direction > 0 else col - w
        rects.append(Rect(name, row, left, h, w))
        col = left + w if direction > 0 else left
        shelf_height = max(shelf_height, h)
    return tuple(rects)


def route(edges: list[Edge], rects: tuple[Rect, ...]) -> tuple[Route, ...]:
    """X-then-Y route from producer centre to consumer centre for every edge."""
    where = {r.name: r for r in rects}
    routes = []
    for e in edges:
        (r0, c0), (r1, c1) = where[e.src].center, where[e.dst].center
        routes.append(Route(e, ((r0, c0), (r0, c1), (r1, c1))))
    return tuple(routes)


def link_loads(routes: tuple[Route, ...], target: Target) -> tuple[np.ndarray, np.ndarray]:
    """Wavelets per step on each horizontal link (rows, cols-1) and vertical link (rows-1, cols)."""
    horizontal = np.zeros((target.rows, max(target.cols - 1, 0)))
    vertical = np.zeros((max(target.rows - 1, 0), target.cols))
    for rt in routes:
        for (ra, ca), (rb, cb) in zip(rt.path, rt.path[1:]):
            if ra == rb and ca != cb:
                horizontal[ra, min(ca, cb):max(ca, cb)] += rt.edge.wavelets
            elif ca == cb and ra != rb:
                vertical[min(ra, rb):max(ra, rb), ca] += rt.edge.wavelets
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
