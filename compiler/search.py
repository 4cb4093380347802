"""The mapping search: pick one option per kernel to maximize samples/s under the wafer's area.

The objective is the min-bottleneck problem: minimize T = max_k stage_time(option_k) subject to
sum_k area(option_k) <= cores. `min_bottleneck` is exact for given option lists:
- the optimal T* is one of the option stage times, so it suffices to search that sorted list;
- for a target T, the cheapest choice for kernel k is its smallest-area option with
  stage_time <= T, and the kernels do not interact except through the area sum, so "T is
  feasible" holds iff the sum of those cheapest areas fits;
- that sum can only shrink as T grows (more options qualify), so feasibility is monotone in T
  and bisection over the sorted candidate times finds the least feasible T, which is T*.
Rectangle packing is checked afterwards (`compiler.packing`); if nothing packs at T*, the target
is relaxed over the candidate times above it (`least_packable`, the one relaxation step).

Strategies: "model" allows one replica per kernel; "data" replicates the whole network the same
r times (r searched); "auto" lets every kernel choose its own replica count.
"""
from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass

import numpy as np

from .options import Option

STRATEGIES = ("auto", "model", "data")


@dataclass(frozen=True)
class Choice:
    options: dict                # kernel name -> Option
    bottleneck: float            # max stage time over kernels (cycles per sample)
    area: int


class Lists:
    """Option lists as arrays, each distinct list once (the layers of a deep stack share one):
    its stage times and areas, sorted by (area, stage time) with ties in list order."""

    def __init__(self, option_lists: dict, samples: int):
        self.option_lists, self.samples = option_lists, samples
        self.sorted: dict[int, tuple[list, np.ndarray, np.ndarray]] = {}
        for opts in option_lists.values():
            if id(opts) not in self.sorted:
                times = np.array([o.stage_time(samples) for o in opts], dtype=np.float64)
                order = np.lexsort((times, np.array([o.area for o in opts], dtype=np.int64)))
                self.sorted[id(opts)] = (opts, times[order], order)

    def cheapest(self, options: list, limit: float) -> Option | None:
        """Smallest-area option of `options` (one of the lists) with stage time within `limit`;
        of equal areas the faster, then the first."""
        opts, times, order = self.sorted[id(options)]
        fits = times <= limit
        first = int(np.argmax(fits)) if len(fits) else 0
        return opts[order[first]] if len(fits) and fits[first] else None

    def feasible(self, limit: float, capacity: int) -> Choice | None:
        """The cheapest option per kernel at `limit`, if every kernel has one and they fit."""
        picks = {}
        for key, (opts, _, _) in self.sorted.items():
            picks[key] = self.cheapest(opts, limit)
            if picks[key] is None:
                return None
        chosen = {name: picks[id(opts)] for name, opts in self.option_lists.items()}
        area = sum(o.area for o in chosen.values())
        if area > capacity:
            return None
        return Choice(chosen, max(o.stage_time(self.samples) for o in chosen.values()), area)

    def times(self) -> list[float]:
        """Every option's stage time at or above the largest per-kernel minimum (below it some
        kernel has no option at all); none when a kernel has no option."""
        if any(not len(t) for _, t, _ in self.sorted.values()) or not self.sorted:
            return []
        floor = max(float(t.min()) for _, t, _ in self.sorted.values())
        every = np.unique(np.concatenate([t for _, t, _ in self.sorted.values()]))
        return every[every >= floor].tolist()


def cheapest_at(options: list[Option], limit: float, samples: int) -> Option | None:
    """Smallest-area option whose stage time is within `limit` (`Lists.cheapest`)."""
    return Lists({"": options}, samples).cheapest(options, limit)


def feasible(option_lists: dict, limit: float, capacity: int, samples: int) -> Choice | None:
    return Lists(option_lists, samples).feasible(limit, capacity)


def candidate_times(option_lists: dict, samples: int) -> list[float]:
    """`Lists.times`."""
    return Lists(option_lists, samples).times()


def min_bottleneck(option_lists: dict, capacity: int, samples: int, start: float | None = None
                   ) -> Choice | None:
    """Exact minimum-bottleneck choice (see module docstring); `start` skips faster targets."""
    lists = Lists(option_lists, samples)
    times = lists.times()
    if start is not None:
        times = times[bisect.bisect_right(times, start):]
    lo, hi, best = 0, len(times) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        choice = lists.feasible(times[mid], capacity)
        if choice is not None:
            best, hi = choice, mid - 1
        else:
            lo = mid + 1
    return best


def least_packable(times: list[float], start: int, pack, below: int = 0,
                   deadline: float | None = None) -> tuple[float | None, object, int]:
    """The relaxation step after an exact search whose T* did not pack: bisect `times[start:]`
    for the least target `pack(target)` accepts (returns something other than None). Packing is
    nearly, not exactly, monotone in the target (the choices only shrink as it grows), so the
    `below` candidates just under the answer are tried too, each success becoming the answer.
    Once something packed, no further packing starts after `deadline` (time.perf_counter()), so
    a deadline shortens the search but never loses the answer. Returns (target, what pack
    returned, packings tried); (None, None, tries) when nothing packs."""
    lo, hi, found, tries = start, len(times) - 1, None, 0

    def late() -> bool:
        return found is not None and deadline is not None and time.perf_counter() > deadline
    while lo <= hi and not late():
        mid = (lo + hi) // 2
        packed = pack(times[mid])
        tries += 1
        if packed is not None:
            found, hi = (mid, packed), mid - 1
        else:
            lo = mid + 1
    if found is None:
        return None, None, tries
    for i in range(found[0] - 1, max(start, found[0] - below) - 1, -1):
        if late():
            break
        packed = pack(times[i])
        tries += 1
        if packed is not None:
            found = (i, packed)
    return times[found[0]], found[1], tries


def finalist_key(estimate: dict) -> tuple[float, bool]:
    """How `plan.compile_plan` ranks its placed and routed finalists by their full estimate
    (`Plan.estimate()`): fewer cycles a step first; on a tie, one whose slowest stage is set by
    its kernel's work before one set by the congestion of its routes (routes that fit)."""
    stages, congestion = estimate["per_sample_cycles"], estimate["congestion_cycles"]
    slowest = max(stages, key=stages.get, default=None)
    return estimate["cycles"], slowest is not None and congestion[slowest] >= stages[slowest]


def exhaustive(option_lists: dict, capacity: int, samples: int) -> Choice | None:
    """Reference: try every combination (for tests on small graphs only)."""
    names = list(option_lists)
    best = None
    for combo in itertools.product(*(option_lists[n] for n in names)):
        area = sum(o.area for o in combo)
        if area > capacity:
            continue
        t = max(o.stage_time(samples) for o in combo)
        if best is None or t < best.bottleneck:
            best = Choice(dict(zip(names, combo)), t, area)
    return best


def restrict_replicas(option_lists: dict, replicas: int) -> dict:
    return {n: [o for o in opts if o.mapping.replicas == replicas] for n, opts in option_lists.items()}
