"""Watch the cycle-level fabric model run (`simulator.fabric`): which cores work, and the
wavelets on the links, cycle by cycle, a colour per kernel.

    s = wb.compile(...); s.step(x, y)
    timeline = fabric_view.trace_kernel(s, "fc1")        # one kernel's pass on its own cores
    timeline = fabric_view.trace_step(s)                  # the whole step, pipelined
    fabric_view.filmstrip(timeline)                       # a few frames side by side (a Figure)
    fabric_view.player(timeline)                          # play, pause, step and scrub (ipywidgets)

Each run streams the step's real tensors (the first `samples` samples, as `wb.fabric.check`
streams them) with a `trace.Recorder`. `trace_step` records the whole step as
`simulator.fabric.pipeline.Step` runs it (`wb.fabric.check(s)` with no kernel): every kernel's
forward and backward at once on its own cores (each replica on its share of the rectangle),
samples entering a kernel as they arrive over the routes between kernels, whose wavelets are
drawn on the links from the producer's facing edge toward the consumer (a route's first leg;
its lanes hold no cores of their own). The step's runs are repeated until their timing settles
(a fixed point); the frames are each run's last, the ones whose cycles the step reports, all on
the step's clock. The weight updates after each kernel's last backward (no wavelet moves
without replicas) are not drawn: the timeline ends when the last kernel's backward does, and
`timeline.source.cycles` (the `Step`) adds them.
A frame is one image (`imshow`) and one set of arrows (`quiver`), whatever the fabric's size.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from compiler import ConfigError
from simulator.fabric import PROGRAMS, program_for, run
from simulator.fabric.pipeline import Step
from simulator.fabric.trace import Frame, Recorder, Timeline, turned

from .fabric import step_operands

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
IDLE = "#f2f2f2"                                  # a core no kernel of the timeline holds
BACKWARD = 0.55                                   # a core on a backward task: its colour darker
# the arrow of a wavelet sent north, south, east, west (the image's row 0 is the north edge)
ARROWS = np.array([(0.0, -0.45), (0.0, 0.45), (0.45, 0.0), (-0.45, 0.0)])


def _frames(session, name: str, samples: int, pass_: str, every: int) -> list:
    """The frames of kernel `name`'s `pass_` on one replica of its mapping."""
    plan = session.plan
    kernel = _kernel(plan, name)
    one = dataclasses.replace(kernel, samples=samples)
    program = program_for(one, plan.mapping[name].replica, plan.target,
                          step_operands(session, [kernel], samples)[name], plan.harvest, pass_)
    recorder = Recorder(every=every)
    run(session._trainer.xp, program, plan.target, record=recorder)
    return recorder.frames


def _kernel(plan, name: str):
    if name not in plan.kernel:
        raise ConfigError(f"no kernel {name!r} in this plan; kernels: {[k.name for k in plan.kernels]}")
    return plan.kernel[name]


def simulated(session) -> list[str]:
    """The plan's kernels whose kind has a fabric program, in plan order."""
    return [k.name for k in session.plan.kernels if k.kind in PROGRAMS]


def trace_kernel(session, kernel: str | None = None, samples: int = 1, pass_: str = "forward",
                 every: int = 1) -> Timeline:
    """`kernel`'s `pass_` (default: the first kernel with a fabric program) on its own replica's
    cores, a frame every `every` cycles."""
    name = kernel or next(iter(simulated(session)), None)
    if name is None:
        raise ConfigError(f"no kernel of this plan has a fabric program; kinds with one: {sorted(PROGRAMS)}")
    _kernel(session.plan, name)
    mapping = session.plan.mapping[name].replica
    timeline = Timeline((mapping.rows, mapping.cols))
    timeline.add(_frames(session, name, samples, pass_, every), (0, 0), f"{name} {pass_}")
    return timeline


