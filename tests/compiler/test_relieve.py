"""Relieving congestion (`compiler.relieve`): a region whose routes share a busy link with
another kernel's routes is moved off it, and only when that lowers the stages congestion sets."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.placement import Edge, Rect, occupancy
from compiler.plan import pair_traffic
from compiler.relieve import excess, relieve
from compiler.routing import Laid, LinkLoads, Router
from compiler.target import wafer
from tests.compiler.test_free_space import scattered_rects
from tests.compiler.test_routing import random_edges

T = wafer("classroom", rows=16, cols=32)


def congestion(router: Router, names, samples=1) -> dict[str, float]:
    """Per kernel: the busiest link its routes cross, per sample."""
    peaks = router.peaks() / samples
    return {n: max((p for p, e in zip(peaks, router.edges) if n in (e.src, e.dst)), default=0.0)
            for n in names}


def test_excess_is_the_stages_congestion_lifts_above_the_largest_own_work():
    own = np.array([10.0, 150.0, 20.0])
    assert excess(own, np.array([100.0, 120.0, 140.0])) == ()
    assert excess(own, np.array([200.0, 0.0, 160.0])) == (200.0, 160.0)
    assert excess(own, np.array([200.0, 0.0, 0.0])) < excess(own, np.array([200.0, 0.0, 160.0]))
    assert excess(own, np.array([190.0, 0.0, 0.0])) < excess(own, np.array([200.0, 0.0, 0.0]))


def corridor():
    """a -> b, heavy, runs east over a's 8 rows; s -> t, light, sits inside that band and has
    only 2 lanes whichever way it goes, so all its candidates share a's eastward links."""
    rects = (Rect("a", 0, 0, 8, 4), Rect("s", 2, 12, 2, 2), Rect("t", 2, 18, 2, 2),
             Rect("b", 0, 28, 8, 4))
    edges = [Edge("a", "b", "x", 800), Edge("s", "t", "y", 200)]
    own = {"a": 150.0, "s": 10.0, "t": 10.0, "b": 150.0}
    return rects, edges, own


def test_the_culprit_leaves_the_busy_link_and_congestion_no_longer_sets_a_stage():
    """Before: s -> t and a -> b share links (100 + 100 wavelets each), so congestion (200) sets
    every stage above the largest own work (150). `relieve` moves the smallest region at the
    ends of the routes over that link (s) next to its partner, off a's band direction, and
    then no stage is above 150; a, b and t stay, sizes never change, nothing overlaps."""
    rects, edges, own = corridor()
    router = Router(edges, rects, (T.rows, T.cols))
    before = congestion(router, own)
    assert before["s"] == pytest.approx(200.0) == before["a"]
    assert before["s"] > max(own.values())
    traffic = {("a", "b"): 800, ("s", "t"): 200}
    after = relieve(router, own, traffic, samples=1)
    cong = congestion(after, own)
    assert max(cong.values()) <= max(own.values()) < max(before.values())
    assert excess(np.array(list(own.values())), np.array(list(cong.values()))) == ()
    moved = {n: r for n, r in after.where.items() if r != router.where[n]}
    assert set(moved) == {"s"} and (moved["s"].height, moved["s"].width) == (2, 2)
    occupancy(tuple(after.where.values()), T)
    assert router.where["s"] == rects[1]                    # the original is left as it was


def test_nothing_moves_when_congestion_sets_no_stage_or_no_move_helps():
    """With the own work above the shared link's load there is nothing to relieve; with no
    tries left nothing is tried. Either way the router comes back as it was."""
    rects, edges, own = corridor()
    router = Router(edges, rects, (T.rows, T.cols))
    traffic = {("a", "b"): 800, ("s", "t"): 200}
    assert relieve(router, {**own, "a": 250.0}, traffic, samples=1) is router
    assert relieve(router, own, traffic, samples=1, tries=0) is router


def test_the_assumed_share_scales_the_congestion_relieve_sees():
    """At half the wavelets (a sparse plan's assumed share) the shared link carries 100, under
    the largest own work: nothing to relieve."""
    rects, edges, own = corridor()
    router = Router(edges, rects, (T.rows, T.cols))
    traffic = {("a", "b"): 800, ("s", "t"): 200}
    assert relieve(router, own, traffic, samples=1, share=0.5) is router


def test_relieve_only_ever_lowers_the_excess():
    """On random placements and traffic: what `relieve` returns has strictly less excess
    (`excess`) than what it was given, or is what it was given; regions keep their sizes and
    do not overlap, and the link loads are those of the routes."""
    r = np.random.default_rng(5)
    lowered = 0
    for _ in range(25):
        rects = tuple(scattered_rects(r, T.rows, T.cols, 6, 5))
        edges = [e for e in random_edges(r, rects, 12) if e.src != e.dst]
        names = [x.name for x in rects]
        router = Router(edges, rects, (T.rows, T.cols))
        traffic = pair_traffic(edges)
        cong = congestion(router, names)
        own = {n: float(r.uniform(0.2, 0.9)) * max(cong.values()) for n in names}
        after = relieve(router, own, traffic, samples=1)
        before_key = excess(np.array(list(own.values())), np.array(list(cong.values())))
        after_key = excess(np.array(list(own.values())),
                           np.array(list(congestion(after, names).values())))
        if after is router:
            continue
        assert after_key < before_key
        lowered += 1
        placed = tuple(after.where[n] for n in names)
        assert [(x.height, x.width) for x in placed] == [(x.height, x.width) for x in rects]
        occupancy(placed, T)
        sums = LinkLoads(placed, (T.rows, T.cols))
        for rt in after.routes:
            sums.add(Laid(rt))
        assert np.allclose(after.loads.loads, sums.loads)
    assert lowered > 3
