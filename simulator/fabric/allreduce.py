"""The ring all-reduce of a kernel's data-parallel replicas, then the weight update: the fabric
program of `compiler.cost.update_cycles` (and of `compiler.placement.reduction_routes`).

Replicas sit side by side, so the region is rows x (cols * replicas) and each row of cores is
one ring: core (i, c) of replica q sends to its twin (i, c) of replica q + 1, `cols` hops east,
and replica r - 1 to replica 0, (r - 1) cols hops west (the ring's wrap-around on a line). Each
core's gradient tile is cut into r chunks (`cost.tile_sizes`); chunk c starts at replica c and
travels 2 (r - 1) hops (Patarasuk & Yuan 2009): the first r - 1 add the receiver's own values
(reduce-scatter), so at replica c - 1 it holds the sum of all r; the next r - 1 hand that sum
on (all-gather). Each hop sends the chunk's values one wavelet each, value by value, so the
chunks' chains pipeline at wavelet granularity.
- **routes**: each ring (each column offset c of the replicas) has its own two colours,
  east and west (the wrap), 2 * cols in all, as a CSL ring gives each ring its colours: the
  router's colours are virtual channels (`router`), so a ring's wavelets waiting for its own
  core's PE hold up none of the rings passing through it. Each colour carries a router filter
  (`router.Router`, filters): a wavelet's index carries its destination core, so a core's
  filter takes the ones addressed to it onto its ramp and passes those addressed beyond it on
  (Cerebras SDK filters);
- **tasks**: an arriving value is added to (reduce-scatter) or stored in (all-gather) the
  core's tile as a fabric-input operand of one add (no activation, `pe.Datapath.streamed`), and
  its result is sent on from the add as it is made (a fabout operand), so a hop costs the PE a
  cycle; the core's last arrival completes its tile, and the same task then updates the tile's
  weights: `flops` element operations a weight (`cost.update_flops`) on the SIMD lanes.
So the busiest link carries 2 (r - 1) / r of a row's tiles, as `cost.allreduce_share` says.
"""
from __future__ import annotations

import numpy as np

from compiler.cost import tile_sizes

from .pe import Work
from .programs import register_part
from .queues import Wavelets
from .router import RAMP, E, W, route_mask

EAST, WEST = 0, 1          # a ring's colours: 2 ring + EAST, 2 ring + WEST


def ring_hops(replicas: int) -> int:
    """Hops a chunk travels: r - 1 to reduce, r - 1 to gather."""
    return 2 * (replicas - 1)


def traffic(tile: int, replicas: int) -> tuple[np.ndarray, np.ndarray]:
    """(sends, receives) per replica (r,): the values each core sends and receives."""
    sizes, sends, recv = tile_sizes(tile, replicas), np.zeros(replicas, np.int64), \
        np.zeros(replicas, np.int64)
    for c in range(replicas):
        for i in range(ring_hops(replicas)):
            sends[(c + i) % replicas] += sizes[c]
            recv[(c + i + 1) % replicas] += sizes[c]
    return sends, recv


def routes_and_filters(rows: int, width: int, big: int, rings: int = 1) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """(2 rings, 5, rows, width) route bits and (2 rings, 2, rows, width) filters, the same for
    every ring's pair of colours: east (2 ring) from the west (or the ramp) on east, west
    (2 ring + 1) from the east (or the ramp) on west; a core's filter keeps the indices
    [lo, hi) addressed to it (destination-major: destination d's are d big .. (d + 1) big
    east, counted from the east edge west, so that what lies beyond a core is >= hi either
    way)."""
    routes = np.zeros((2, 5, rows, width), dtype=np.uint8)
    routes[EAST, W], routes[EAST, RAMP] = route_mask(RAMP, E), route_mask(E)
    routes[WEST, E], routes[WEST, RAMP] = route_mask(RAMP, W), route_mask(W)
    h = np.broadcast_to(np.arange(width), (rows, width))
    filters = np.empty((2, 2, rows, width), dtype=np.int64)
    filters[EAST, 0], filters[EAST, 1] = h * big, (h + 1) * big
    filters[WEST, 0], filters[WEST, 1] = (width - 1 - h) * big, (width - h) * big
    return np.tile(routes, (rings, 1, 1, 1)), np.tile(filters, (rings, 1, 1, 1))


