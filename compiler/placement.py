"""Place & route.

Placement: kernels are placed as rectangles in pipeline order, each at the free spot nearest the
previous kernel (a greedy winding path over the fabric; `compiler.free_space` finds the
spots), then refined by moving kernels toward the centroid of the kernels they talk to while
total wire length falls (compile_plan weighs each pair by the wavelets it carries, so the
length is the traffic x distance the links carry; the contest counts pairs alike). (`compiler.packing`
chooses between this placer and a shape-choosing shelf packer; both compile_plan and the ISPD
contest solver go through it.) The routes between the rectangles (`Route`: a bundle of parallel
lanes, one per boundary core) are laid by `compiler.routing`; `compiler.links` sums their loads
per link.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from .cost import allreduce_share
from .errors import PlacementError
from .free_space import FreeSpace
from .kernels import kind_of
from .mapping import Mapping
from .target import Target


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
    """A bundle of parallel Manhattan lanes along `path` (drawn through the centres). `bands`
    has, per segment of the path, the [first, last) row (an east/west segment) or column (a
    north/south one) its lanes run along: one lane per boundary core that holds the data, and
    each link of the band carries `edge.wavelets / lanes` (`compiler.links`). No bands: the
    centre line alone, one lane."""
    edge: Edge
    path: tuple[tuple[int, int], ...]   # corner points, Manhattan segments between them
    bands: tuple[tuple[int, int], ...] = ()

    @property
    def lanes(self) -> int:
        """The lanes of the route's narrowest segment."""
        widths = [hi - lo for (lo, hi), (a, b) in zip(self.bands, zip(self.path, self.path[1:]))
                  if a != b]
        return min(widths, default=1)

    @property
    def load(self) -> float:
        """Wavelets per step on each link of the narrowest segment."""
        return self.edge.wavelets / self.lanes

    @property
    def hops(self) -> int:
        return sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(self.path, self.path[1:]))


