"""Frames of a fabric run, for pictures and animations: which PEs worked, the wavelets each core
sent on each of its four links, and what its input queues held, every few cycles over a window
of the region.

    recorder = Recorder(every=1)
    run(xp, program, target, record=recorder)       # engine.run shows it every cycle
    recorder.frames                                  # [Frame, ...]

With no recorder the run records nothing and costs nothing more. The frames read the engine's
own cumulative counters and difference them between captures, so recording adds no state to the
engine and touches the fabric only on the cycles it captures:
- a PE worked in a cycle exactly when it neither waited nor idled (`pe.PE.step`: a free PE
  starts a task, waits or idles; a busy one works), so the cycles it worked since the last frame
  are the cycles elapsed less its growth in `waiting + idle`;
- the wavelets sent over a link since the last frame are the growth of `Fabric.sent` there.

`Timeline` lays the traces of several runs (the kernels of a plan) on one fabric, each on its
rectangle from its start cycle, and reads the whole fabric at any cycle. A run laid out west to
east (a route's lanes) is `turned` to run the way its wavelets go on the fabric.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import to_numpy

LINK_PORTS = ("N", "S", "E", "W")
# a west-to-east region's port as the region runs `to` that side: (port map N, S, E, W, ramp),
# and the turn of its (rows, cols) cells, a transpose first, then a flip of rows or columns
TURNS = {"E": ((0, 1, 2, 3, 4), False, None), "W": ((0, 1, 3, 2, 4), False, 1),
         "S": ((3, 2, 1, 0, 4), True, None), "N": ((3, 2, 0, 1, 4), True, 0)}


@dataclass(frozen=True)
class Frame:
    """The window at `cycle` (cycles done): `busy` (rows, cols) cycles each PE worked since the
    last frame, `colour` (rows, cols) the colour of its latest task, `links` (4, rows, cols)
    wavelets each core sent north, south, east and west since the last frame, `queued` (5, rows,
    cols) the wavelets in each input port's queues (N, S, E, W, ramp; all colours) now."""
    cycle: int
    busy: np.ndarray
    colour: np.ndarray
    links: np.ndarray
    queued: np.ndarray


class Recorder:
    """Captures a `Frame` every `every` cycles of a run, over `window` (row slice, col slice;
    default the whole region), up to `max_frames` (then it stops capturing: a long run on a
    large window would otherwise fill the host's memory)."""

    def __init__(self, every: int = 1, window: tuple | None = None, max_frames: int = 5000):
        if every < 1 or max_frames < 1:
            raise ValueError(f"every and max_frames must be at least 1; got {every}, {max_frames}")
        self.every, self.window, self.max_frames = every, window, max_frames
        self.frames: list[Frame] = []
        self._last = (0, 0, 0)           # cycle, waiting + idle, sent at the last capture

    def capture(self, cycle: int, fabric) -> None:
        """Called by `engine.run` after each cycle (`cycle` cycles done)."""
        if cycle % self.every or len(self.frames) >= self.max_frames:
            return
        at = self.window or (slice(None), slice(None))
        pe, router = fabric.pe, fabric.router
        free = to_numpy(pe.waiting[at]).astype(np.int64) + to_numpy(pe.idle[at])
        sent = to_numpy(fabric.sent[(slice(None),) + at]).astype(np.int64)
        then, free_then, sent_then = self._last
        busy = (cycle - then) - (free - free_then)
        links = (sent - sent_then)[:4]
        self.frames.append(Frame(cycle, busy.astype(np.int16), to_numpy(pe.colour[at]).astype(np.int8),
                                 links.astype(np.int16),
                                 np.minimum(to_numpy(router.queues.count.sum(axis=0, dtype=np.int16)[
                                     (slice(None),) + at]), 127).astype(np.int8)))
        self._last = (cycle, free, sent)


def turned(frame: Frame, to: str) -> Frame:
    """`frame` of a region whose wavelets run west to east (row r, column c), as that region
    laid to run toward side `to` ("N", "S", "E", "W"): "S" puts row r in column r and column
    c in row c; "W" and "N" also reverse the direction of travel. A port's sends and queue move
    to the port they face after the turn."""
    ports, transpose, flip = TURNS[to]

    def cells(a):
        a = a.swapaxes(-1, -2) if transpose else a
        return np.flip(a, axis=a.ndim - 2 + flip) if flip is not None else a

    links, queued = np.zeros_like(cells(frame.links)), np.zeros_like(cells(frame.queued))
    for port in range(5):
        if port < 4:
            links[ports[port]] = cells(frame.links[port])
        queued[ports[port]] = cells(frame.queued[port])
    return Frame(frame.cycle, cells(frame.busy), cells(frame.colour), links, queued)


