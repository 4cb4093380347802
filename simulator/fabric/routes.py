"""A route between two kernels (`compiler.placement.Route`) as a fabric program: a bundle of
`lanes` parallel lanes, each `length` links long, that carries a value from its producer's
region to its consumer's, sample by sample.

The value leaves the producer over every boundary core that holds it, one lane each, and each
lane carries its share of a sample's dense wavelets (`cost.dense_wavelets` of the value, split
over the lanes as `cost.tile_sizes` splits it) (`compiler.links`). Along the lane only the
routers work: each forwards the route's colour from the west on east (Hot Chips 2020: one
32-bit wavelet per link per cycle), so a lane takes `length` hops of latency and passes one
wavelet a cycle; the consumer's edge is the east sink. `length` is the links between the two
regions' facing sides (`gap`): the kernels' own programs cross their regions themselves.
"""
from __future__ import annotations

import numpy as np

from compiler.cost import tile_sizes

from .pe import Work
from .programs import register_part
from .queues import Wavelets
from .router import E, W, route_mask


def gap(a, b) -> int:
    """Links between rectangles `a` and `b` (`placement.Rect`): the Manhattan gap between their
    facing sides, plus the one link that leaves `a`."""
    rows = max(0, b.row - (a.row + a.height), a.row - (b.row + b.height))
    cols = max(0, b.col - (a.col + a.width), a.col - (b.col + b.width))
    return rows + cols + 1


class RouteProgram:
    """The program (`programs` describes the protocol): `items` samples of `wavelets` each over
    `lanes` lanes of `length` links. The values carried are each wavelet's index (the route
    moves data, it computes nothing)."""

    colours, priority, reduction = 1, (0,), ()

    def __init__(self, items: int, wavelets: int, lanes: int, length: int, values: int):
        if min(lanes, length) < 1:
            raise ValueError(f"a route needs at least one lane and one link, got {lanes} x {length}")
        self.items, self.region = items, (lanes, length)
        self.share = tile_sizes(int(wavelets), lanes)                        # (lanes,) a sample
        self.routes = np.zeros((1, 5, lanes, length), dtype=np.uint8)
        self.routes[0, W] = route_mask(E)
        longest = max(int(self.share.max()) * items, 1)
        at = np.arange(longest)
        idx = np.broadcast_to(at, (lanes, longest)).astype(np.int32)
        v = np.zeros((lanes, longest, values), dtype=np.float32)
        v[..., 0] = idx
        self.streams = {"W": (Wavelets(np.zeros((lanes, longest), np.int16),
                                       np.ones((lanes, longest), np.int8), idx, v),
                              self.share * items)}
        self.stream_items = {"W": at[None, :] // np.maximum(self.share, 1)[:, None]}
        self.sinks = {"E": self.share * items}
        self.bound = 4 * (longest + length) + 64

    def start(self, xp, datapath) -> None:
        self.xp = xp

    def ready(self, colour: int, heads):
        return self.xp.ones(self.region, dtype=bool)

    def run(self, colour: int, heads, mask) -> Work:
        zero = self.xp.zeros(self.region, dtype=self.xp.int64)
        return Work(zero, zero, zero)

    def complete(self, colour: int, mask) -> None:
        pass

    def emit(self) -> tuple:
        xp = self.xp
        no = xp.zeros(self.region, dtype=bool)
        return no, Wavelets(xp.zeros(self.region, xp.int16), xp.zeros(self.region, xp.int8),
                            xp.zeros(self.region, xp.int32),
                            xp.zeros(self.region + (self.streams["W"][0].v.shape[-1],), xp.float32))

    def emitted(self, mask) -> None:
        pass

    def finished(self):
        return self.xp.asarray(True)

    def arrivals(self, run) -> np.ndarray:
        """(items,) the cycle each sample's last wavelet reached the consumer."""
        cycle = run.sinks["E"][2]                                         # (lanes, slots)
        last = np.zeros(self.items, dtype=np.int64)
        for lane, n in enumerate(self.share):
            if n:
                last = np.maximum(last, cycle[lane, n - 1::n][:self.items] + 1)
        return last

    def output(self, run) -> dict:
        values, _, _, count, _ = run.sinks["E"]
        return {"order": np.concatenate([values[lane, :c, 0] for lane, c in enumerate(count)])}

    def reference(self) -> dict:
        return {"order": np.concatenate([np.arange(n * self.items, dtype=np.float32)
                                         for n in self.share])}


@register_part("route")
def route_program(route, rects: dict, batch: int, target, items: int | None = None) -> RouteProgram:
    """The program of plan route `route` (`placement.Route`) between `rects` (name -> Rect) for
    `items` samples (default the `batch`): each sample's share of the step's dense wavelets
    (`batch` samples) over its lanes."""
    a, b = rects[route.edge.src], rects[route.edge.dst]
    per_sample = int(np.ceil(route.edge.wavelets / max(batch, 1)))
    return RouteProgram(batch if items is None else items, per_sample, route.lanes, gap(a, b),
                        target.dense_values_per_wavelet)


__all__ = ["RouteProgram", "gap", "route_program"]