def free_mask(occupied: np.ndarray, height: int, width: int) -> np.ndarray:
    """Where a height x width rectangle's top-left corner touches no occupied core: a
    (rows - height + 1) x (cols - width + 1) boolean grid, found for every position at once with
    a summed-area table (int32: a wafer has far fewer than 2**31 cores)."""
    rows, cols = occupied.shape
    if height > rows or width > cols:
        return np.zeros((0, 0), dtype=bool)
    sat = np.zeros((rows + 1, cols + 1), dtype=np.int32)
    np.cumsum(occupied, axis=0, dtype=np.int32, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    window = (sat[height:, width:] - sat[:-height, width:]
              - sat[height:, :-width] + sat[:-height, :-width])
    return window == 0


def free_positions(occupied: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (rows, cols) where a height x width rectangle touches no occupied core."""
    return np.nonzero(free_mask(occupied, height, width))


def place(order: list[str], mappings: dict[str, Mapping], target: Target,
          rotate: bool | Collection[str] = False) -> tuple[Rect, ...]:
    """`place_shapes` on each mapping's region (rows x cols * replicas)."""
    return place_shapes(order, {n: (mappings[n].rows, mappings[n].width) for n in order},
                        target, rotate)


def place_shapes(order: list[str], sizes: dict[str, tuple[int, int]], target: Target,
                 rotate: bool | Collection[str] = False) -> tuple[Rect, ...]:
    """Greedy placement in pipeline order: each (height, width) rectangle goes to the free spot
    whose centre is nearest the previous kernel's centre (the first goes to the corner), so the
    pipeline winds across the fabric and consecutive kernels stay adjacent. A kernel that may
    rotate (`rotate` True for all, or the names that may) is also tried turned by 90 degrees and
    takes that spot when it is nearer (or the only one); its Rect then has the swapped shape."""
    space = FreeSpace(target.rows, target.cols)
    rects: list[Rect] = []
    toward = (0.0, 0.0)
    for name in order:
        h, w = sizes[name]
        turns = rotate if isinstance(rotate, bool) else name in rotate
        fits = h <= target.rows and w <= target.cols
        if turns and h != w and w <= target.rows and h <= target.cols:
            spot = space.nearest(h, w, toward) if fits else None
            turned = space.nearest(w, h, toward)

            def gap(s, hh, ww):
                return abs(s[0] + hh / 2 - toward[0]) + abs(s[1] + ww / 2 - toward[1])
            if turned is not None and (spot is None or gap(turned, w, h) < gap(spot, h, w)):
                spot, h, w = turned, w, h
        elif not fits:
            raise PlacementError(f"kernel {name!r} ({h} x {w} cores) is larger than the "
                                 f"{target.rows} x {target.cols} fabric")
        else:
            spot = space.nearest(h, w, toward)
        if spot is None:
            used = space.used
            raise PlacementError(f"kernels do not fit on the {target.rows} x {target.cols} fabric: "
                                 f"no free {h} x {w} spot for kernel {name!r} ({used:,} of "
                                 f"{target.cores:,} cores taken)")
        rect = Rect(name, spot[0], spot[1], h, w)
        space.add(rect)
        rects.append(rect)
        toward = (rect.row + h / 2, rect.col + w / 2)
    return tuple(rects)


def wire_length(rects: tuple[Rect, ...], pairs: list[tuple[str, str]]) -> int:
    """Total L1 distance between the centres of connected kernels (each pair once)."""
    where = {r.name: r.center for r in rects}
    return int(sum(abs(where[a][0] - where[b][0]) + abs(where[a][1] - where[b][1]) for a, b in pairs))


def centroid(points: list[tuple[tuple[int, int], float]]) -> tuple[float, float]:
    """The weighted mean of (point, weight) pairs: where a kernel is pulled by the ones it
    talks to (their centres, weighed by their traffic)."""
    total = sum(w for _, w in points)
    return (sum(p[0] * w for p, w in points) / total, sum(p[1] * w for p, w in points) / total)


def refine(rects: tuple[Rect, ...], pairs: list[tuple[str, str]], target: Target,
           passes: int = 2, weights: dict[tuple[str, str], float] | None = None
           ) -> tuple[Rect, ...]:
    """Local refinement: lift each kernel out and put it back at the free spot nearest the
    centroid of the kernels it talks to, keeping the move only if total wire length falls.
    Sizes (and so the bottleneck) never change. A move changes only the wire of the moved
    kernel's pairs, so that is all it measures (integers: the same sum as `wire_length`).
    `weights` (pair -> weight, e.g. the wavelets it carries; None: 1 each) weighs each pair's
    distance and its pull on the centroid, so a kernel goes where its heavy traffic is, not
    where most of its light routes lead (a mask sent to every layer)."""
    rects = list(rects)
    pull: dict[str, dict[str, float]] = {}      # per kernel, the kernels it talks to: weight
    others: dict[str, list[tuple[str, float]]] = {}   # per kernel, each pair's other end, weight
    for a, b in pairs:
        w = 1 if weights is None else weights[a, b]
        pull.setdefault(a, {})[b] = w
        pull.setdefault(b, {})[a] = w
        if a != b:
            others.setdefault(a, []).append((b, w))
            others.setdefault(b, []).append((a, w))
    space = FreeSpace(target.rows, target.cols)
    for r in rects:
        space.add(r)
    where = {r.name: r.center for r in rects}

    def wire(name, center):
        return sum(w * (abs(center[0] - where[o][0]) + abs(center[1] - where[o][1]))
                   for o, w in others.get(name, ()))
    for _ in range(passes):
        improved = False
        for i, rect in enumerate(rects):
            near = [(where[o], w) for o, w in pull.get(rect.name, {}).items()]
            if not near:
                continue
            space.remove(rect)                      # lifted out: its own cores are free
            spot = space.nearest(rect.height, rect.width, centroid(near))
            if spot is not None and spot != (rect.row, rect.col):
                moved = Rect(rect.name, spot[0], spot[1], rect.height, rect.width)
                if wire(rect.name, moved.center) < wire(rect.name, rect.center):
                    rects[i], rect, improved = moved, moved, True
                    where[rect.name] = rect.center
            space.add(rect)
        if not improved:
            break
    return tuple(rects)


REDUCTION = "gradient all-reduce"     # the value every reduction route's edge is named after


def is_sample_route(rt: Route) -> bool:
    """A route samples travel, not a replica's gradient all-reduce."""
    return not rt.edge.value.startswith(REDUCTION)


def reduction_routes(kernels, mappings: dict, rects: tuple[Rect, ...], target: Target
                     ) -> tuple[Route, ...]:
    """Data-parallel replicas sit side by side; their gradient all-reduce runs as a ring per
    row of cores (drawn along the middle row): each core sends 2 (r-1)/r of its weight tile to
    its twin in the next replica, so a row's boundary link carries cols times that per step."""
    where = {r.name: r for r in rects}
    routes = []
    for k in kernels:
        m = mappings[k.name]
        if m.replicas < 2 or not k.param_numel:
            continue
        rect = where[k.name]
        row = rect.row + rect.height // 2
        tile = kind_of(k).weights_per_core(k, m)
        load = int(np.ceil(allreduce_share(tile * m.rows * m.cols, m.replicas)))
        for q in range(m.replicas - 1):
            start = rect.col + q * m.cols + m.cols // 2
            edge = Edge(k.name, k.name, f"{REDUCTION} {q}->{q + 1}", load)
            routes.append(Route(edge, ((row, start), (row, start + m.cols)),
                                ((rect.row, rect.row + m.rows),)))
    return tuple(routes)


def occupancy(rects: tuple[Rect, ...], target: Target) -> np.ndarray:
    """Kernel index + 1 per core (0 = free); raises if two rectangles overlap."""
    grid = np.zeros((target.rows, target.cols), dtype=np.int32)
    for i, r in enumerate(rects):
        cells = grid[r.cells()]
        if cells.any():
            raise PlacementError(f"kernel {r.name!r} overlaps another kernel")
        cells[...] = i + 1
    return grid
