"""One packer for every kernel library: at a target time, choose each kernel's shape and pack
the rectangles on the fabric.

A kernel library supplies option lists through the search protocol (`mapping.rows`,
`mapping.width`, `area`, `stage_time(samples)`, and optionally `rotatable`: the contest's
kernels may turn by 90 degrees, ours may not, since rows and columns of a Mapping mean
different loop dimensions). `shapes_of` turns them into `Shape`s; nothing below knows which
library they came from.

`pack(items, limit, target, order)` returns every packing of these two that fits:
1. the greedy nearest-free placer (`placement.place_shapes`) on the cheapest shape per kernel at
   `limit` (exactly the choice the min-bottleneck search makes there), in pipeline order;
2. the shape-choosing shelf packer (`shelf_pack`), its fill orders in turn until one fits: at
   `limit` every kernel may take any of its shapes with time <= limit, so it picks the shapes.
Which packing is best depends on the caller's measure (the contest: wire length after
`placement.refine`, which never changes sizes or the bottleneck; compile_plan: the full estimate
with congestion), so the caller keeps the best: the contest refines each and compares,
compile_plan scores them among its finalists and refines the best.
`search_and_pack` is the whole flow (issue 8): the exact min-bottleneck search gives T*; `pack`
at T*; if nothing fits, `search.least_packable` relaxes the target over the candidate times.

The shelf packer: the fabric is cut into horizontal shelves. For a shelf of height H a kernel
costs the least width among its (oriented) shapes no taller than H. Shelves are opened one at a
time: for each candidate H (the heights of the remaining kernels' shapes) the shelf is filled
greedily, and the H whose shelf holds the most useful area (the kernels' least areas at the
target) per row is kept; once the remaining kernels fit one shelf, the least such height closes
the packing. Space under the shorter kernels of a shelf is left free (no nested shelves). Along
each shelf kernels follow the pipeline order, snaking, so neighbours stay close.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PlacementError
from .placement import Rect, place_shapes
from .search import Choice, candidate_times, least_packable, min_bottleneck
from .target import Target

SHELF_STRATEGIES = (0, 1, 2)      # fill orders: by use of space, by area, by width
_HUGE = 1 << 40


@dataclass(frozen=True)
class Shape:
    """One way to lay a kernel: a height x width rectangle that takes `time` per sample."""
    height: int
    width: int
    time: float
    rotatable: bool = False
    payload: object = None        # the library's option, handed back with the packing

    @property
    def area(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class Packing:
    chosen: dict                  # kernel name -> Shape
    rects: tuple                  # placement.Rect per kernel, in pipeline order
    method: str                   # which attempt packed ("greedy", "shelf-0", "shelf-1", ...)

    @property
    def bottleneck(self) -> float:
        return max(s.time for s in self.chosen.values())

    def choice(self) -> Choice:
        """The packed shapes as a search Choice over the library's options."""
        return Choice({n: s.payload for n, s in self.chosen.items()}, self.bottleneck,
                      sum(s.area for s in self.chosen.values()))


def shapes_of(option_lists: dict, samples: int) -> dict[str, list[Shape]]:
    """Library options (the search protocol) -> Shapes, in the same order. Kernels that share
    one option list (repeated layers) share one Shape list, so the packers work each out once."""
    made: dict[int, list[Shape]] = {}
    for opts in option_lists.values():
        if id(opts) not in made:
            made[id(opts)] = [Shape(o.mapping.rows, o.mapping.width, o.stage_time(samples),
                                    bool(getattr(o, "rotatable", False)), o) for o in opts]
    return {n: made[id(opts)] for n, opts in option_lists.items()}


def cheapest(shapes: list[Shape], limit: float) -> Shape | None:
    """Smallest-area shape within `limit` (ties: faster, then first), as `search.cheapest_at`."""
    fitting = [s for s in shapes if s.time <= limit]
    return min(fitting, key=lambda s: (s.area, s.time)) if fitting else None


