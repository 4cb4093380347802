"""Solve a contest instance with the compiler's own search and placer.

The contest library (`library.option_lists`) only supplies options; the search, the packer and
the relaxation are the ones `compiler.plan.compile_plan` uses (`compiler.packing.search_and_pack`):
1. Balance: `compiler.search.min_bottleneck` over the contest options gives T*, the least time at
   which the sum of the least areas fits the fabric (exact for the option lists; it is the
   README's lower bound).
2. Pack (`compiler.packing.pack`, rotation allowed since contest options are `rotatable`): the
   greedy nearest-free placer on the cheapest options and the shape-choosing shelf packer,
   which may take any option with time <= the target; each packing that fits is kept.
3. Relax: if T* does not pack, `compiler.search.least_packable` bisects the candidate times above
   it and then tries the few just below the answer (packing is not monotone in T); the cost is
   reported as `max_time / t_star` and the number of placements tried.
4. Refine: `compiler.placement.refine` moves kernels toward their neighbours while the wire
   length falls; sizes, and so the bottleneck, never change. Of the refined packings the one
   with the least max time, then wire length (the contest's ranking), is the solution.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..packing import search_and_pack
from ..errors import PlacementError
from ..placement import Rect, refine
from ..target import Target
from .library import option_lists
from .reader import KGraph


SCAN_BELOW = 8          # candidate times tried just below the relaxation's answer
SEARCH_SHARE = 0.6      # of the time limit: no new relaxation try after it, once one packed
REFINE_SHARE = 0.25     # refine only while this much of the time limit is left


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


def solve(graph: KGraph, time_limit: float = 60.0, refine_passes: int = 2) -> Solution:
    start = time.perf_counter()
    target = fabric(graph)
    lists = option_lists(graph, (graph.height, graph.width))
    empty = [n for n, v in lists.items() if not v]
    if empty:
        raise PlacementError(f"kernel(s) {', '.join(empty)} have no execution parameters within "
                             f"memlimit={graph.memlimit} words that fit the "
                             f"{graph.height} x {graph.width} fabric")
    placed = search_and_pack(lists, target, 1, graph.pipeline_order(), below=SCAN_BELOW,
                             deadline=start + SEARCH_SHARE * time_limit)
    if placed is None:
        raise PlacementError(f"the kernels' least areas exceed the {graph.height} x "
                             f"{graph.width} fabric at any time")
    if placed.packings is None:
        raise PlacementError(f"no relaxed target time packs on the {graph.height} x "
                             f"{graph.width} fabric ({placed.tries} placements tried)")
    t_star, pairs = placed.t_star, graph.kernel_pairs()
    passes = refine_passes if time.perf_counter() < start + (1 - REFINE_SHARE) * time_limit else 0
    # the contest ranks by max time, then wire length: refine every packing, keep the best
    packing, rects = min(((p, refine(p.rects, pairs, target, passes) if passes else p.rects)
                          for p in placed.packings),
                         key=lambda pr: (pr[0].bottleneck,
                                        centre_wire_length({r.name: r for r in pr[1]}, pairs)))
    log = [f"T* = {t_star:g} (least total area {placed.least_area:,} of {target.cores:,} tiles)"]
    if packing.bottleneck > t_star:
        log.append(f"relaxed to {packing.bottleneck:g} = {packing.bottleneck / t_star:.3f} x T* "
                   f"after {placed.tries} placements")
    log.append(f"packed by {packing.method}")
    placed_rects = {r.name: r for r in rects}
    options = {n: s.payload for n, s in packing.chosen.items()}
    return Solution(graph, options, placed_rects, t_star, packing.bottleneck,
                    centre_wire_length(placed_rects, pairs), placed.tries,
                    time.perf_counter() - start, log)
