"""The fabric view: a kernel's pass and a step's passes recorded off the fabric model, frames
rendered as PNG that change from cycle to cycle as wavelets move, a colour per kernel, and the
player's widgets."""
import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

import wsebench as wb
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


def test_a_step_runs_each_kernels_passes_on_its_rectangle_in_its_own_colour(session):
    timeline = fv.trace_step(session)
    names = fv.simulated(session)
    assert [lane.label for lane in timeline.lanes] == \
        [f"{n} forward" for n in names] + [f"{n} backward" for n in names[::-1]]
    starts = [lane.start for lane in timeline.lanes]
    assert starts == sorted(starts) and starts[0] == 0
    colours = dict(zip((lane.label for lane in timeline.lanes), fv.lane_colours(timeline)))
    assert colours["fc1 forward"] == colours["fc1 backward"] != colours["fc2 forward"]
    lane = timeline.lanes[1]
    rect = session.plan.rect[lane.label.split()[0]]
    cycle = next(lane.start + f.cycle for f in lane.frames if f.busy.any())
    active, _ = timeline.at(cycle)
    assert (active == 1).any()
    rows, cols = np.nonzero(active == 1)
    assert rows.min() >= rect.row and cols.min() >= rect.col
    fig = fv.filmstrip(timeline)
    assert len(fig.axes) == min(6, len(timeline.lanes))


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
