"""A route between kernels on the fabric (`simulator.fabric.routes`): its lanes, one wavelet a
cycle each, after as many hops as links."""
import numpy as np

from compiler.placement import Edge, Rect, Route
from compiler.target import wafer
from simulator.fabric.engine import run
from simulator.fabric.programs import part
from simulator.fabric.routes import RouteProgram, gap

TARGET = wafer("classroom")


def test_a_lane_passes_a_wavelet_a_cycle_after_its_hops():
    """2 samples of 4 wavelets over 3 links: the last wavelet enters at cycle 7 and leaves the
    third core 3 cycles later, counted from the next cycle: 11; sample 0 arrives at 7."""
    p = RouteProgram(2, 4, 1, 3, TARGET.dense_values_per_wavelet)
    result = run(np, p, TARGET)
    assert result.cycles == 11 and p.arrivals(result).tolist() == [7, 11]
    np.testing.assert_array_equal(p.output(result)["order"], p.reference()["order"])
    assert result.busy.max() == 0                      # routers only: no PE works


def test_lanes_share_a_sample():
    """10 wavelets over 2 lanes: 5 cycles a sample."""
    p = RouteProgram(3, 10, 2, 5, TARGET.dense_values_per_wavelet)
    assert p.arrivals(run(np, p, TARGET)).tolist() == [10, 15, 20]


def test_the_links_between_two_regions_are_the_gap_between_them():
    a, b = Rect("a", 0, 0, 4, 4), Rect("b", 0, 6, 2, 2)
    assert gap(a, b) == 3 and gap(b, a) == 3
    assert gap(a, Rect("c", 4, 0, 2, 2)) == 1                        # touching: one link
    route = Route(Edge("a", "b", "v", 32), ((2, 2), (1, 7)), ((0, 2), (6, 8)))
    p = part("route")(route, {"a": a, "b": b}, batch=4, target=TARGET, items=2)
    assert p.region == (2, 3) and p.share.tolist() == [4, 4]         # 8 wavelets a sample
