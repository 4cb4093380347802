"""Link congestion when only some rows are sent (DESIGN.md, "Dynamic execution").

`compiler.compile_report.congestion` loads every link with the wavelets of the full-length
tensors its routes carry. A pad token is never streamed and a halted position sends nothing,
so a route carries only its value's share of rows that compute. The routes are flattened once
per plan into directed-link indices (`compiler.placement.route_segments`); a step's loads are
then one weighted bincount, and each kernel's congestion is, as in the compiler, the load of the
busiest link any of its routes crosses, per sample. With every share 1 it equals the compiler's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.compile_report import REDUCTION
from compiler.placement import route_segments


@dataclass(frozen=True, eq=False)
class RouteLinks:
    """The sample routes as flat directed-link indices, and what each carries."""
    link: np.ndarray          # link index of each (route, link) entry
    route: np.ndarray         # route index of each entry
    starts: np.ndarray        # first entry of each route that crosses links
    routed: np.ndarray        # those routes' indices
    load: np.ndarray          # per route: per-lane wavelets per step at full length
    governors: tuple          # per route: the governor of its value (`dynamic_timing.Governor`)
    kernels: dict             # kernel name -> indices of the routes it sends or receives on
    links: int

    def congestion(self, shares, samples: int) -> dict[str, float]:
        """Kernel -> per-sample load of its busiest link, each route at its `shares` of rows."""
        weights = self.load * np.asarray(shares, dtype=np.float64) if len(self.load) else self.load
        loads = np.bincount(self.link, weights=weights[self.route], minlength=self.links)
        peak = np.zeros(len(self.load))
        if self.link.size:
            peak[self.routed] = np.maximum.reduceat(loads[self.link], self.starts)
        return {name: float(peak[routes].max(initial=0.0)) / max(samples, 1)
                for name, routes in self.kernels.items()}


def sample_routes(plan) -> list:
    """The routes samples travel (not the gradient all-reduce), in plan order."""
    return [rt for rt in plan.routes if not rt.edge.value.startswith(REDUCTION)]


def _link_grids(target) -> tuple[dict, dict, int]:
    sizes = {"east": (target.rows, max(target.cols - 1, 0)), "west": (target.rows, max(target.cols - 1, 0)),
             "south": (max(target.rows - 1, 0), target.cols), "north": (max(target.rows - 1, 0), target.cols)}
    offsets, total = {}, 0
    for direction, (rows, cols) in sizes.items():
        offsets[direction], total = total, total + rows * cols
    return sizes, offsets, total


def route_links(plan, governors: tuple) -> RouteLinks:
    """`RouteLinks` of the plan's sample routes, with the governor of each route's value."""
    sizes, offsets, total = _link_grids(plan.target)
    routes = sample_routes(plan)
    link, route = [], []
    for i, rt in enumerate(routes):
        for direction, rows, cols in route_segments(rt):
            grid = np.arange(sizes[direction][0] * sizes[direction][1]).reshape(sizes[direction])
            cells = grid[rows, cols].ravel() + offsets[direction]
            link.append(cells)
            route.append(np.full(cells.size, i))
    link = np.concatenate(link) if link else np.zeros(0, dtype=np.int64)
    route = np.concatenate(route) if route else np.zeros(0, dtype=np.int64)
    routed, starts = np.unique(route, return_index=True)
    kernels = {k.name: np.array([i for i, rt in enumerate(routes) if k.name in (rt.edge.src, rt.edge.dst)],
                                dtype=np.int64) for k in plan.kernels}
    return RouteLinks(link, route, starts, routed,
                      np.array([rt.load for rt in routes], dtype=np.float64), governors, kernels, total)
