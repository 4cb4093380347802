"""Solve a contest instance with the compiler's own search and placer.

1. Balance: `compiler.search.min_bottleneck` over the contest options gives T*, the least time at
   which the sum of the least areas fits the fabric (exact for the option lists; it is the
   README's lower bound).
2. Pack (`compiler.ispd.packing.shelf_pack`): at a target time T each kernel may take any option
   with time <= T, in either orientation, so the packer picks the shapes: horizontal shelves,
   each of the height whose greedy fill holds the most of the kernels' least areas, kernels
   along a shelf in pipeline order (snaking). Several fill orders are tried.
3. Relax: the shelf packer is tried at T* and then at candidate times above it (geometric steps,
   bisection, then a short scan below the answer since packing is not monotone in T); the cost
   is reported as `max_time / t_star` and the number of placements tried. If the shelf packer
   never succeeds, the compiler's nearest-free placer (`compiler.placement.place`, rotation
   allowed) on the cheapest choice per target time is the fallback.
4. Refine: `compiler.placement.refine` moves kernels toward their neighbours while the wire
   length falls; sizes, and so the bottleneck, never change.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..placement import PlacementError, Rect, place, refine
from ..search import Choice, candidate_times, feasible, min_bottleneck
from ..target import Target
from .library import ContestOption, option_lists
from .packing import shelf_pack
from .reader import KGraph


SHELF_STRATEGIES = (0, 1, 2)
SCAN_BELOW = 8          # candidate times tried just below the bisection's answer


@dataclass
class Solution:
    graph: KGraph
    options: dict                  # kernel name -> ContestOption
    rects: dict                    # kernel name -> placement Rect (row = y, col = x)
    t_star: float
    max_time: float
    wire_length: float
    placements_tried: int
    seconds: float
    log: list = field(default_factory=list)

    def rotated(self, name: str) -> bool:
        o, r = self.options[name], self.rects[name]
        return (r.height, r.width) != (o.height, o.width)

    @property
    def ratio(self) -> float:
        return self.max_time / self.t_star

    @property
    def fabric_used(self) -> float:
        return sum(o.area for o in self.options.values()) / (self.graph.width * self.graph.height)


def centre_wire_length(rects: dict, pairs) -> float:
    """Total L1 distance between the (real-valued) centres of connected rectangles."""
    def c(r: Rect):
        return r.col + r.width / 2, r.row + r.height / 2
    return float(sum(abs(c(rects[a])[0] - c(rects[b])[0]) + abs(c(rects[a])[1] - c(rects[b])[1])
                     for a, b in pairs))


def fabric(graph: KGraph) -> Target:
    return Target(f"ispd-{graph.test or 'fabric'}", rows=graph.height, cols=graph.width,
                  sram_bytes=2 * graph.memlimit)


def pack(graph: KGraph, options: dict, target: Target) -> tuple[Rect, ...] | None:
    """Place the chosen rectangles, trying pipeline order then decreasing height."""
    mappings = {n: o.mapping for n, o in options.items()}
    order = graph.pipeline_order()
    orders = [order, sorted(order, key=lambda n: (-max(options[n].height, options[n].width),
                                                  -options[n].area))]
    for o in orders:
        try:
            return place(o, mappings, target, rotate=True)
        except PlacementError:
            continue
    return None


def solve(graph: KGraph, time_limit: float = 60.0, refine_passes: int = 2) -> Solution:
    start = time.perf_counter()
    deadline = start + time_limit
    target = fabric(graph)
    lists = option_lists(graph, (graph.height, graph.width))
    empty = [n for n, v in lists.items() if not v]
    if empty:
        raise PlacementError(f"kernel(s) {', '.join(empty)} have no execution parameters within "
                             f"memlimit={graph.memlimit} words that fit the "
                             f"{graph.height} x {graph.width} fabric")
    capacity = graph.width * graph.height
    best = min_bottleneck(lists, capacity, 1)
    if best is None:
        raise PlacementError(f"the kernels' least areas exceed the {graph.height} x "
                             f"{graph.width} fabric at any time")
    t_star = best.bottleneck
    log = [f"T* = {t_star:g} (least total area {best.area:,} of {capacity:,} tiles)"]
    times = candidate_times(lists, 1)
    times = times[times.index(t_star):]
    choice, rects, tried = shelf_search(graph, lists, times, deadline, time_limit)
    if rects is None:
        choice, rects, more = greedy_search(graph, lists, times, target, capacity, deadline)
        tried += more
    if choice.bottleneck > t_star:
        log.append(f"relaxed to {choice.bottleneck:g} = {choice.bottleneck / t_star:.3f} x T* "
                   f"after {tried} placements")
    pairs = graph.kernel_pairs()
    passes = refine_passes if time.perf_counter() < deadline - 0.25 * time_limit else 0
    if passes:
        rects = refine(rects, pairs, target, passes=passes)
    placed = {r.name: r for r in rects}
    return Solution(graph, dict(choice.options), placed, t_star,
                    max(o.time for o in choice.options.values()), centre_wire_length(placed, pairs),
                    tried, time.perf_counter() - start, log)


def shelf_try(graph: KGraph, lists: dict, limit: float):
    """Shape-choosing shelf packing at one target time (several fill orders); a Choice and its
    rectangles, or None. Along each shelf the kernels follow the pipeline order."""
    order = graph.pipeline_order()
    for strategy in SHELF_STRATEGIES:
        got = shelf_pack(lists, limit, graph.height, graph.width, strategy, order)
        if got is not None:
            options, placed = got
            rects = tuple(placed[n] for n in graph.pipeline_order())
            return Choice(options, max(o.time for o in options.values()),
                          sum(o.area for o in options.values())), rects
    return None


def shelf_search(graph: KGraph, lists: dict, times: list, deadline: float, time_limit: float):
    """Least candidate time (times[0] = T*) at which the shelf packer succeeds: grow the step
    geometrically from T*, bisect back, then (packing is not monotone in T) scan the few times
    just below the success while time allows."""
    tried, lo, hi, found, step = 0, 0, len(times) - 1, None, 1
    while lo <= hi and found is None and time.perf_counter() < deadline:
        mid = min(hi, lo + step - 1)
        got = shelf_try(graph, lists, times[mid])
        tried += 1
        if got is not None:
            found, hi = (mid, got), mid - 1
        else:
            lo, step = mid + 1, step * 2
    if found is None:
        return None, None, tried
    budget = time.perf_counter() + 0.3 * time_limit
    while lo <= hi and time.perf_counter() < min(deadline, budget):
        mid = (lo + hi) // 2
        got = shelf_try(graph, lists, times[mid])
        tried += 1
        if got is not None:
            found, hi = (mid, got), mid - 1
        else:
            lo = mid + 1
    for i in range(found[0] - 1, max(-1, found[0] - 1 - SCAN_BELOW), -1):
        if time.perf_counter() > min(deadline, budget):
            break
        got = shelf_try(graph, lists, times[i])
        tried += 1
        if got is not None:
            found = (i, got)
    choice, rects = found[1]
    return choice, rects, tried


def greedy_search(graph: KGraph, lists: dict, times: list, target: Target, capacity: int,
                  deadline: float):
    """Fallback: the compiler's nearest-free placer on the cheapest choice per target time."""
    rects = pack(graph, feasible(lists, times[0], capacity, 1).options, target)
    if rects is not None:
        return feasible(lists, times[0], capacity, 1), rects, 1
    lo, hi, found, tried, step = 1, len(times) - 1, None, 1, 1
    # first make sure some relaxed target packs: grow the step geometrically from T*
    while lo <= hi and found is None:
        mid = min(hi, lo + step - 1)
        trial = feasible(lists, times[mid], capacity, 1)
        packed = pack(graph, trial.options, target) if trial else None
        tried += 1
        if packed is not None:
            found, hi = (trial, packed), mid - 1
        else:
            lo, step = mid + 1, step * 2
        if time.perf_counter() > deadline and found is not None:
            break
    # then bisect between the last failure and the first success
    while found is not None and lo <= hi and time.perf_counter() < deadline:
        mid = (lo + hi) // 2
        trial = feasible(lists, times[mid], capacity, 1)
        packed = pack(graph, trial.options, target)
        tried += 1
        if packed is not None:
            found, hi = (trial, packed), mid - 1
        else:
            lo = mid + 1
    if found is None:
        raise PlacementError(f"no relaxed target time packs on the {graph.height} x "
                             f"{graph.width} fabric ({tried} placements tried)")
    return found[0], found[1], tried
