"""The cycle loop: routers, PEs, the streams entering over the region's edges and the sinks
that collect what leaves, stepped together one cycle at a time (a loop over cycles only; every
step is array operations over the whole region).

A program (`simulator.fabric.programs`) supplies the routes, the tasks of each colour, what each
PE sends on its ramp, the streams fed in over each edge and how many wavelets each edge sink
expects. The run ends when every sink has them all and the program says it is `finished`;
its cycles are the cycle after the last arrival, or after the cycle its cores were done if that
is later (a program with no outputs, as a first layer's dW). Stats (`Run`): per core the PE's work per colour, its waiting and idle cycles, the
wavelets each port sent, and the cycles each input queue's head waited for space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy
from .pe import PE, Datapath
from .queues import Wavelets
from .router import PORTS, RAMP, Router, arrive

SIDES = {"N": 0, "S": 1, "E": 2, "W": 3}


def edge_cores(side: str, region: tuple) -> tuple:
    """Index of the cores along `side` (row 0 is north), in order along the edge."""
    rows, cols = region
    return {"N": (0, slice(None)), "S": (rows - 1, slice(None)),
            "E": (slice(None), cols - 1), "W": (slice(None), 0)}[side]


class Stream:
    """Wavelets fed into the edge cores of one side, one per cycle per core while the input
    queue facing that side has space: `w` (edge, length) fields, `lengths` (edge,)."""

    def __init__(self, xp, side: str, w: Wavelets, lengths):
        self.xp, self.side, self.port = xp, side, SIDES[side]
        self.w = Wavelets(*(xp.asarray(f) for f in w))
        self.lengths = xp.asarray(lengths)
        self.next = xp.zeros(self.lengths.shape, dtype=xp.int64)

    def feed(self, space) -> tuple:
        """(mask (edge,), `Wavelets` (edge,)) pushed this cycle into queues with `space`."""
        xp = self.xp
        mask = space & (self.next < self.lengths)
        at = xp.minimum(self.next, self.w.colour.shape[1] - 1)[:, None]
        take = lambda a: xp.take_along_axis(a, at, axis=1)[:, 0]
        w = Wavelets(take(self.w.colour), take(self.w.n), take(self.w.idx),
                     xp.take_along_axis(self.w.v, at[..., None], axis=1)[:, 0])
        self.next = self.next + mask
        return mask, w


class Sink:
    """What leaves the region over one side: per edge core, the values (`values` a wavelet),
    index and cycle of every wavelet in arrival order, up to `expected` (edge,) of them."""

    def __init__(self, xp, expected, values: int):
        self.xp = xp
        self.expected = xp.asarray(expected, dtype=xp.int64)
        slots = max(int(np.max(expected)) if np.size(expected) else 0, 1)
        self.count = xp.zeros(self.expected.shape, dtype=xp.int64)
        self.value = xp.zeros(self.expected.shape + (slots, values), dtype=xp.float32)
        self.idx = xp.zeros(self.expected.shape + (slots,), dtype=xp.int32)
        self.cycle = xp.full(self.expected.shape + (slots,), -1, dtype=xp.int64)
        self.extra = xp.zeros(self.expected.shape, dtype=xp.int64)   # beyond what was expected
        self._slot = xp.arange(slots)

    def record(self, cycle: int, valid, w: Wavelets) -> None:
        xp = self.xp
        hot = (valid & (self.count < self.expected))[:, None] & (self._slot == self.count[:, None])
        self.value = xp.where(hot[..., None], w.v[:, None, :], self.value)
        self.idx = xp.where(hot, w.idx[:, None], self.idx)
        self.cycle = xp.where(hot, cycle, self.cycle)
        self.extra += valid & (self.count >= self.expected)
        self.count = self.count + valid

    def full(self):
        return (self.count >= self.expected).all()


@dataclass
class Run:
    """One program run to completion, on the host (NumPy): `cycles`; per core (rows, cols):
    `work` (colours, 3, rows, cols) SIMD, SRAM and task cycles per colour, `waiting` and `idle`
    cycles of the PE, `sent` (5, rows, cols) wavelets out of each port, `blocked` (5, rows,
    cols) cycles each input queue's head waited for space over a link (`router.Hop.stalled`),
    `peak_queue` (5, rows, cols) the most wavelets an input queue held, `peak_pe_queue`
    (colours, rows, cols) the same for the PE's queues, `held` (rows, cols) cycles a PE's send
    waited for space on its ramp; `sinks` per side (values, idx, cycle, count, extra) arrays;
    `extra` the program's `state()` on the host (results held in the PEs, as a dW)."""
    cycles: int
    work: np.ndarray
    waiting: np.ndarray
    idle: np.ndarray
    sent: np.ndarray
    blocked: np.ndarray
    peak_queue: np.ndarray
    peak_pe_queue: np.ndarray
    held: np.ndarray
    sinks: dict
    depth: int
    extra: dict

    @property
    def busy(self) -> np.ndarray:
        """(rows, cols) cycles each PE worked."""
        return self.work.sum(axis=(0, 1))


