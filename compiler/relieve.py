"""Relieve congestion: move the culprit region off the busiest link.

The search sizes every kernel for its own work and its own boundary (`options.boundary_cycles`),
and refinement pulls each region toward the traffic it exchanges (`placement.refine`), but
neither sees the routes of other kernels that cross a region's few boundary lanes. A small
region (a LayerNorm, a classifier head) next to a busy corridor can then have its slowest link
set by traffic that is not its own, and its stage (`schedule.stage_times`) by that congestion.

`relieve` repairs a routed placement locally, as a rip-up-and-replace step over regions (the
placement counterpart of PathFinder's rip-up and reroute: McMurchie & Ebeling, FPGA 1995):
while the slowest stage is set by congestion above the largest stage's own work, the routes
that cross that stage's busiest link are found, and each region at their ends, smallest first
(a small region fits many free spots and has the fewest lanes), is tried where it is with all
its routes ripped up and laid again together, at the free spot nearest the traffic-weighted
centre of the kernels it talks to with its old spot blocked, and there with the surroundings
of the busy link blocked too. Only the routes that change are laid again
(`routing.Router.moved`). The move that lowers the stages above the largest own work
most (`excess`) is kept; the loop stops when no move lowers them or after `tries` moves.
Sizes never change, so the search's bottleneck stays.
"""
from __future__ import annotations

import numpy as np

from .free_space import FreeSpace
from .placement import Rect, centroid
from .routing import Router


def excess(own: np.ndarray, congestion: np.ndarray) -> tuple[float, ...]:
    """The stage times (`schedule.stage_times`: a stage's own work or its congestion, whichever
    is more) above the largest own work, slowest first: what congestion adds to the bottleneck.
    Compared as tuples, fewer and lower is better; () when congestion sets no stage above it."""
    stages = np.maximum(own, congestion)
    return tuple(sorted(stages[stages > own.max()].tolist(), reverse=True))


def relieve(router: Router, own: dict[str, float], traffic: dict[tuple[str, str], float],
            samples: int, share: float = 1.0, tries: int = 12) -> Router:
    """The routed placement `router` with culprit regions moved (module docstring), its routes
    settled (`Router.settled`). `own`: each kernel's stage time without congestion, in plan
    order; `traffic`: the wavelets per step between each pair of kernels
    (`plan.pair_traffic`); `share`: the part of its wavelets each route is assumed to send;
    `tries`: the most moves tried."""
    names = list(own)
    own_times = np.array([own[n] for n in names])
    routes_of = [np.array([i for i, e in enumerate(router.edges) if n in (e.src, e.dst)],
                          dtype=np.int64) for n in names]

    def congestion(r: Router) -> np.ndarray:
        """Per kernel: per-sample cycles of the busiest link on its routes."""
        peaks = r.peaks() * share / max(samples, 1)
        return np.array([peaks[i].max(initial=0.0) for i in routes_of])
    start = router
    cong = congestion(router)
    best = excess(own_times, cong)
    while best and tries > 0:
        found, hot = None, _hot_link(router, routes_of[int(np.argmax(cong))])
        for rect in _culprits(router, hot, names):
            for spot in _spots(router, rect, traffic, hot):
                if tries <= 0:
                    break
                tries -= 1
                trial = router.moved(spot)
                c = congestion(trial)
                key = excess(own_times, c)
                if key < best and (found is None or key < found[0]):
                    found = (key, trial, c)
        if found is None:
            break
        best, router, cong = found
    return router if router is start else router.settled()


def _hot_link(router: Router, routes) -> tuple[int, int, int]:
    """(direction, row, col) of the busiest link that `routes` (indices) cross."""
    loads, best = router.loads.loads, None
    for i in routes:
        for d, rows, cols, _ in router.chosen[i].bands:
            box = loads[d, rows, cols]
            r, c = np.unravel_index(int(np.argmax(box)), box.shape)
            if best is None or box[r, c] > best[0]:
                best = (box[r, c], (d, rows.start + int(r), cols.start + int(c)))
    return best[1]


def _culprits(router: Router, hot: tuple[int, int, int], names: list[str]) -> list[Rect]:
    """The regions at the ends of the routes that cross the link `hot` (direction, row, col),
    smallest first (then in plan order)."""
    d, row, col = hot
    ends = {n for e, laid in zip(router.edges, router.chosen)
            if any(dd == d and rows.start <= row < rows.stop and cols.start <= col < cols.stop
                   for dd, rows, cols, _ in laid.bands)
            for n in (e.src, e.dst)}
    rank = {n: k for k, n in enumerate(names)}
    return sorted((router.where[n] for n in ends),
                  key=lambda r: (r.height * r.width, rank.get(r.name, 0)))


def _spots(router: Router, rect: Rect, traffic, hot: tuple[int, int, int]) -> list[Rect]:
    """Where `rect` may go: where it is (its routes all ripped up together and laid again
    against the others, which can leave a fixed point that moving one route at a time
    cannot), the free spot nearest the traffic-weighted centre of its partners with its own
    spot blocked, and that with the cores around the busy link blocked as well."""
    pull = [(router.where[b if a == rect.name else a].center, w) for (a, b), w in traffic.items()
            if rect.name in (a, b) and a != b]
    if not pull:
        return []
    centre = centroid(pull)
    _, row, col = hot
    around = Rect("", max(0, row - rect.height), max(0, col - rect.width), 2 * rect.height + 1,
                  2 * rect.width + 1)
    spots = [rect]
    for blocked in ((rect,), (rect, around)):
        space = FreeSpace(*router.fabric)
        for r in router.where.values():
            if r.name != rect.name:
                space.add(r)
        for b in blocked:
            space.add(b)
        spot = space.nearest(rect.height, rect.width, centre)
        if spot is not None:
            moved = Rect(rect.name, spot[0], spot[1], rect.height, rect.width)
            if moved not in spots:
                spots.append(moved)
    return spots
