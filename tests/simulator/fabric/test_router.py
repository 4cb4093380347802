"""The router: multicast along a static route reaches every core on it, no wavelet is lost,
duplicated or reordered, and a queue never holds more than its depth (back-pressure)."""
import numpy as np
import pytest

from compiler.target import wafer
from simulator.fabric import run
from simulator.fabric.queues import Wavelets
from simulator.fabric.router import RAMP, E, N, W, route_mask

TARGET = wafer("classroom")


def _values(rows, length, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, length)).astype(np.float32)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_multicast_delivers_every_wavelet_to_every_core_on_the_route_in_order(relay, depth):
    values = _values(3, 20)
    program = relay(values, cols=4)
    result = run(np, program, TARGET, depth=depth)
    assert (program.received == 20).all()                         # every PE of every row
    np.testing.assert_allclose(program.total, np.repeat(values.sum(axis=1, keepdims=True), 4, 1),
                               rtol=1e-5)
    got, idx, _, count, extra = result.sinks["E"]
    assert count.tolist() == [20, 20, 20] and not extra.any()     # conserved, none duplicated
    np.testing.assert_array_equal(got[..., 0], values)            # in order
    np.testing.assert_array_equal(idx, np.tile(np.arange(20), (3, 1)))
    assert result.peak_queue.max() <= depth and result.peak_pe_queue.max() <= depth


def test_one_wavelet_per_link_per_cycle_sets_the_pace_of_a_fast_stream(relay):
    """PEs that keep up: 20 wavelets pass 4 cores and the edge link in 20 + 4 cycles (one
    wavelet per link per cycle, one cycle a hop)."""
    result = run(np, relay(_values(1, 20), cols=4), TARGET)
    assert result.cycles == 20 + 4
    assert result.sent[E].tolist() == [[20, 20, 20, 20]]
    assert result.sent[RAMP].tolist() == [[20, 20, 20, 20]]


def test_back_pressure_holds_the_stream_to_the_slowest_pe_and_no_queue_overflows(relay):
    """The last column's PEs take 5 cycles a wavelet, the others 1: the multicast waits for
    every queue on its route, so the stream moves at the slowest PE's pace, the heads before
    it wait for the link into it, and the full queues hold exactly their depth."""
    length, depth = 30, 2
    result = run(np, relay(_values(2, length), cols=3, cost=np.array([1, 1, 5])), TARGET,
                 depth=depth)
    assert result.cycles >= 5 * (length - 2 * depth)
    assert result.peak_queue.max() == depth and result.peak_pe_queue.max() == depth
    stalled = result.blocked.sum(axis=(0, 1))                    # per column
    assert stalled[1] > 0 and stalled[2] == 0                    # the link into the slow column
    assert result.sinks["E"][3].tolist() == [length, length]


def test_a_route_with_no_output_deadlocks_and_says_so(relay):
    program = relay(_values(1, 3), cols=2, route=route_mask())
    with pytest.raises(RuntimeError, match="did not finish"):
        run(np, program, TARGET)


def test_wavelets_routed_off_an_edge_without_a_sink_are_an_error(relay):
    program = relay(_values(1, 3), cols=2)
    program.sinks = {}
    with pytest.raises(RuntimeError, match="off an edge of the region where no sink"):
        run(np, program, TARGET)


def _crossing(relay, slow: int, through: int, cost: int = 5):
    """A 1 x 2 row whose east link two colours share: colour 0 (`slow` wavelets from the west
    edge) ends at core 1's PE, `cost` cycles a wavelet; colour 1 (`through` wavelets from the
    north edge into core 0) passes core 1 and leaves over the east edge. Both arrive on core
    1's west port."""
    program = relay(np.zeros((1, slow), np.float32), cols=2, cost=np.array([1, cost]))
    program.colours, program.priority = 2, (0, 1)
    program.routes = np.zeros((2, 5, 1, 2), dtype=np.uint8)
    program.routes[0, W, 0] = route_mask(E), route_mask(RAMP)
    program.routes[1, N, 0, 0] = program.routes[1, W, 0, 1] = route_mask(E)
    ones = np.ones((2, through))
    program.streams["N"] = (Wavelets((ones).astype(np.int16), ones.astype(np.int8),
                                     np.tile(np.arange(through, dtype=np.int32), (2, 1)),
                                     np.zeros((2, through, 2), np.float32)), np.array([through, 0]))
    program.sinks = {"E": np.array([through])}
    program.finished = lambda: program.received[0, 1] >= slow
    return program


def test_a_colour_waiting_for_its_pe_does_not_block_another_colour_on_the_same_port(relay):
    """Colours are virtual channels (Cerebras SDK): core 1's west port has a queue per colour,
    so once colour 0 fills its queue there (its PE takes 5 cycles a wavelet) it stops taking
    core 0's east link (back-pressure on colour 0 only), and colour 1 has the link to itself.
    The link moves one wavelet a cycle, shared in turn while both colours have one to send, so
    colour 1's 20 wavelets leave within 2 x 20 cycles plus the 2 hops, while colour 0's PE
    starts its last wavelet 5 x 19 cycles after its first (the run ends as it starts: the
    program counts a wavelet when its task starts). Behind one queue per port, colour 1 would
    wait behind colour 0 at core 1 and leave at colour 0's pace instead."""
    slow = through = 20
    result = run(np, _crossing(relay, slow, through), TARGET, depth=2)
    _, _, cycle, count, extra = result.sinks["E"]
    assert count.tolist() == [through] and not extra.any()
    assert cycle.max() + 1 <= 2 * through + 2
    assert result.cycles > 5 * (slow - 1)
    assert result.peak_queue[W, 0, 1] == 2                   # colour 0's queue at core 1 filled
    assert result.blocked[E, 0, 0] == 0 and result.blocked[W, 0, 0] > 0   # only colour 0 waited