def run(xp, program, target, depth: int = 4, check_every: int = 1,
        max_cycles: int | None = None) -> Run:
    """Run `program` on a fresh region until its sinks are full; `depth` wavelets per queue.
    `check_every`: cycles between looks at the sinks (each a host sync on a GPU); the cycles
    come out the same, and the stats run on up to that many cycles past the end, which add
    only idle cycles.
    Raises RuntimeError naming the sinks still waiting if it runs past `max_cycles` (default:
    the program's own bound), which a deadlocked program does."""
    values = target.dense_values_per_wavelet
    router = Router(xp, program.routes, depth, values, getattr(program, "filters", None))
    pe = PE(xp, program.colours, router.region, depth, values)
    program.start(xp, Datapath(xp, target))
    streams = [Stream(xp, side, w, lengths) for side, (w, lengths) in program.streams.items()]
    sinks = {side: Sink(xp, expected, values) for side, expected in program.sinks.items()}
    shape = (5,) + router.region
    sent = xp.zeros(shape, dtype=xp.int64)
    blocked, peak = xp.zeros(shape, dtype=xp.int64), xp.zeros(shape, dtype=xp.int64)
    peak_pe = xp.zeros(pe.queues.shape, dtype=xp.int64)
    held = xp.zeros(router.region, dtype=xp.int64)     # a PE's send waiting for its ramp queue
    lost = 0                                           # wavelets off an edge with no sink
    finished = xp.asarray(-1)
    colours = xp.arange(program.colours)[:, None, None]
    limit = max_cycles if max_cycles is not None else program.bound
    cycle = 0
    while True:
        hop = router.step(cycle, pe.queues.space())
        sent += hop.sent
        blocked += hop.stalled
        valid, got, left = arrive(xp, hop)
        to_pe = hop.sent[RAMP][None] & (hop.out.colour[RAMP][None] == colours)
        pe.queues.push(to_pe, Wavelets(*(f[RAMP][None] for f in hop.out)))
        peak_pe = xp.maximum(peak_pe, pe.queues.count)
        for side, (gone, w) in left.items():
            if side in sinks:
                sinks[side].record(cycle, gone, w)
            else:
                lost = lost + gone.sum()
        pe.step(program)
        want, w = program.emit()
        valid[RAMP] = want & router.queues.space()[RAMP]
        program.emitted(valid[RAMP])
        held += want & ~valid[RAMP]
        for field, value in zip(got, w):
            field[RAMP] = value
        for s in streams:
            at = (s.port,) + edge_cores(s.side, router.region)
            valid[at], w = s.feed(router.queues.space()[at])
            for field, value in zip(got, w):
                field[at] = value
        router.queues.push(valid, got)
        peak = xp.maximum(peak, router.queues.count)
        cycle += 1
        # the first cycle the program's cores were done, kept on the device (no sync)
        finished = xp.where((finished < 0) & program.finished(), cycle, finished)
        if cycle % check_every == 0 or cycle >= limit:
            if all(bool(s.full()) for s in sinks.values()) and int(finished) >= 0:
                break
            if cycle >= limit:
                waiting = {side: to_numpy(s.expected - s.count).tolist() for side, s in sinks.items()}
                raise RuntimeError(f"fabric program did not finish in {limit} cycles; sinks still "
                                   f"waiting for wavelets per edge core: {waiting} (a deadlock, "
                                   "or pass a larger max_cycles)")
    if int(lost):
        raise RuntimeError(f"the program routed {int(lost)} wavelet(s) off an edge of the region "
                           f"where no sink receives them (sinks: {sorted(sinks)}): check its routes")
    host = {side: tuple(to_numpy(a) for a in (s.value, s.idx, s.cycle, s.count, s.extra))
            for side, s in sinks.items()}
    # the cycle after the last output, or after the cores were done if that is later
    last = max([int(c.max()) + 1 for _, _, c, _, _ in host.values()] + [int(finished)])
    extra = {k: to_numpy(v) for k, v in getattr(program, "state", dict)().items()}
    return Run(last, to_numpy(pe.work), to_numpy(pe.waiting), to_numpy(pe.idle), to_numpy(sent),
               to_numpy(blocked), to_numpy(peak), to_numpy(peak_pe), to_numpy(held), host, depth,
               extra)


__all__ = ["PORTS", "SIDES", "Run", "Sink", "Stream", "edge_cores", "run"]
