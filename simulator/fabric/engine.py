"""The cycle loop: routers, PEs, the streams entering over the region's edges and the sinks
that collect what leaves, stepped together one cycle at a time (a loop over cycles only; every
step is array operations over the whole region).

A program (`simulator.fabric.programs`) supplies the routes, the tasks of each colour, what each
PE sends on its ramp, the streams fed in over each edge and how many wavelets each edge sink
expects. The run ends when every sink has them all and the program says it is `finished`;
its cycles are the cycle after the last arrival, or after the cycle its cores were done if that
is later (a program with no outputs, as a first layer's dW). Stats (`Run`): per core the PE's work per colour, its waiting and idle cycles, the
wavelets each port sent, and the cycles each input port's heads waited for space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy
from .pe import PE, Datapath
from .queues import Wavelets
from .router import PORTS, RAMP, Router, arrive, by_colour

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

    def head(self) -> Wavelets:
        """The next wavelet of each edge core (edge,) (its last again once all have gone)."""
        xp = self.xp
        at = xp.minimum(self.next, self.w.colour.shape[1] - 1)[:, None]
        take = lambda a: xp.take_along_axis(a, at, axis=1)[:, 0]
        return Wavelets(take(self.w.colour), take(self.w.n), take(self.w.idx),
                        xp.take_along_axis(self.w.v, at[..., None], axis=1)[:, 0])

    def feed(self, space) -> tuple:
        """(mask (edge,), `Wavelets` (edge,)) pushed this cycle into queues with `space` for
        the `head` wavelet's colour."""
        mask = space & (self.next < self.lengths)
        w = self.head()
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
    cols) cycles an input port's heads waited for space over a link (`router.Hop.stalled`),
    `peak_queue` (5, rows, cols) the most wavelets one of a port's queues (one a colour)
    held, `peak_pe_queue` (colours, rows, cols) the same for the PE's queues, `held` (rows, cols) cycles a PE's send
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


class Fabric:
    """A region running one program: its routers, PEs, edge streams and sinks, and the stats
    gathered cycle by cycle (`Run` describes them)."""

    def __init__(self, xp, program, target, depth: int):
        values = target.dense_values_per_wavelet
        self.xp, self.program, self.depth = xp, program, depth
        self.router = Router(xp, program.routes, depth, values, getattr(program, "filters", None))
        self.pe = PE(xp, program.colours, self.router.region, depth, values)
        program.start(xp, Datapath(xp, target))
        self.streams = [Stream(xp, side, w, n) for side, (w, n) in program.streams.items()]
        self.sinks = {side: Sink(xp, expected, values) for side, expected in program.sinks.items()}
        shape, region = (5,) + self.router.region, self.router.region
        # per-core stats in int32 (a run is far shorter than 2**31 cycles): compact on a wafer
        self.sent, self.blocked = (xp.zeros(shape, dtype=xp.int32) for _ in range(2))
        self.peak = xp.zeros(shape, dtype=xp.int8)      # a queue holds at most 127 wavelets
        self.peak_pe = xp.zeros(self.pe.queues.shape, dtype=xp.int8)
        self.held = xp.zeros(region, dtype=xp.int32)    # a PE's send waiting for its ramp queue
        self.lost = 0                                   # wavelets off an edge with no sink
        self.finished = xp.asarray(-1)                  # the first cycle the cores were done
        self._colours = xp.arange(program.colours)[:, None, None]

    def step(self, cycle: int) -> None:
        """One cycle: the routers move wavelets over the links, onto the ramps and off the
        edges; the PEs run their tasks; the PEs' sends and the edge streams enter the queues."""
        xp, router, pe = self.xp, self.router, self.pe
        hop = router.step(cycle, pe.queues.space())
        self.sent += hop.sent
        self.blocked += hop.stalled
        valid, got, left = arrive(xp, hop)
        to_pe = hop.sent[RAMP][None] & (hop.out.colour[RAMP][None] == self._colours)
        pe.queues.push(to_pe, Wavelets(*(f[RAMP][None] for f in hop.out)))
        self.peak_pe = xp.maximum(self.peak_pe, pe.queues.count)
        for side, (gone, w) in left.items():
            if side in self.sinks:
                self.sinks[side].record(cycle, gone, w)
            else:
                self.lost = self.lost + gone.sum()
        pe.step(self.program)
        self._enter(valid, got)
        router.push(valid, got)
        self.peak = xp.maximum(self.peak, router.queues.count.max(axis=0))
        self.finished = xp.where((self.finished < 0) & self.program.finished(), cycle + 1,
                                 self.finished)

    def _enter(self, valid, got) -> None:
        """Add to this cycle's arrivals (`valid`, `got`) the PEs' sends onto their ramps and
        the streams fed in over the edges, where their queues have space."""
        xp, space = self.xp, self.router.queues.space()          # (colours, 5, rows, cols)
        want, w = self.program.emit()
        valid[RAMP] = want & by_colour(xp, space[:, RAMP], w.colour)
        self.program.emitted(valid[RAMP])
        self.held += want & ~valid[RAMP]
        for field, value in zip(got, w):
            field[RAMP] = value
        for s in self.streams:
            at = (s.port,) + edge_cores(s.side, self.router.region)
            valid[at], w = s.feed(by_colour(xp, space[(slice(None),) + at], s.head().colour))
            for field, value in zip(got, w):
                field[at] = value

    def done(self) -> bool:
        """Every sink has its wavelets and the program's cores are done (a host sync)."""
        return all(bool(s.full()) for s in self.sinks.values()) and int(self.finished) >= 0

    def result(self) -> Run:
        """The run on the host; its cycles are the cycle after the last output, or after the
        cores were done if that is later."""
        if int(self.lost):
            raise RuntimeError(f"the program routed {int(self.lost)} wavelet(s) off an edge of the "
                               f"region where no sink receives them (sinks: {sorted(self.sinks)}): "
                               "check its routes")
        host = {side: tuple(to_numpy(a) for a in (s.value, s.idx, s.cycle, s.count, s.extra))
                for side, s in self.sinks.items()}
        last = max([int(c.max()) + 1 for _, _, c, _, _ in host.values()] + [int(self.finished)])
        extra = {k: to_numpy(v) for k, v in getattr(self.program, "state", dict)().items()}
        pe = self.pe
        return Run(last, to_numpy(pe.work), to_numpy(pe.waiting), to_numpy(pe.idle),
                   to_numpy(self.sent), to_numpy(self.blocked), to_numpy(self.peak),
                   to_numpy(self.peak_pe), to_numpy(self.held), host, self.depth, extra)

    def waiting(self) -> dict:
        """Per sink, the wavelets each edge core still waits for."""
        return {side: to_numpy(s.expected - s.count).tolist() for side, s in self.sinks.items()}


