"""Programs made of programs: a kernel's forward and backward on the same cores at once
(`Both`), and a program laid on its region turned by 90 degrees (`Transposed`).

A stage of the pipeline runs the forward of later samples while the backward of earlier ones
comes back (`compiler.schedule`: a stage's time is forward + backward per sample), so the whole
step's check (`simulator.fabric.pipeline`) runs both passes of a kernel as one program: their
colours side by side, each pass's streams and sinks on its own sides, the PE serving whichever
task is ready (Cerebras SDK: tasks of different colours share a PE) and its ramp taking a send
of each pass in turn. A pass whose sides would meet the other's (an element-wise kernel streams
west to south both ways) runs transposed: north to east.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .queues import Wavelets
from .router import PORTS, RAMP, N, S, E, W

SWAP = {N: W, W: N, S: E, E: S, RAMP: RAMP}          # port under the transpose (r, c) -> (c, r)
SIDE = {PORTS[a]: PORTS[b] for a, b in SWAP.items() if a != RAMP}


def _swap_bits(bits: np.ndarray) -> np.ndarray:
    out = np.zeros_like(bits)
    for a, b in SWAP.items():
        out |= ((bits >> a) & 1) << b
    return out


def _tw(w: Wavelets) -> Wavelets:
    """Per-core wavelets (..., rows, cols) with values (..., rows, cols, values), transposed."""
    return Wavelets(w.colour.swapaxes(-1, -2), w.n.swapaxes(-1, -2), w.idx.swapaxes(-1, -2),
                    w.v.swapaxes(-2, -3))


def run_view(run, sinks: dict, work=None, extra=None):
    """`run` as a part program sees it: its own sinks (side names its own), work rows, extra."""
    return dataclasses.replace(run, sinks=sinks, work=run.work if work is None else work,
                               extra=run.extra if extra is None else extra)


class Transposed:
    """`inner`, built for the region (cols, rows), run on (rows, cols): the program's core
    (c, r) is core (r, c), its west side the north, its south the east."""

    def __init__(self, inner):
        self.inner = inner
        rows, cols = inner.region
        self.region = (cols, rows)
        self.colours, self.priority, self.reduction = inner.colours, inner.priority, inner.reduction
        routes = np.asarray(inner.routes)
        self.routes = np.empty((routes.shape[0], 5, cols, rows), dtype=routes.dtype)
        for port in range(5):
            self.routes[:, SWAP[port]] = _swap_bits(routes[:, port]).swapaxes(-1, -2)
        if getattr(inner, "filters", None) is not None:
            self.filters = np.asarray(inner.filters).swapaxes(-1, -2)
        self.streams = {SIDE[s]: v for s, v in inner.streams.items()}
        self.sinks = {SIDE[s]: v for s, v in inner.sinks.items()}
        self.stream_items = {SIDE[s]: v for s, v in getattr(inner, "stream_items", {}).items()}
        self.bound = inner.bound

    def start(self, xp, datapath) -> None:
        self.inner.start(xp, datapath)

    def ready(self, colour, heads):
        return self.inner.ready(colour, _tw(heads)).swapaxes(-1, -2)

    def run(self, colour, heads, mask):
        work = self.inner.run(colour, _tw(heads), mask.swapaxes(-1, -2))
        return type(work)(*(w.swapaxes(-1, -2) for w in work))

    def complete(self, colour, mask) -> None:
        self.inner.complete(colour, mask.swapaxes(-1, -2))

    def emit(self):
        want, w = self.inner.emit()
        return want.swapaxes(-1, -2), _tw(w)

    def emitted(self, mask) -> None:
        self.inner.emitted(mask.swapaxes(-1, -2))

    def finished(self):
        return self.inner.finished()

    def state(self) -> dict:
        return getattr(self.inner, "state", dict)()

    def inner_run(self, run):
        return run_view(run, {s: run.sinks[SIDE[s]] for s in self.inner.sinks})

    def output(self, run) -> dict:
        return self.inner.output(self.inner_run(run))

    def reference(self) -> dict:
        return self.inner.reference()

    def item_done(self, run):
        return self.inner.item_done(self.inner_run(run))


class Both:
    """Programs `parts` {pass name: program} on one region, colours side by side in that order.
    The PE serves every part's partial-sum colours first, then the rest in order; its ramp
    takes the parts' sends in turn, a part with nothing to send giving its turn away."""

    def __init__(self, parts: dict):
        self.parts = dict(parts)
        programs = list(self.parts.values())
        self.region = programs[0].region
        self.offset, at = {}, 0
        for name, p in self.parts.items():
            if p.region != self.region:
                raise ValueError(f"the {name} program's region {p.region} is not {self.region}")
            self.offset[name], at = at, at + p.colours
        self.colours = at
        self.routes = np.concatenate([np.asarray(p.routes) for p in programs])
        if any(getattr(p, "filters", None) is not None for p in programs):
            self.filters = np.concatenate([self._filters(p) for p in programs])
        shifted = [(n, p, self.offset[n]) for n, p in self.parts.items()]
        self.reduction = tuple(o + c for _, p, o in shifted for c in p.reduction)
        self.priority = self.reduction + tuple(o + c for _, p, o in shifted for c in p.priority
                                               if c not in p.reduction)
        self.streams, self.sinks, self.stream_items = {}, {}, {}
        for name, p, o in shifted:
            for side, (w, lengths) in p.streams.items():
                self._claim(self.streams, side, name)
                self.streams[side] = (w._replace(colour=(w.colour + o).astype(w.colour.dtype)), lengths)
            for side, expected in p.sinks.items():
                self._claim(self.sinks, side, name)
                self.sinks[side] = expected
            self.stream_items.update(getattr(p, "stream_items", {}))
        self.bound = sum(p.bound for p in programs)
        self.turn = 0

    def _filters(self, p) -> np.ndarray:
        f = getattr(p, "filters", None)
        if f is not None:
            return np.asarray(f, dtype=np.int64)
        out = np.zeros((p.colours, 2) + self.region, dtype=np.int64)
        out[:, 0] = 1                                                     # lo > hi: no filter
        return out

    @staticmethod
    def _claim(taken: dict, side: str, name: str) -> None:
        if side in taken:
            raise ValueError(f"the {name} program streams over side {side}, which another part "
                             "uses: run it transposed (`Transposed`)")

    def _part(self, colour: int):
        for name, p in self.parts.items():
            o = self.offset[name]
            if o <= colour < o + p.colours:
                return p, o
        raise ValueError(f"no part has colour {colour}")

    @staticmethod
    def _heads(heads, o: int, p) -> Wavelets:
        return Wavelets(*(f[o:o + p.colours] for f in heads))

    def start(self, xp, datapath) -> None:
        self.xp = xp
        for p in self.parts.values():
            p.start(xp, datapath)

    def ready(self, colour, heads):
        p, o = self._part(colour)
        return p.ready(colour - o, self._heads(heads, o, p))

    def run(self, colour, heads, mask):
        p, o = self._part(colour)
        return p.run(colour - o, self._heads(heads, o, p), mask)

    def complete(self, colour, mask) -> None:
        p, o = self._part(colour)
        p.complete(colour - o, mask)

    def emit(self):
        """Each core's send this cycle: the part whose turn it is, else the next with one."""
        xp, names = self.xp, list(self.parts)
        sends = [self.parts[n].emit() for n in names]
        order = [(self.turn + k) % len(names) for k in range(len(names))]
        want = xp.zeros(self.region, dtype=bool)
        self._chosen = [xp.zeros(self.region, dtype=bool) for _ in names]
        out = None
        for i in order:
            w_i, v_i = sends[i]
            v_i = v_i._replace(colour=(v_i.colour + self.offset[names[i]]).astype(v_i.colour.dtype))
            pick = w_i & ~want
            self._chosen[i] = pick
            out = v_i if out is None else v_i.where(xp, pick, out)
            want = want | w_i
        self.turn += 1
        return want, out

    def emitted(self, mask) -> None:
        for name, chosen in zip(self.parts, self._chosen):
            self.parts[name].emitted(mask & chosen)

    def finished(self):
        done = None
        for p in self.parts.values():
            f = p.finished()
            done = f if done is None else done & f
        return done

    def state(self) -> dict:
        return {(name, k): v for name, p in self.parts.items()
                for k, v in getattr(p, "state", dict)().items()}

    def part_run(self, name: str, run):
        """`run` as part `name` sees it: its sinks, its colours' work, its state."""
        p, o = self.parts[name], self.offset[name]
        return run_view(run, {s: run.sinks[s] for s in p.sinks}, run.work[o:o + p.colours],
                        {k: v for (n, k), v in run.extra.items() if n == name})

    def output(self, run) -> dict:
        return {f"{name} {k}": v for name, p in self.parts.items()
                for k, v in p.output(self.part_run(name, run)).items()}

    def reference(self) -> dict:
        return {f"{name} {k}": v for name, p in self.parts.items() for k, v in p.reference().items()}
