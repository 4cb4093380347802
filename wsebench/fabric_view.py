"""Watch the cycle-level fabric model run (`simulator.fabric`): which cores work, and the
wavelets on the links, cycle by cycle, a colour per kernel.

    s = wb.compile(...); s.step(x, y)
    timeline = fabric_view.trace_kernel(s, "fc1")        # one kernel's pass on its own cores
    timeline = fabric_view.trace_step(s)                  # the kernels of a step, one after another
    fabric_view.filmstrip(timeline)                       # a few frames side by side (a Figure)
    fabric_view.player(timeline)                          # play, pause, step and scrub (ipywidgets)

Each kernel's pass runs on the fabric model on the step's real tensors (the first `samples`
samples, as `wb.fabric.check` streams them) with a `trace.Recorder`. `trace_step` places each
kernel's replica on its rectangle of the plan's wafer and runs the passes one after another
(forward in plan order, then backward in reverse): the model runs one kernel's program at a
time, so the animation shows no pipelining between kernels, nor the routes between them.
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
from simulator.fabric.operands import operands
from simulator.fabric.trace import Recorder, Timeline

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")
IDLE = "#f2f2f2"                                  # a core no kernel of the timeline holds
# the arrow of a wavelet sent north, south, east, west (the image's row 0 is the north edge)
ARROWS = np.array([(0.0, -0.45), (0.0, 0.45), (0.45, 0.0), (-0.45, 0.0)])


def _tensors(session, kernel, samples: int) -> dict:
    """The kernel's operands from the session's last step (`simulator.fabric.operands`)."""
    trainer = session._trainer
    kept = getattr(trainer.executor, "values", None) or {}
    if trainer.last_timing is None or not kept:
        raise ConfigError("the fabric view streams the tensors of the session's last step: run "
                          "session.step(x, y) (or train) first")
    return operands(trainer.xp, session.plan.graph, kernel, kept, trainer.params, samples)


def _frames(session, name: str, samples: int, pass_: str, every: int) -> list:
    """The frames of kernel `name`'s `pass_` on one replica of its mapping."""
    plan = session.plan
    kernel = _kernel(plan, name)
    one = dataclasses.replace(kernel, samples=samples)
    program = program_for(one, plan.mapping[name].replica, plan.target,
                          _tensors(session, kernel, samples), plan.harvest, pass_)
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


def trace_step(session, samples: int = 1, every: int = 1, kernels=None) -> Timeline:
    """The passes of a training step on the plan's wafer, each kernel (default: every one with a
    fabric program) on its rectangle: the forwards in plan order, then the backwards in
    reverse, one after another."""
    plan = session.plan
    names = list(kernels) if kernels is not None else simulated(session)
    timeline = Timeline((plan.target.rows, plan.target.cols))
    for pass_, order in (("forward", names), ("backward", names[::-1])):
        for name in order:
            rect = plan.rect[name]
            timeline.add(_frames(session, name, samples, pass_, every), (rect.row, rect.col),
                         f"{name} {pass_}")
    return timeline


def lane_colours(timeline: Timeline) -> list[str]:
    """A colour per lane: a kernel's passes share its colour."""
    kernels = list(dict.fromkeys(lane.label.split()[0] for lane in timeline.lanes))
    return [PALETTE[kernels.index(lane.label.split()[0]) % len(PALETTE)] for lane in timeline.lanes]


def image(timeline: Timeline, cycle: int) -> np.ndarray:
    """(rows, cols, 3) RGB: a core its kernel's colour where it worked, faint where its kernel
    holds it, grey elsewhere."""
    active, _ = timeline.at(cycle)
    owner = timeline.owner()
    palette = np.array([mcolors.to_rgb(c) for c in lane_colours(timeline)] or [(0, 0, 0)])
    out = np.broadcast_to(np.array(mcolors.to_rgb(IDLE)), active.shape + (3,)).copy()
    held = owner >= 0
    out[held] = 0.8 + 0.2 * palette[owner[held]]
    on = active >= 0
    out[on] = palette[active[on]]
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
    running = [lane.label for lane in timeline.lanes if lane.at(cycle) is not None]
    ax.set_title(f"cycle {cycle} of {timeline.cycles}" + (f": {', '.join(running)}" if running else ""),
                 fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        seen = {}
        for lane, colour in zip(timeline.lanes, lane_colours(timeline)):
            seen.setdefault(lane.label.split()[0], colour)
        for name, colour in seen.items():
            ax.plot([], [], "s", color=colour, label=name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return ax


def png(timeline: Timeline, cycle: int, dpi: int = 80) -> bytes:
    """One frame (`render`) as PNG bytes."""
    buffer = io.BytesIO()
    render(timeline, cycle).figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def filmstrip(timeline: Timeline, frames: int = 6, cycles=None) -> Figure:
    """Frames side by side at `cycles`; default: the middle of each lane's run (a step's
    kernels, the first `frames`) or, with one lane, `frames` cycles spread over it."""
    if cycles is None:
        lanes = timeline.lanes
        cycles = [(lane.start + lane.end + 1) // 2 for lane in lanes[:frames]] if len(lanes) > 1 \
            else np.linspace(1, max(timeline.cycles, 1), frames).round().astype(int).tolist()
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


__all__ = ["filmstrip", "image", "lane_colours", "player", "png", "render", "simulated",
           "trace_kernel", "trace_step"]