def pack(items: dict[str, list[Shape]], limit: float, target: Target,
         order: list[str] | None = None) -> tuple[Packing, ...] | None:
    """Choose a shape per kernel with time <= `limit` and place them all without overlap inside
    the fabric: every attempt that fits (the greedy placer in pipeline order, the shelf packer);
    None when neither does. The caller keeps the best by its own measure."""
    order = list(order or items)
    least = {n: cheapest(items[n], limit) for n in order}
    if any(s is None for s in least.values()) or sum(s.area for s in least.values()) > target.cores:
        return None
    found = tuple(p for p in (_greedy(least, order, target), _shelves(items, limit, target, order))
                  if p is not None)
    return found or None


def _greedy(least: dict, order: list[str], target: Target) -> Packing | None:
    """The nearest-free placer on the given shapes; None if it runs out of room."""
    sizes = {n: (s.height, s.width) for n, s in least.items()}
    try:
        rects = place_shapes(order, sizes, target, {n for n, s in least.items() if s.rotatable})
    except PlacementError:
        return None
    return Packing(least, rects, "greedy")


def _shelves(items, limit, target, order):
    """The shelf packer with each fill order in turn; the first that fits."""
    kernels = _kernels(items, limit, target.rows, target.cols)
    for strategy in SHELF_STRATEGIES:
        got = _shelf_pack(kernels, target.rows, target.cols, strategy, order or sorted(items))
        if got is not None:
            chosen, placed = got
            return Packing(chosen, tuple(placed[n] for n in order), f"shelf-{strategy}")
    return None


@dataclass(frozen=True)
class Placed:
    t_star: float                 # the exact search's least bottleneck (area bound only)
    least_area: int               # the cores its choice takes
    packings: tuple | None        # every Packing at the least target that packs; None: none does
    tries: int                    # packings tried, T* included


def search_and_pack(option_lists: dict, target: Target, samples: int,
                    order: list[str] | None = None, below: int = 0,
                    deadline: float | None = None) -> Placed | None:
    """Exact min-bottleneck search, `pack` at T*, then relax over the candidate times above it
    (`search.least_packable`, with `below` and `deadline` as there). None when the least areas
    exceed the fabric at every target."""
    best = min_bottleneck(option_lists, target.cores, samples)
    if best is None:
        return None
    items = shapes_of(option_lists, samples)
    packed = pack(items, best.bottleneck, target, order)
    tries = 1
    if packed is None:
        times = candidate_times(option_lists, samples)
        _, packed, more = least_packable(times, times.index(best.bottleneck) + 1,
                                         lambda t: pack(items, t, target, order),
                                         below=below, deadline=deadline)
        tries += more
    return Placed(best.bottleneck, best.area, packed, tries)


class _Kernel:
    """One kernel's shapes within the target, oriented both ways where allowed, sorted by
    height, with the least width (and its shape) among those no taller than each height."""
    __slots__ = ("hs", "ws", "shapes", "least", "prefix_w", "prefix_i")

    def __init__(self, shapes: list[Shape], limit: float, rows: int, cols: int):
        fit = [s for s in shapes if s.time <= limit]
        self.least = min(s.area for s in fit) if fit else None
        cand = []
        for s in fit:
            if s.height <= rows and s.width <= cols:
                cand.append((s.height, s.width, s))
            if s.rotatable and s.height != s.width and s.width <= rows and s.height <= cols:
                cand.append((s.width, s.height, s))
        cand.sort(key=lambda c: (c[0], c[1]))
        self.hs = np.array([c[0] for c in cand], dtype=np.int64)
        self.ws = np.array([c[1] for c in cand], dtype=np.int64)
        self.shapes = [c[2] for c in cand]
        order = np.arange(len(cand))
        if cand:
            # running minimum of the width; first index reaching it
            run = np.minimum.accumulate(self.ws)
            first = np.where(np.r_[True, run[1:] < run[:-1]], order, 0)
            self.prefix_w, self.prefix_i = run, np.maximum.accumulate(first)
        else:
            self.prefix_w = self.prefix_i = order

    def width_at(self, heights: np.ndarray) -> np.ndarray:
        """Least width per shelf height (a huge number where nothing fits)."""
        j = np.searchsorted(self.hs, heights, side="right") - 1
        out = np.full(len(heights), _HUGE, dtype=np.int64)
        ok = j >= 0
        out[ok] = self.prefix_w[j[ok]]
        return out

    def pick(self, height: int) -> tuple[int, int, Shape]:
        i = int(self.prefix_i[int(np.searchsorted(self.hs, height, side="right")) - 1])
        return int(self.hs[i]), int(self.ws[i]), self.shapes[i]


