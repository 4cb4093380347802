"""A whole training step on the fabric model: every kernel of a plan, forward and backward, the
routes between them, and the update, next to the analytic step (`compiler.schedule.step`).

Each kernel runs both passes on its own cores at once (`combine.Both`), fed the step's real
tensors (`operands`); each route between two kernels runs as its lanes (`routes`). They are
joined by time: a sample's wavelets may enter a kernel only from the cycle its value has
arrived (a gated stream): the forward input when the producer's sample has crossed the route
to it, the backward input (dY) when the consumer's dX has crossed back, and the last kernel's
backward when its own forward has made the sample's output (the loss's gradient). Since a
kernel's forward and backward share its PE, each depends on the other's arrivals, so the runs
are repeated, kernels forward then backward in plan order, until no arrival moves (a fixed
point: every run's gates are the arrivals the runs around it make). Then each kernel updates
its weights once its last backward is done (`pe.Datapath` over the weights a core holds,
`cost.update_flops` a weight; replicas would add the ring all-reduce, `allreduce`), and the
step ends when the last update does.

A replicated kernel takes every r-th sample on each replica (`Replicas`: one stage a replica,
the same program on its share of the samples) and all-reduces its gradients over them before
the update. Kernels run one fabric region each, so two routes never share a link here (the
analytic model's congestion is not checked).

`Step(..., record=factory)` records the runs for a picture of the step (`trace`): every run of
a stage or a route gets a fresh `factory()` recorder and keeps it as `recorder`, so after the
fixed point each holds the frames of its final run, the one whose timing the step reports. Their
cycles are the step's (a run's gates are cycles of the step), so the frames of all of them lie
on one clock. With no factory nothing is recorded.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from compiler import cost
from compiler.kernels import kind_of

from .combine import Both, Transposed
from .engine import Fabric, Stream, run
from .pe import Datapath
from .programs import part, program_for

PASSES = ("forward", "backward")


class Gated(Stream):
    """`base`'s wavelets, each entering no earlier than its `release` cycle (edge, length),
    read against `clock[0]`, the cycle being stepped."""

    def __init__(self, base: Stream, release, clock: list):
        self.__dict__.update(base.__dict__)
        self.release, self.clock = release, clock

    def feed(self, space) -> tuple:
        xp = self.xp
        at = xp.minimum(self.next, self.release.shape[1] - 1)[:, None]
        ok = xp.take_along_axis(self.release, at, axis=1)[:, 0] <= self.clock[0]
        return super().feed(space & ok)


def gated_run(xp, program, target, depth: int, release: dict, record=None):
    """Run `program` (`engine.run`), each side's stream entering item by item no earlier than
    `release[side]` (items,) (the program's `stream_items` say which item each wavelet is);
    `record`: a `trace.Recorder` shown the fabric after every cycle, as `engine.run` does."""
    fabric, clock = Fabric(xp, program, target, depth), [0]
    latest = 0
    streams = []
    for s in fabric.streams:
        items = np.asarray(program.stream_items[s.side])
        times = np.asarray(release.get(s.side, np.zeros(1)), dtype=np.int64)
        latest = max(latest, int(times.max(initial=0)))
        streams.append(Gated(s, xp.asarray(times[np.minimum(items, len(times) - 1)]), clock))
    fabric.streams = streams
    limit = program.bound + latest
    while True:
        fabric.step(clock[0])
        clock[0] += 1
        if record is not None:
            record.capture(clock[0], fabric)
        if fabric.done():
            return fabric.result()
        if clock[0] >= limit:
            raise RuntimeError(f"the step's program did not finish in {limit} cycles; sinks still "
                               f"waiting: {fabric.waiting()}")


def stage_program(kernel, mapping, target, tensors: dict, harvest: bool) -> Both:
    """Both passes of `kernel` on its cores; a backward whose sides meet the forward's runs
    transposed (built on the region turned over)."""
    forward = program_for(kernel, mapping, target, tensors, harvest, "forward")
    backward = program_for(kernel, mapping, target, tensors, harvest, "backward")
    if set(backward.streams) & set(forward.streams) or set(backward.sinks) & set(forward.sinks):
        turned = type(mapping)(mapping.cols, mapping.rows)
        backward = Transposed(program_for(kernel, turned, target, tensors, harvest, "backward"))
    return Both({"forward": forward, "backward": backward})


class Stage:
    """One kernel's both-pass program and its last run: `done[pass]` (items,) the cycle after
    each sample's output of that pass left (None: the pass sends nothing, a first layer's
    backward), `end` the run's cycles, `gates` it ran with."""

    def __init__(self, kernel, mapping, program: Both):
        self.kernel, self.mapping, self.program = kernel, mapping, program
        self.enter = {name: next(iter(p.streams)) for name, p in program.parts.items()}
        self.run = self.gates = self.recorder = None
        self.done = {name: None for name in PASSES}
        self.end = 0

    def rerun(self, xp, target, depth: int, gates: dict, record=None) -> bool:
        """Run with `gates` {pass: (items,)} unless it last ran with them; whether it ran.
        `record`: a factory of the run's `trace.Recorder` (kept as `recorder`), or None."""
        if self.gates is not None and all(np.array_equal(gates[p], self.gates[p]) for p in PASSES):
            return False
        self.gates = gates
        self.recorder = record() if record is not None else None
        self.run = gated_run(xp, self.program, target, depth,
                             {self.enter[p]: gates[p] for p in PASSES}, self.recorder)
        for name, p in self.program.parts.items():
            self.done[name] = p.item_done(self.program.part_run(name, self.run))
        self.end = self.run.cycles
        return True