class AllReduce:
    """The program (`programs` describes the protocol): `grads` (replicas, rows, cols, tile)
    each core's gradient tile, `flops` update operations a weight."""

    def __init__(self, grads, flops: int):
        self.grads = np.asarray(grads, dtype=np.float32)
        self.r, rows, self.cols, self.tile = self.grads.shape
        if self.r < 2:
            raise ValueError(f"a ring all-reduce needs at least 2 replicas, got {self.r}")
        width = self.r * self.cols
        self.region, self.flops = (rows, width), flops
        self.big = ring_hops(self.r) * self.tile + 1                 # local indices a core uses
        if width * self.big >= 2 ** 31:
            raise ValueError(f"{width} cores of {self.tile} values overflow a wavelet's index")
        self.colours = 2 * self.cols
        self.priority = self.reduction = tuple(range(self.colours))
        self.routes, self.filters = routes_and_filters(rows, width, self.big, self.cols)
        self.streams, self.sinks = {}, {}
        self.sizes = tile_sizes(self.tile, self.r)
        sends, recv = traffic(self.tile, self.r)
        replica = np.arange(width) // self.cols
        self.sends = np.broadcast_to(sends[replica], self.region)
        self.expected = np.broadcast_to(recv[replica], self.region)
        self.bound = 64 * (int(sends.max()) * self.cols + ring_hops(self.r) * width +
                           self.tile * flops) + 256

    def start(self, xp, datapath) -> None:
        rows, width = self.region
        self.xp, self.dp = xp, datapath
        g = self.grads.transpose(1, 0, 2, 3).reshape(rows, width, self.tile)
        self.g, self.acc = xp.asarray(g), xp.asarray(g.copy())
        h = np.broadcast_to(np.arange(width), self.region)
        last = h // self.cols == self.r - 1                          # sends WEST, to replica 0
        dest = np.where(last, h - (self.r - 1) * self.cols, h + self.cols)
        ring = 2 * (h % self.cols)
        self.colour = xp.asarray((ring + np.where(last, WEST, EAST)).astype(np.int16))
        self.code = xp.asarray(np.where(last, width - 1 - dest, dest).astype(np.int64) * self.big)
        slots = max(int(self.sends.max()), 1)
        first = np.zeros(self.region + (slots,), dtype=np.int64)     # hop 0: the replica's chunk
        q = h // self.cols
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        first[..., :] = np.arange(slots)
        own = starts[q][..., None] + first
        self.out_idx = xp.asarray(own) + self.code[..., None]
        self.out_v = xp.asarray(np.take_along_axis(g, np.minimum(own, self.tile - 1), axis=2))
        self.made = xp.asarray(self.sizes[q].astype(np.int64))
        self.sent = xp.zeros(self.region, dtype=xp.int64)
        self.got = xp.zeros(self.region, dtype=xp.int64)
        self.expected_d = xp.asarray(np.ascontiguousarray(self.expected))
        self.updated = self.expected_d == 0
        self.ri, self.ci = (xp.asarray(a) for a in np.indices(self.region))

    def ready(self, colour: int, heads):
        return self.xp.ones(self.region, dtype=bool)

    def run(self, colour: int, heads, mask) -> Work:
        """Add (or store) an arriving value and queue its result to send on; the core's last
        arrival also updates the tile."""
        xp, tile = self.xp, self.tile
        local = heads.idx[colour].astype(xp.int64) % self.big
        hop, e = local // tile, local % tile
        own = xp.take_along_axis(self.g, e[..., None], axis=2)[..., 0]
        value = xp.where(hop < self.r - 1, own + heads.v[colour, ..., 0], heads.v[colour, ..., 0])
        at = (self.ri, self.ci, e)
        self.acc[at] = xp.where(mask, value, self.acc[at])
        on = mask & (hop < ring_hops(self.r) - 1)
        slot = (self.ri, self.ci, xp.minimum(self.made, self.out_v.shape[2] - 1))
        self.out_v[slot] = xp.where(on, value, self.out_v[slot])
        self.out_idx[slot] = xp.where(on, self.code + (hop + 1) * tile + e, self.out_idx[slot])
        self.made = self.made + on
        self.got = self.got + mask
        add = self.dp.streamed(xp, self.dp.fmac(xp, xp.ones_like(self.got)), mask)
        last = mask & (self.got == self.expected_d)
        update = self.dp.fmac(xp, xp.where(last, tile * self.flops, 0))
        return Work(add.simd + update.simd, add.sram + update.sram, add.task)

    def complete(self, colour: int, mask) -> None:
        """The task of a core's last arrival ends with its update."""
        self.updated = self.updated | (mask & (self.got == self.expected_d))

    def emit(self) -> tuple:
        xp = self.xp
        slot = (self.ri, self.ci, xp.minimum(self.sent, self.out_v.shape[2] - 1))
        v = xp.zeros(self.region + (self.dp.target.dense_values_per_wavelet,), dtype=xp.float32)
        v[..., 0] = self.out_v[slot]
        return self.sent < self.made, Wavelets(self.colour, xp.ones(self.region, dtype=xp.int8),
                                               self.out_idx[slot].astype(xp.int32), v)

    def emitted(self, mask) -> None:
        self.sent = self.sent + mask

    def finished(self):
        return (self.updated & (self.sent >= self.made)).all()

    def state(self) -> dict:
        return {"acc": self.acc}

    def output(self, run) -> dict:
        """(replicas, rows, cols, tile) each replica's reduced gradient."""
        rows = self.region[0]
        acc = np.asarray(run.extra["acc"]).reshape(rows, self.r, self.cols, self.tile)
        return {"sum": acc.transpose(1, 0, 2, 3)}

    def reference(self) -> dict:
        return {"sum": np.broadcast_to(self.grads.sum(axis=0), self.grads.shape)}


@register_part("update")
def update_program(tile: int, mapping, flops: int, grads=None) -> AllReduce:
    """The all-reduce and update of `tile` weights a core on `mapping` (replicas >= 2), of
    `grads` (replicas, rows, cols, tile) or zeros (the values do not change the time)."""
    if grads is None:
        grads = np.zeros((mapping.replicas, mapping.rows, mapping.cols, tile), dtype=np.float32)
    return AllReduce(grads, flops)
