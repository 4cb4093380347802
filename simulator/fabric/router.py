"""The router of every core: five ports, colours with static routes, bounded input queues.

Hot Chips 2020 and the Cerebras SDK docs describe the fabric this models:
- each core's router has five ports, north, south, east, west and the ramp to its own
  processing element (PE), each with input queues (`Queues`, `depth` wavelets each);
- a wavelet travels on a colour, and each router has a static route per colour and input port:
  the set of output ports it forwards to (`routes`, a bit per port); several bits multicast it;
- a link moves one 32-bit wavelet per cycle in each direction (`Target.link_bits`), and an
  output port takes one wavelet per cycle;
- colours are virtual channels: "Incoming wavelets travel along a virtual channel, called a
  color. All colors transfer data on a single physical channel. The congestion of one color
  does not block the traffic of another color" (Cerebras SDK, "A Conceptual View",
  https://sdk.cerebras.net/_sources/computing-with-cerebras.rst.txt). So each input port has a queue per colour
  (`Queues` (colours, 5, rows, cols)), and the colours' heads compete for the output ports;
- back-pressure, per colour: a wavelet leaves its queue only when every port of its route can
  take it this cycle and every queue of its colour it goes to has space (all or nothing, so a
  multicast wavelet is never split); otherwise it waits at the head of its queue, and only its
  colour waits behind it.
- a colour may carry a filter (`filters`): at a core, a wavelet of that colour goes to the ramp
  only if its index lies in the core's range [lo, hi), and on over the links only if it lies
  beyond (>= hi), so one colour hands each core of a row its own tile (Cerebras SDK: router
  filters pass a window of a colour's wavelets to the ramp).
The (colour, input port) queues are served in an order that rotates every cycle (round robin),
so none starves.
Row 0 is the north edge. Everything is an array shaped like the region: no loop over cores.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import to_numpy
from .queues import Queues, Wavelets, empty

N, S, E, W, RAMP = range(5)
PORTS = ("N", "S", "E", "W", "ramp")
LINKS = (N, S, E, W)
OPPOSITE = {N: S, S: N, E: W, W: E}


def bit(port: int) -> int:
    return 1 << port


def route_mask(*ports: int) -> int:
    """The route bits that forward to `ports`."""
    mask = 0
    for p in ports:
        mask |= bit(p)
    return mask


class Hop(NamedTuple):
    """What a router did in one cycle: `go` (colours, 5, rows, cols) the input queues whose
    head left, `out` the wavelet on each output port (5, rows, cols) and `sent` where one is;
    `stalled` (5, rows, cols) the input ports with a head that stayed because a link it routes
    to had no space at its far end for its colour (back-pressure through the fabric; a head
    waiting only for its own PE, or for a port another colour took, is not)."""
    go: object
    out: Wavelets
    sent: object
    stalled: object


class Router:
    """The routers of a `rows x cols` region: `queues` (colours, 5, rows, cols) an input queue
    per colour and port, `routes` (colours, 5, rows, cols) output bits per colour and input
    port, and `filters` (colours, 2, rows, cols) each core's [lo, hi) per colour, lo > hi for a
    colour without."""

    def __init__(self, xp, routes, depth: int, values: int, filters=None):
        self.xp, self.routes = xp, xp.asarray(routes, dtype=xp.uint8)
        self.filters = None if filters is None else xp.asarray(filters, dtype=xp.int32)
        colours, ports, rows, cols = self.routes.shape
        if ports != 5:
            raise ValueError(f"routes must have 5 input ports (N, S, E, W, ramp), got {ports}")
        self.region, self.colours = (rows, cols), colours
        self.queues = Queues(xp, (colours, 5, rows, cols), depth, values)
        self._ports = xp.arange(5, dtype=xp.uint8)[:, None, None]
        self._colour = xp.arange(colours, dtype=xp.int16)[:, None, None, None]
        # the (colour, port) queues some route reads: the only ones that ever hold a wavelet
        # for a link or the ramp (static routes), so the arbiter serves only these
        used = to_numpy(self.routes.reshape(colours * 5, -1).any(axis=1))
        self._lanes = [divmod(int(k), 5) for k in np.flatnonzero(used)]

    def link_space(self):
        """(colours, rows, cols) route bits of the neighbour links whose far queue of that
        colour has space; a link off the region's edge always does (its wavelets leave the
        region into a sink)."""
        xp, space = self.xp, self.queues.space()
        shape = (self.colours,) + self.region
        bits = xp.zeros(shape, dtype=xp.uint8)
        edge = xp.ones(shape, dtype=bool)
        every = slice(None)
        neighbour = {N: (slice(1, None), every, slice(None, -1), every),
                     S: (slice(None, -1), every, slice(1, None), every),
                     E: (every, slice(None, -1), every, slice(1, None)),
                     W: (every, slice(1, None), every, slice(None, -1))}
        for d, (r0, c0, r1, c1) in neighbour.items():
            ok = edge.copy()
            ok[:, r0, c0] = space[:, OPPOSITE[d], r1, c1]
            bits |= ok.astype(xp.uint8) << d
        return bits

    def push(self, valid, got: Wavelets) -> None:
        """Put the wavelets `got` (5, rows, cols) arriving where `valid` into the queue of
        their colour at their port (each must have `space` for its colour)."""
        mask = valid[None] & (got.colour[None] == self._colour)
        self.queues.push(mask, Wavelets(*(f[None] for f in got)))

    def step(self, cycle: int, pe_space) -> Hop:
        """Arbitrate every router once: `pe_space` (colours, rows, cols) where the PE's queue of
        a colour has space (the ramp's far end). Each output port takes one wavelet a cycle:
        the (colour, port) queues are served in an order that rotates every cycle, so no colour
        or port starves, and a head that cannot go leaves the other colours free to (virtual
        channels). Pops the heads that leave."""
        xp, q = self.xp, self.queues
        heads = q.peek()
        want = xp.where(q.count > 0, self.routes, 0).astype(xp.uint8)
        if self.filters is not None:
            want = self._filter(want, heads)
        links = self.link_space()
        free_c = links | (pe_space.astype(xp.uint8) << RAMP)        # (colours, rows, cols)
        claimed = xp.zeros(self.region, dtype=xp.uint8)
        go = xp.zeros(want.shape, dtype=bool)
        lanes = self._lanes
        for k in range(len(lanes)):
            c, p = lanes[(cycle + k) % len(lanes)]
            ok = (want[c, p] != 0) & ((want[c, p] & ~(free_c[c] & ~claimed)) == 0)
            claimed |= xp.where(ok, want[c, p], 0).astype(xp.uint8)
            go[c, p] = ok
        q.pop(go)
        sent = ((claimed[None] >> self._ports) & 1) == 1
        stalled = ((want != 0) & ~go & ((want & ~links[:, None] & 0x0F) != 0)).any(axis=0)
        return Hop(go, self._outputs(go, want, heads), sent, stalled)

    def _outputs(self, go, want, heads) -> Wavelets:
        """(5, rows, cols) the wavelet on each output port: each head that left, copied to
        every port of its route (no two heads share a port: `claimed`), zero elsewhere. Only
        the heads that left are touched."""
        xp = self.xp
        at = xp.nonzero(go)                                   # (colour, input port, row, col)
        bits = want[at]
        out = empty(xp, go.shape[1:], heads.v.shape[-1])
        for d in range(5):
            through = ((bits >> d) & 1) == 1
            src = tuple(a[through] for a in at)
            for field, head in zip(out, heads):
                field[(d,) + src[2:]] = head[src]
        return out

    def _filter(self, want, heads):
        """The route bits a filtered colour keeps: the ramp for its core's range, the links
        for what lies beyond it."""
        xp = self.xp
        lo, hi = self.filters[:, 0, None], self.filters[:, 1, None]   # (colours, 1, rows, cols)
        ramp = xp.where((heads.idx >= lo) & (heads.idx < hi), want & bit(RAMP), 0)
        links = xp.where(heads.idx >= hi, want & 0x0F, 0)
        return xp.where(lo <= hi, ramp | links, want).astype(xp.uint8)


def by_colour(xp, table, colour):
    """`table` (colours, *shape) read at each element's `colour` (shape): a select per colour
    (a program has a few), cheaper than a gather over the whole fabric."""
    out = xp.broadcast_to(table[0], colour.shape)
    for c in range(1, table.shape[0]):
        out = xp.where(colour == c, table[c], out)
    return out


def arrive(xp, hop: Hop) -> tuple:
    """(valid (5, rows, cols), `Wavelets`): what each input queue N, S, E, W receives over the
    links from its neighbour this cycle (the ramp port gets nothing from the links), and the
    wavelets that left over each edge: {side: (valid (edge,), `Wavelets`)}."""
    sent, out = hop.sent, hop.out
    valid = xp.zeros_like(sent)
    got = Wavelets(xp.zeros_like(out.colour), xp.zeros_like(out.n), xp.zeros_like(out.idx),
                   xp.zeros_like(out.v))
    # a wavelet sent north from (r, c) arrives on the south port of (r - 1, c), and so on
    shifts = {N: ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
              S: ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
              E: ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
              W: ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))}
    for d, (src, dst) in shifts.items():
        port = OPPOSITE[d]
        valid[(port,) + dst] = sent[(d,) + src]
        for field, target in zip(out, got):
            target[(port,) + dst] = field[(d,) + src]
    edges = {N: (0, slice(None)), S: (-1, slice(None)), E: (slice(None), -1), W: (slice(None), 0)}
    left = {PORTS[d]: (sent[(d,) + e], Wavelets(*(f[(d,) + e] for f in out)))
            for d, e in edges.items()}
    return valid, got, left