def update_cycles(kernel, mapping, target, optimizer, xp=np) -> int:
    """A kernel's update on the fabric: the ring all-reduce and update program with replicas,
    else the busiest core's update on its own datapath (no wavelet moves)."""
    tile = int(kind_of(kernel).weights_per_core(kernel, mapping))
    flops = cost.update_flops(optimizer)
    if not tile:
        return 0
    if mapping.replicas > 1:
        return run(xp, part("update")(tile, mapping, flops), target).cycles
    work = Datapath(np, target).fmac(np, np.int64(tile * flops))
    return int(work.simd + work.sram)


class Replicas:
    """A kernel's stages, one a replica, each taking every `replicas`-th sample: the `Stage`
    protocol over all of the samples (`done` merged, `end` the last replica's)."""

    def __init__(self, kernel, mapping, target, tensors: dict, harvest: bool, samples: int):
        r = mapping.replicas
        self.share = [np.arange(samples)[q::r] for q in range(min(r, samples))]
        self.kernel, self.mapping, self.samples = kernel, mapping, samples
        self.stages = []
        for rows in self.share:
            one = dataclasses.replace(kernel, samples=len(rows))
            mine = {role: v if role == "w" else np.asarray(v)[rows] for role, v in tensors.items()}
            self.stages.append(Stage(one, mapping.replica, stage_program(
                one, mapping.replica, target, mine, harvest)))
        self.program = self.stages[0].program
        self.done = {name: None for name in PASSES}

    @property
    def run(self):
        """The first replica's run (every replica runs the same program on its share)."""
        return self.stages[0].run

    @property
    def end(self) -> int:
        return max(s.end for s in self.stages)

    def rerun(self, xp, target, depth: int, gates: dict, record=None) -> bool:
        ran = [s.rerun(xp, target, depth, {p: g[rows] for p, g in gates.items()}, record)
               for s, rows in zip(self.stages, self.share)]
        for name in PASSES:
            if self.stages[0].done[name] is not None:
                self.done[name] = np.zeros(self.samples, np.int64)
                for s, rows in zip(self.stages, self.share):
                    self.done[name][rows] = s.done[name]
        return any(ran)

    def outputs(self):
        """(fabric's, NumPy's) results of every replica's run."""
        return [(s.program.output(s.run), s.program.reference()) for s in self.stages]


class Step:
    """The step of `kernels` (`plan`'s, each of `samples` samples) on `tensors` {kernel:
    operands}: `cycles`, each kernel's `stages` and `updates`, the `routes` ((placement route,
    its runs) in plan order), and whether the runs reached their fixed point (`converged`) in
    `rounds`. `record`: a factory of `trace.Recorder`s for every run (module docstring)."""

    def __init__(self, plan, kernels, tensors: dict, samples: int, xp=np, depth: int = 4,
                 max_rounds: int = 12, record=None):
        self.plan, self.samples, self.xp, self.depth = plan, samples, xp, depth
        self.record = record
        self.order = [k.name for k in kernels]
        self.stages = {k.name: Replicas(k, plan.mapping[k.name], plan.target, tensors[k.name],
                                        plan.harvest, samples) for k in kernels}
        at = {n: i for i, n in enumerate(self.order)}
        routes = plan.sample_routes
        self.into = {n: {p: [] for p in PASSES} for n in self.order}
        self.routes = []
        for rt in routes:
            way = "forward" if at[rt.edge.src] < at[rt.edge.dst] else "backward"
            program = part("route")(rt, plan.rect, plan.kernels[0].samples, plan.target, samples)
            self.routes.append((rt, _Route(program, samples)))
            self.into[rt.edge.dst][way].append((rt.edge.src, self.routes[-1][1]))
        self.rounds, self.converged = 0, False
        for self.rounds in range(1, max_rounds + 1):
            ran = [self._visit(n) for n in self.order + self.order[::-1]]
            if not any(ran):
                self.converged = True
                break
        self.updates = {n: update_cycles(s.kernel, s.mapping, plan.target, plan.optimizer, xp)
                        for n, s in self.stages.items()}
        self.cycles = max(s.end + self.updates[n] for n, s in self.stages.items())

    def _visit(self, name: str) -> bool:
        stage = self.stages[name]
        gates = {}
        for way in PASSES:
            arrivals = [r.arrivals(self.xp, self.plan.target, self.depth,
                                   self._departures(src, way), self.record)
                        for src, r in self.into[name][way]]
            if way == "backward" and not self.into[name][way]:
                own = stage.done["forward"]                 # the loss: its own output's gradient
                arrivals = [own if own is not None else np.zeros(self.samples, np.int64)]
            gates[way] = np.max(arrivals, axis=0) if arrivals else np.zeros(self.samples, np.int64)
        return stage.rerun(self.xp, self.plan.target, self.depth, gates, self.record)

    def _departures(self, src: str, way: str) -> np.ndarray:
        done = self.stages[src].done[way]
        return np.zeros(self.samples, np.int64) if done is None else done


class _Route:
    """A route's program and its arrivals for the departures it last carried (and that run's
    `recorder`, with a factory)."""

    def __init__(self, program, samples: int):
        self.program, self.samples = program, samples
        self.last = self.times = self.recorder = None

    def arrivals(self, xp, target, depth, departures: np.ndarray, record=None) -> np.ndarray:
        if self.last is None or not np.array_equal(departures, self.last):
            self.last = departures
            self.recorder = record() if record is not None else None
            run = gated_run(xp, self.program, target, depth, {"W": departures}, self.recorder)
            self.times = self.program.arrivals(run)
        return self.times
