"""Frames of a run: they add up to the run's own stats (PE work, link sends), wavelets move from
frame to frame, a window and a coarser step see the same, and a timeline lays runs on a fabric."""
import numpy as np
import pytest

from compiler.target import wafer
from simulator.fabric import run
from simulator.fabric.matmul import MatmulForward
from simulator.fabric.router import E
from simulator.fabric.trace import LINK_PORTS, Frame, Recorder, Timeline, turned

TARGET = wafer("classroom")


def _program(rows=3, cols=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4 * rows)).astype(np.float32)
    w = rng.standard_normal((4 * rows, 3 * cols)).astype(np.float32)
    return MatmulForward(x, w, rows, cols, TARGET.dense_values_per_wavelet, True)


def _recorded(**kwargs):
    recorder = Recorder(**kwargs)
    result = run(np, _program(), TARGET, record=recorder)
    return result, recorder.frames


def test_the_frames_add_up_to_the_runs_work_and_sends():
    result, frames = _recorded(every=1)
    assert [f.cycle for f in frames] == list(range(1, result.cycles + 1))
    np.testing.assert_array_equal(sum(f.busy.astype(np.int64) for f in frames), result.busy)
    np.testing.assert_array_equal(sum(f.links.astype(np.int64) for f in frames), result.sent[:4])
    assert all(((f.busy == 0) | (f.busy == 1)).all() for f in frames)   # a cycle each


def test_wavelets_move_east_along_a_row_from_frame_to_frame():
    """x enters row 0 over its west edge and is multicast east: the first cycle core (0, c)
    sends east comes after core (0, c - 1)'s."""
    _, frames = _recorded(every=1)
    first = [next(f.cycle for f in frames if f.links[E, 0, c] > 0) for c in range(3)]
    assert first == sorted(first) and len(set(first)) == 3
    occupancy = [f.links.sum() for f in frames]
    assert len(set(occupancy)) > 1                      # the links' load changes over the run


@pytest.mark.parametrize("every", [3, 7])
def test_a_coarser_step_or_a_window_sums_to_the_same(every):
    result, frames = _recorded(every=every, window=(slice(1, 3), slice(0, 2)))
    assert frames[0].busy.shape == (2, 2) and frames[0].links.shape == (4, 2, 2)
    assert [f.cycle for f in frames] == list(range(every, result.cycles + 1, every))
    last = frames[-1].cycle
    _, fine = _recorded(every=1)
    np.testing.assert_array_equal(sum(f.busy.astype(int) for f in frames),
                                  sum(f.busy.astype(int) for f in fine[:last])[1:3, 0:2])


def test_nothing_is_recorded_past_max_frames_and_bad_steps_are_refused():
    _, frames = _recorded(every=1, max_frames=5)
    assert len(frames) == 5
    with pytest.raises(ValueError, match="at least 1"):
        Recorder(every=0)


def test_a_timeline_places_runs_one_after_another_on_their_cells():
    _, frames = _recorded(every=1)
    timeline = Timeline((8, 10))
    a = timeline.add(frames, (0, 0), "a")
    b = timeline.add(frames, (4, 5), "b")
    assert b.start == a.end == frames[-1].cycle and timeline.cycles == 2 * a.end
    owner = timeline.owner()
    assert (owner[0:3, 0:4] == 0).all() and (owner[4:7, 5:9] == 1).all() and owner[7, 9] == -1
    busy_a = next(f for f in frames if f.busy.any())
    active, links = timeline.at(busy_a.cycle)
    assert (active[0:3, 0:4] == np.where(busy_a.busy > 0, 0, -1)).all()
    assert (active[4:] == -1).all()                     # b has not started
    active, _ = timeline.at(b.start + busy_a.cycle)
    assert (active[4:7, 5:9] == np.where(busy_a.busy > 0, 1, -1)).all()
    with pytest.raises(ValueError, match="does not fit"):
        timeline.add(frames, (6, 8), "c")


@pytest.mark.parametrize("to", ["E", "W", "S", "N"])
def test_a_west_to_east_run_turned_sends_its_way_from_its_cell(to):
    """A 2 x 4 region whose core (1, 1) sent east: turned to run west it is core (1, 2) of the
    mirrored region sending west; turned south, core (1, 1) of the 4 x 2 region sending south;
    north, core (2, 1) sending north."""
    busy = np.zeros((2, 4), np.int16)
    busy[1, 1] = 1
    links = np.zeros((4, 2, 4), np.int16)
    links[E, 1, 1] = 3
    queued = np.zeros((5, 2, 4), np.int8)
    queued[3, 1, 1] = 2                                   # its west input queue
    out = turned(Frame(5, busy, busy.astype(np.int8), links, queued), to)
    shape = (2, 4) if to in "EW" else (4, 2)
    expected = {"E": (1, 1), "W": (1, 2), "S": (1, 1), "N": (2, 1)}[to]
    assert out.busy.shape == shape and out.cycle == 5
    assert list(zip(*np.nonzero(out.busy))) == [expected]
    assert out.links[LINK_PORTS.index(to)][expected] == 3 and out.links.sum() == 3
    behind = {"E": "W", "W": "E", "S": "N", "N": "S"}[to]     # where its wavelets come from
    assert out.queued[LINK_PORTS.index(behind)][expected] == 2


def test_a_lane_that_does_not_own_its_cells_leaves_them_to_the_kernel_under_it():
    _, frames = _recorded(every=1)
    timeline = Timeline((3, 4))
    timeline.add(frames, (0, 0), "kernel")
    route = timeline.add(frames[:3], (0, 0), "route", start=0, owns=False)
    assert (timeline.owner() == 0).all() and not route.owns
    _, links = timeline.at(2)
    np.testing.assert_array_equal(links, 2 * frames[1].links)   # both lanes' sends add up


def test_a_timeline_reads_the_task_each_working_core_ran():
    _, frames = _recorded(every=1)
    timeline = Timeline((4, 5))
    timeline.add(frames, (1, 1), "a")
    frame = next(f for f in frames if f.busy.any() and (f.busy == 0).any())
    tasks = timeline.tasks(frame.cycle)
    np.testing.assert_array_equal(tasks[1:, 1:], np.where(frame.busy > 0, frame.colour, -1))
    assert (tasks[0] == -1).all() and (tasks[:, 0] == -1).all()
    assert set(np.unique(tasks[tasks >= 0])) <= {0, 1}      # the matmul's two colours
