"""The fabric view: a kernel's pass and a step's passes recorded off the fabric model, frames
rendered as PNG that change from cycle to cycle as wavelets move, a colour per kernel, and the
player's widgets."""
import io

import numpy as np
import pytest
import torch
from matplotlib import colors
from matplotlib.image import imread
from torch import nn

import wsebench as wb
from simulator.fabric.trace import LINK_PORTS
from wsebench import fabric_view as fv


@pytest.fixture(scope="module")
def session():
    torch.manual_seed(0)
    model = wb.models.mlp(16, 32, 4, depth=2, activation="relu")
    x, y = wb.data.spirals(16, 16, 4)
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x[:8], y[:8]),
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.05), backend="numpy")
    s.step(x[:8], y[:8])
    return s


def _pixels(data: bytes) -> np.ndarray:
    return imread(io.BytesIO(data), format="png")


def test_a_kernels_frames_as_png_differ_and_its_wavelets_move(session):
    timeline = fv.trace_kernel(session, "fc1")
    lane = timeline.lanes[0]
    early, late = 2, timeline.cycles // 2
    a, b = fv.png(timeline, early), fv.png(timeline, late)
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels(a).shape == _pixels(b).shape and not np.array_equal(_pixels(a), _pixels(b))
    # a link's occupancy changes between frames: wavelets move
    _, links_a = timeline.at(early)
    _, links_b = timeline.at(late)
    assert links_a.any() and not np.array_equal(links_a, links_b)
    assert lane.label == "fc1 forward" and lane.frames[-1].cycle == timeline.cycles


@pytest.fixture(scope="module")
def step(session):
    return fv.trace_step(session, samples=4)


def test_a_step_is_the_pipelined_run_a_lane_per_kernel_on_its_rectangle_and_route(session, step):
    """The lanes are the whole step's runs (`pipeline.Step`, as `wb.fabric.check` runs it):
    every kernel on its rectangle, both passes at once, all on the step's clock from cycle 0,
    its frames adding up to the run whose cycles the step reports."""
    plan, run = session.plan, step.source
    names = [k.name for k in plan.kernels]
    kernels = [lane for lane in step.lanes if lane.owns]
    routes = [lane for lane in step.lanes if not lane.owns]
    assert [lane.label for lane in kernels] == names and len(routes) == len(plan.sample_routes)
    assert all(lane.start == 0 for lane in step.lanes) and run.converged
    assert run.cycles == wb.fabric.check(session, samples=4, show=False).step.cycles
    for lane in kernels:
        stage = run.stages[lane.label].stages[0]
        np.testing.assert_array_equal(sum(f.busy.astype(np.int64) for f in lane.frames),
                                      stage.run.busy)
        rect = plan.rect[lane.label]
        assert lane.end == stage.run.cycles and lane.origin == (rect.row, rect.col)
    assert step.cycles == max(s.end for s in run.stages.values()) < run.cycles   # + the updates
    colours = fv.lane_colours(step)
    assert len(set(colours[:len(names)])) == len(names)


def test_kernels_overlap_in_time_as_samples_stream_through_the_pipeline(session, step):
    together = fv.busy_together(step)
    assert together, "no cycle has two kernels working at once"
    active, _ = step.at(together[0])
    owners = {step.lanes[k].label for k in np.unique(active[active >= 0])}
    assert len(owners) >= 2 and owners <= {k.name for k in session.plan.kernels}
    a, b = fv.png(step, together[0]), fv.png(step, step.cycles)
    assert not np.array_equal(_pixels(a), _pixels(b))
    assert len(fv.filmstrip(step).axes) == 6