def array_bytes(*objects) -> int:
    """Bytes of the arrays `objects` hold (a `Fabric`: its routers, PEs, streams, sinks and
    program), each array once (a view counts as the array it views), found through
    attributes, tuples, lists and dicts."""
    seen, total, todo = set(), 0, list(objects)
    while todo:
        obj = todo.pop()
        while hasattr(getattr(obj, "base", None), "nbytes"):
            obj = obj.base
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, type)):
            continue
        seen.add(id(obj))
        if hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
            total += int(obj.nbytes)
        elif isinstance(obj, (tuple, list)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("simulator", "compiler")):
            todo.extend(vars(obj).values())
    return total


def run(xp, program, target, depth: int = 4, check_every: int = 1,
        max_cycles: int | None = None, record=None) -> Run:
    """Run `program` on a fresh region until its sinks are full and its cores done; `depth`
    wavelets per queue. `check_every`: cycles between looks (each a host sync on a GPU); the
    cycles come out the same, and the stats run on up to that many cycles past the end, which
    add only idle cycles. Raises RuntimeError naming the sinks still waiting if it runs past
    `max_cycles` (default: the program's own bound), which a deadlocked program does.
    `record`: a `trace.Recorder` shown the fabric after every cycle (it keeps frames of what
    moved); none by default, and then nothing is recorded."""
    fabric = Fabric(xp, program, target, depth)
    limit = max_cycles if max_cycles is not None else program.bound
    cycle = 0
    while True:
        fabric.step(cycle)
        cycle += 1
        if record is not None:
            record.capture(cycle, fabric)
        if cycle % check_every == 0 or cycle >= limit:
            if fabric.done():
                return fabric.result()
            if cycle >= limit:
                raise RuntimeError(f"fabric program did not finish in {limit} cycles; sinks still "
                                   f"waiting for wavelets per edge core: {fabric.waiting()} (a "
                                   "deadlock, or pass a larger max_cycles)")


__all__ = ["PORTS", "SIDES", "Fabric", "Run", "Sink", "Stream", "array_bytes", "edge_cores", "run"]