@dataclass
class Lane:
    """One run on the timeline: its `frames`, the fabric cell of its window's top-left corner
    `origin` (row, col), the cycle it starts at, its `label` (a kernel's name and pass), and
    whether it `owns` its cells (a kernel does; a route runs over cells a kernel owns)."""
    frames: list
    origin: tuple
    start: int
    label: str
    owns: bool = True

    @property
    def end(self) -> int:
        return self.start + (self.frames[-1].cycle if self.frames else 0)

    def at(self, cycle: int):
        """Its frame at timeline `cycle` (the latest captured by then), or None outside its run."""
        local = cycle - self.start
        if not self.frames or local < self.frames[0].cycle or local > self.frames[-1].cycle:
            return None
        cycles = [f.cycle for f in self.frames]
        return self.frames[int(np.searchsorted(cycles, local, side="right")) - 1]


@dataclass
class Timeline:
    """Runs laid on a `shape` (rows, cols) fabric: `lanes` in order, each a colour of its own;
    `source`: what they were recorded from (a `pipeline.Step`, for a whole step), if anything."""
    shape: tuple
    lanes: list = field(default_factory=list)
    source: object = None

    def add(self, frames: list, origin: tuple, label: str, start: int | None = None,
            owns: bool = True) -> Lane:
        """Place a run's `frames` at `origin`, from `start` (default: when the last lane ends);
        `owns`: whether its cells are its own (`Lane`)."""
        if start is None:
            start = max((lane.end for lane in self.lanes), default=0)
        rows, cols = frames[0].busy.shape if frames else (0, 0)
        if origin[0] + rows > self.shape[0] or origin[1] + cols > self.shape[1]:
            raise ValueError(f"{label}: a {rows} x {cols} window at {origin} does not fit the "
                             f"{self.shape[0]} x {self.shape[1]} fabric")
        lane = Lane(frames, tuple(origin), start, label, owns)
        self.lanes.append(lane)
        return lane

    @property
    def cycles(self) -> int:
        return max((lane.end for lane in self.lanes), default=0)

    def cells(self, lane: Lane) -> tuple:
        rows, cols = lane.frames[0].busy.shape
        r, c = lane.origin
        return slice(r, r + rows), slice(c, c + cols)

    def owner(self) -> np.ndarray:
        """(rows, cols) the lane each cell belongs to (the last one that owns it), -1 none."""
        out = np.full(self.shape, -1, dtype=np.int16)
        for k, lane in enumerate(self.lanes):
            if lane.frames and lane.owns:
                out[self.cells(lane)] = k
        return out

    def _frames_at(self, cycle: int):
        """(lane index, its frame at `cycle`, its cells) of every lane running then."""
        for k, lane in enumerate(self.lanes):
            frame = lane.at(cycle)
            if frame is not None:
                yield k, frame, self.cells(lane)

    def at(self, cycle: int) -> tuple:
        """The fabric at `cycle`: (active (rows, cols) the lane whose PE worked there since its
        last frame, -1 none; links (4, rows, cols) wavelets sent on each link since then)."""
        active = np.full(self.shape, -1, dtype=np.int16)
        links = np.zeros((4,) + tuple(self.shape), dtype=np.int16)
        for k, frame, cells in self._frames_at(cycle):
            active[cells] = np.where(frame.busy > 0, k, active[cells])
            links[(slice(None),) + cells] += frame.links
        return active, links

    def tasks(self, cycle: int) -> np.ndarray:
        """(rows, cols) the colour of the task each PE that worked at `cycle` (since its lane's
        last frame) ran last, -1 where none worked."""
        out = np.full(self.shape, -1, dtype=np.int16)
        for _, frame, cells in self._frames_at(cycle):
            out[cells] = np.where(frame.busy > 0, frame.colour, out[cells])
        return out


__all__ = ["LINK_PORTS", "Frame", "Lane", "Recorder", "Timeline", "turned"]