def test_a_routes_wavelets_cross_from_its_producers_edge_toward_its_consumer(session, step):
    """fc1 -> fc2 on the classroom wafer: fc2 sits east of fc1, so the route's lanes send east
    from fc1's east column, one wavelet a link a cycle, as many as its run sent."""
    plan, run = session.plan, step.source
    lane = next(l for l in step.lanes if l.label.startswith("fc1 → fc2"))
    route, runs = next((rt, r) for rt, r in run.routes if rt.edge.src == "fc1" and rt.edge.dst == "fc2")
    fc1, fc2 = plan.rect["fc1"], plan.rect["fc2"]
    assert fc2.col == fc1.col + fc1.width                       # the placement this test reads
    assert lane.origin[1] == fc1.col + fc1.width - 1 and step.owner()[lane.origin] == 0
    east = LINK_PORTS.index("E")
    sent = sum(int(f.links[east].sum()) for f in lane.frames)
    assert sent == sum(int(f.links.sum()) for f in lane.frames)               # east only
    assert sent == sum(int(f.links.sum()) for f in runs.recorder.frames) > 0
    assert lane.frames[0].busy.shape == (route.lanes, 1)                      # adjacent: one link
    assert not any(f.busy.any() for f in lane.frames)                         # routers only


def test_the_player_links_play_and_slider_and_redraws_on_a_move(session):
    widgets = pytest.importorskip("ipywidgets")
    timeline = fv.trace_kernel(session, "fc2")
    box = fv.player(timeline)
    controls, picture = box.children
    play, back, forward, slider = controls.children
    assert isinstance(play, widgets.Play) and slider.max == play.max == timeline.cycles
    first = picture.value
    slider.value = timeline.cycles // 2
    assert picture.value != first
    forward.click()
    assert slider.value == timeline.cycles // 2 + 1


def test_the_view_needs_a_step_and_a_known_kernel():
    torch.manual_seed(0)
    model = wb.models.mlp(16, 32, 4, depth=2)
    x, y = wb.data.spirals(8, 16, 4)
    fresh = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.05), backend="numpy")
    with pytest.raises(wb.ConfigError, match="session.step"):
        fv.trace_kernel(fresh, "fc1")
    fresh.step(x, y)
    with pytest.raises(wb.ConfigError, match="no kernel 'nope'"):
        fv.trace_kernel(fresh, "nope")


def test_a_kernels_cores_are_its_colour_on_a_forward_task_and_darker_on_a_backward_one(step):
    first = fv.backward_colours(step)
    lanes = {lane.label: k for k, lane in enumerate(step.lanes)}
    fc2 = lanes["fc2"]
    colour = np.array(colors.to_rgb(fv.lane_colours(step)[fc2]))
    seen = set()
    for cycle in range(1, step.cycles + 1):
        active, _ = step.at(cycle)
        at = np.argwhere(active == fc2)
        if not len(at):
            continue
        r, c = at[0]
        back = step.tasks(cycle)[r, c] >= first[fc2]
        np.testing.assert_allclose(fv.image(step, cycle)[r, c], colour * (fv.BACKWARD if back else 1))
        seen.add(bool(back))
    assert seen == {False, True}                          # fc2 runs both passes in the step


def test_a_replicated_kernels_replicas_sit_side_by_side_and_count_as_one_kernel():
    torch.manual_seed(0)
    model = wb.models.mlp(16, 32, 4, depth=2, activation="relu")
    x, y = wb.data.spirals(16, 16, 4)
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x[:8], y[:8]),
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.05), backend="numpy",
                   mapping={"fc1": wb.Mapping(2, 4, 2)})
    s.step(x[:8], y[:8])
    step = fv.trace_step(s, samples=2)
    rect = s.plan.rect["fc1"]
    replicas = [lane for lane in step.lanes if lane.label.startswith("fc1 replica")]
    assert [lane.origin for lane in replicas] == [(rect.row, rect.col), (rect.row, rect.col + 4)]
    assert len(set(fv.lane_colours(step)[:2])) == 1
    for cycle in fv.busy_together(step):
        active, _ = step.at(cycle)
        kernels = {step.lanes[k].label.split()[0] for k in np.unique(active[active >= 0])}
        assert len(kernels) >= 2
    # both replicas alone at work: not two kernels at once
    alone = [c for c in range(1, step.cycles + 1)
             if {step.lanes[k].label for k in np.unique(step.at(c)[0]) if k >= 0} ==
             {lane.label for lane in replicas}]
    assert alone and not set(alone) & set(fv.busy_together(step))