def trace_step(session, samples: int = 1, every: int = 1, max_frames: int = 5000,
               depth: int = 4) -> Timeline:
    """The whole training step of the plan on its wafer, as `pipeline.Step` runs it for the
    first `samples` samples: a lane per kernel replica on its rectangle, both passes at once,
    and a lane per route between kernels; all start at cycle 0 of the step (module docstring).
    A frame every `every` cycles, at most `max_frames` a run. `timeline.source`: the `Step`."""
    plan = session.plan
    kernels = [dataclasses.replace(k, samples=samples) for k in plan.kernels]
    step = Step(plan, kernels, step_operands(session, plan.kernels, samples), samples,
                session._trainer.xp, depth, record=lambda: Recorder(every, max_frames=max_frames))
    timeline = Timeline((plan.target.rows, plan.target.cols), source=step)
    for name in step.order:
        rect, cols = plan.rect[name], plan.mapping[name].cols
        replicas = step.stages[name].stages
        for q, stage in enumerate(replicas):
            label = name if len(replicas) == 1 else f"{name} replica {q}"
            timeline.add(stage.recorder.frames, (rect.row, rect.col + q * cols), label, start=0)
    for route, runs in step.routes:
        frames, origin = _route_frames(route, plan.rect[route.edge.src], runs, timeline.shape)
        if frames:
            timeline.add(frames, origin, f"{route.edge.src} → {route.edge.dst} "
                         f"({route.edge.value})", start=0, owns=False)
    return timeline


def _route_frames(route, source, runs, shape: tuple) -> tuple:
    """(frames, origin) of a route's last run (`pipeline`: lanes run west to east), turned to
    leave `source`'s facing edge along its path's first leg, within the fabric's `shape`."""
    legs = [(a, b, band) for a, b, band in zip(route.path, route.path[1:],
                                                route.bands or [None] * len(route.path)) if a != b]
    if not legs or runs.recorder is None or not runs.recorder.frames:
        return [], (0, 0)
    (ra, ca), (rb, cb), band = legs[0]
    to = "E" if cb > ca else "W" if cb < ca else "S" if rb > ra else "N"
    frames = [turned(f, to) for f in runs.recorder.frames]
    height, width = frames[0].busy.shape
    lo = band[0] if band else (ra if to in "EW" else ca)
    edge = {"E": source.col + source.width - 1, "W": source.col - width + 1,
            "S": source.row + source.height - 1, "N": source.row - height + 1}[to]
    origin = (lo, edge) if to in "EW" else (edge, lo)
    return _crop(frames, origin, shape)


def _crop(frames: list, origin: tuple, shape: tuple) -> tuple:
    """The part of `frames` placed at `origin` that lies on a `shape` fabric, and its origin."""
    height, width = frames[0].busy.shape
    r0, c0 = max(origin[0], 0), max(origin[1], 0)
    r1, c1 = min(origin[0] + height, shape[0]), min(origin[1] + width, shape[1])
    if r1 <= r0 or c1 <= c0:
        return [], (0, 0)
    rows, cols = slice(r0 - origin[0], r1 - origin[0]), slice(c0 - origin[1], c1 - origin[1])
    return [Frame(f.cycle, f.busy[rows, cols], f.colour[rows, cols], f.links[:, rows, cols],
                  f.queued[:, rows, cols]) for f in frames], (r0, c0)


def _kernel_of(lane) -> str:
    """The kernel a lane belongs to: a pass, a replica or a route it sends on ("fc1 forward",
    "fc1 replica 1", "fc1 → fc2 (relu)")."""
    return lane.label.split()[0]


def lane_colours(timeline: Timeline) -> list[str]:
    """A colour per lane: a kernel's passes (and its replicas, and the routes it sends on)
    share its colour."""
    kernels = list(dict.fromkeys(_kernel_of(lane) for lane in timeline.lanes))
    return [PALETTE[kernels.index(_kernel_of(lane)) % len(PALETTE)] for lane in timeline.lanes]


def backward_colours(timeline: Timeline) -> np.ndarray:
    """Per lane, the first task colour of its kernel's backward pass in a whole step's run
    (`combine.Both` puts the backward's colours after the forward's); no backward: a colour
    no task has."""
    step, never = timeline.source, np.iinfo(np.int16).max
    if not isinstance(step, Step):
        return np.full(len(timeline.lanes), never)
    first = {name: s.program.offset.get("backward", never) for name, s in step.stages.items()}
    return np.array([first.get(_kernel_of(lane), never) if lane.owns else never
                     for lane in timeline.lanes])


def image(timeline: Timeline, cycle: int) -> np.ndarray:
    """(rows, cols, 3) RGB: a core its kernel's colour where it worked (darker on a backward
    task), faint where its kernel holds it, grey elsewhere."""
    active, _ = timeline.at(cycle)
    owner = timeline.owner()
    palette = np.array([mcolors.to_rgb(c) for c in lane_colours(timeline)] or [(0, 0, 0)])
    out = np.broadcast_to(np.array(mcolors.to_rgb(IDLE)), active.shape + (3,)).copy()
    held = owner >= 0
    out[held] = 0.8 + 0.2 * palette[owner[held]]
    on = active >= 0
    back = timeline.tasks(cycle)[on] >= backward_colours(timeline)[active[on]]
    out[on] = palette[active[on]] * np.where(back, BACKWARD, 1.0)[:, None]
    return out