def _kernels(items: dict[str, list[Shape]], limit: float, rows: int, cols: int) -> dict:
    """A `_Kernel` per kernel at `limit`, one per distinct Shape list (repeated layers share)."""
    made: dict[int, _Kernel] = {}
    for shapes in items.values():
        if id(shapes) not in made:
            made[id(shapes)] = _Kernel(shapes, limit, rows, cols)
    return {n: made[id(shapes)] for n, shapes in items.items()}


def _shelf(names, kernels, heights, cols, strategy):
    """(height, kernels) of the next shelf: the one height that closes the packing, else the
    height whose greedy fill (in the strategy's order) holds the most least-area per row."""
    widths: dict[int, np.ndarray] = {}               # per distinct _Kernel
    for n in names:
        if id(kernels[n]) not in widths:
            widths[id(kernels[n])] = kernels[n].width_at(heights)
    W = np.stack([widths[id(kernels[n])] for n in names])              # kernels x heights
    fits_all = W.sum(axis=0) <= cols
    if fits_all.any():
        return int(heights[np.argmax(fits_all)]), list(names)
    least = np.array([kernels[n].least for n in names], dtype=np.float64)
    use = least[:, None] / (W * heights[None, :])                       # use of its space
    best = None
    for hi, H in enumerate(heights):
        col, e = W[:, hi], use[:, hi]
        ok = col <= cols
        if not ok.any():
            continue
        if strategy == 0:
            key = np.lexsort((-least, -e))
        elif strategy == 1:
            key = np.lexsort((-e, -least * (e > 0.9)))
        else:
            key = np.lexsort((-e, -col))
        chosen = _fill(key, col, cols)
        score = least[chosen].sum() / (H * cols)
        if best is None or score > best[0] + 1e-12:
            best = (score, int(H), [names[i] for i in chosen])
    return None if best is None else best[1:]


def _fill(key: np.ndarray, col: np.ndarray, cols: int) -> list[int]:
    """The shelf's greedy fill: in `key` order, each kernel whose width `col` still fits the
    `cols` left. Kernels of equal width in a row of `key` fill alike, so each such run takes
    as many of its kernels, in order, as fit (the same picks as one kernel at a time)."""
    if not len(key):
        return []
    ordered = col[key]
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    used, chosen = 0, []
    for start, stop in zip([0] + starts.tolist(), starts.tolist() + [len(key)]):
        width = int(ordered[start])
        take = min(stop - start, (cols - used) // width) if width <= cols else 0
        if take > 0:
            chosen += key[start:start + take].tolist()
            used += take * width
    return chosen


def shelf_pack(items: dict[str, list[Shape]], limit: float, rows: int, cols: int,
               strategy: int = 0, order: list[str] | None = None):
    """Pack every kernel at target time `limit` into rows x cols shelves; returns
    ({name: Shape}, {name: Rect}) or None when the shelves overflow the fabric. `order` (the
    pipeline order) sets the kernels' order along each shelf."""
    return _shelf_pack(_kernels(items, limit, rows, cols), rows, cols, strategy,
                       order or sorted(items))


def _shelf_pack(kernels: dict, rows: int, cols: int, strategy: int, order: list[str]):
    """`shelf_pack` on the kernels' `_Kernel`s."""
    if any(k.least is None or not len(k.hs) for k in kernels.values()):
        return None
    rank = {n: i for i, n in enumerate(order)}
    remaining, y, shelves = set(kernels), 0, 0
    chosen, rects = {}, {}
    while remaining:
        heights = np.unique(np.concatenate([kernels[n].hs for n in remaining]))
        heights = heights[heights <= rows - y]
        got = _shelf(sorted(remaining), kernels, heights, cols, strategy) if heights.size else None
        if got is None:
            return None
        H, names = got
        x = 0
        for n in sorted(names, key=lambda n: rank.get(n, 0), reverse=shelves % 2 == 1):
            h, w, s = kernels[n].pick(H)
            chosen[n], rects[n] = s, Rect(n, y, x, h, w)
            x += w
            remaining.discard(n)
        y, shelves = y + H, shelves + 1
    return chosen, rects