def render(timeline: Timeline, cycle: int, ax=None, legend: bool = True):
    """One frame on `ax` (default: a new figure): the cores, an arrow for every link that carried
    a wavelet since the previous frame, and the cycle. Returns the axes."""
    if ax is None:
        ax = Figure(figsize=(5.5, 5.5), layout="constrained").subplots()
    ax.imshow(image(timeline, cycle), interpolation="nearest")
    _, links = timeline.at(cycle)
    port, rows, cols = np.nonzero(links)
    if port.size:
        ax.quiver(cols, rows, ARROWS[port, 0], ARROWS[port, 1], angles="xy", scale_units="xy",
                  scale=1, color="black", width=0.004, headwidth=4, headlength=4)
    busy = [timeline.lanes[k].label for k in _active(timeline, cycle)]
    ax.set_title(f"cycle {cycle} of {timeline.cycles}" + (f": {', '.join(busy)}" if busy else ""),
                 fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        seen = {}
        for lane, colour in zip(timeline.lanes, lane_colours(timeline)):
            if lane.owns:
                seen.setdefault(_kernel_of(lane), colour)
        for name, colour in seen.items():
            ax.plot([], [], "s", color=colour, label=name)
        if (backward_colours(timeline) < np.iinfo(np.int16).max).any():
            ax.plot([], [], "s", color=str(BACKWARD), label="darker: backward")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return ax


def png(timeline: Timeline, cycle: int, dpi: int = 80) -> bytes:
    """One frame (`render`) as PNG bytes."""
    buffer = io.BytesIO()
    render(timeline, cycle).figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _active(timeline: Timeline, cycle: int) -> np.ndarray:
    """The lanes whose cores worked at `cycle` (since their previous frame)."""
    active, _ = timeline.at(cycle)
    return np.unique(active[active >= 0])


def busy_together(timeline: Timeline) -> list[int]:
    """The cycles (of those captured) in which the cores of two or more kernels worked at once
    (a kernel's replicas count as one)."""
    cycles = sorted({lane.start + f.cycle for lane in timeline.lanes for f in lane.frames})
    kernel = [_kernel_of(lane) for lane in timeline.lanes]
    return [c for c in cycles if len({kernel[k] for k in _active(timeline, c)}) >= 2]


def filmstrip(timeline: Timeline, frames: int = 6, cycles=None) -> Figure:
    """Frames side by side at `cycles`; default: `frames` cycles spread over the timeline."""
    if cycles is None:
        cycles = np.linspace(1, max(timeline.cycles, 1), frames).round().astype(int).tolist()
    fig = Figure(figsize=(2.6 * len(cycles) + 1.2, 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(cycles)))
    for k, (ax, cycle) in enumerate(zip(axes, cycles)):
        render(timeline, int(cycle), ax=ax, legend=k == len(cycles) - 1)
    return fig


def player(timeline: Timeline, dpi: int = 80):
    """Play, pause, step and scrub over the timeline's cycles: an ipywidgets `Play` linked to a
    slider, over an `Image` showing the frame (rendered when the slider moves)."""
    import ipywidgets as w

    last = max(timeline.cycles, 1)
    play = w.Play(value=1, min=1, max=last, step=1, interval=150, description="play")
    slider = w.IntSlider(value=1, min=1, max=last, description="cycle",
                         layout=w.Layout(width="60%"))
    back, forward = w.Button(description="◀ step"), w.Button(description="step ▶")
    picture = w.Image(value=png(timeline, 1, dpi), format="png")
    w.jslink((play, "value"), (slider, "value"))
    slider.observe(lambda change: setattr(picture, "value", png(timeline, change["new"], dpi)),
                   names="value")
    back.on_click(lambda _: setattr(slider, "value", max(slider.value - 1, 1)))
    forward.on_click(lambda _: setattr(slider, "value", min(slider.value + 1, last)))
    return w.VBox([w.HBox([play, back, forward, slider]), picture])


__all__ = ["backward_colours", "busy_together", "filmstrip", "image", "lane_colours", "player", "png", "render", "simulated",
           "trace_kernel", "trace_step"]
