"""The shared packer (compiler.packing): every packing it returns is valid (each kernel once,
a shape from its own list within the target, turned only when allowed, inside the fabric, no
overlaps), it says None when nothing fits, and compile_plan packs with it what the greedy
placer alone cannot."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compiler import Mapping, compile_plan, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.options import Option
from compiler.packing import _HUGE, Shape, _fill, pack, search_and_pack, shapes_of, shelf_pack
from compiler.errors import PlacementError
from compiler.placement import occupancy, place_shapes
from compiler.plan import _search_and_place
from compiler.target import Target


def fabric(rows, cols):
    return Target("f", rows=rows, cols=cols)


def check(packing, items, limit, target, order):
    """Every invariant of one packing."""
    assert [r.name for r in packing.rects] == list(order)
    assert set(packing.chosen) == set(items)
    for r in packing.rects:
        s = packing.chosen[r.name]
        assert s in items[r.name] and s.time <= limit
        assert (r.height, r.width) == (s.height, s.width) or (
            s.rotatable and (r.height, r.width) == (s.width, s.height))
        assert 0 <= r.row and r.row + r.height <= target.rows
        assert 0 <= r.col and r.col + r.width <= target.cols
    occupancy(packing.rects, target)                          # raises on any overlap
    assert packing.bottleneck == max(s.time for s in packing.chosen.values()) <= limit


def random_items(r, rows, cols):
    items = {}
    for k in range(int(r.integers(1, 9))):
        turn = bool(r.integers(0, 2))
        items[f"k{k}"] = [Shape(int(r.integers(1, rows // 2 + 2)), int(r.integers(1, cols + 2)),
                                float(r.integers(1, 5)), turn)
                          for _ in range(int(r.integers(1, 5)))]
    return items


@pytest.mark.parametrize("seed", range(40))
def test_every_packing_is_valid(seed):
    r = np.random.default_rng(seed)
    rows, cols = int(r.integers(2, 12)), int(r.integers(2, 12))
    target, items = fabric(rows, cols), random_items(r, rows, cols)
    order = list(items)[::-1]
    for limit in (2.0, 3.0, 4.0):
        got = pack(items, limit, target, order)
        least = [min((s.area for s in v if s.time <= limit), default=None) for v in items.values()]
        if None in least or sum(least) > target.cores:
            assert got is None
            continue
        for packing in got or ():
            check(packing, items, limit, target, order)
        for strategy in (0, 1, 2):
            shelf = shelf_pack(items, limit, rows, cols, strategy, order)
            if shelf is not None:
                chosen, rects = shelf
                check(SimpleNamespace(chosen=chosen, rects=tuple(rects[n] for n in order),
                                      bottleneck=max(s.time for s in chosen.values())),
                      items, limit, target, order)


def test_rotation_only_when_the_shape_allows_it():
    """A 2 x 8 kernel on a 10 x 3 fabric fits only turned."""
    target = fabric(10, 3)
    fixed, turnable = Shape(2, 8, 1.0), Shape(2, 8, 1.0, rotatable=True)
    assert pack({"a": [fixed]}, 1.0, target) is None
    assert shelf_pack({"a": [fixed]}, 1.0, 10, 3) is None
    for packing in pack({"a": [turnable]}, 1.0, target):
        (r,) = packing.rects
        assert (r.height, r.width) == (8, 2)
    _, rects = shelf_pack({"a": [turnable]}, 1.0, 10, 3)
    assert (rects["a"].height, rects["a"].width) == (8, 2)


def test_greedy_placer_turns_only_the_named_kernels():
    target = fabric(10, 5)
    with pytest.raises(PlacementError, match="'a'"):
        place_shapes(["a", "b"], {"a": (2, 8), "b": (2, 8)}, target, rotate={"b"})
    with pytest.raises(PlacementError, match="'b'"):
        place_shapes(["a", "b"], {"a": (2, 8), "b": (2, 8)}, target, rotate={"a"})
    a, b = place_shapes(["a", "b"], {"a": (2, 8), "b": (2, 8)}, target, rotate={"a", "b"})
    assert (a.height, a.width) == (b.height, b.width) == (8, 2)


@pytest.mark.parametrize("items, limit, why", [
    ({"a": [Shape(3, 3, 1.0)], "b": [Shape(1, 1, 1.0)]}, 1.0, "least areas exceed the fabric"),
    ({"a": [Shape(1, 1, 2.0)]}, 1.0, "no shape within the target"),
    ({"a": [Shape(4, 1, 1.0, rotatable=True)]}, 1.0, "larger than the fabric either way"),
    ({"a": [Shape(2, 2, 1.0)], "b": [Shape(2, 2, 1.0)]}, 1.0, "fits by area, not by shape"),
])
def test_none_when_nothing_fits(items, limit, why):
    target = fabric(3, 3)
    assert pack(items, limit, target) is None, why
    assert all(shelf_pack(items, limit, 3, 3, s) is None for s in (0, 1, 2)), why


def test_shelf_packs_what_the_greedy_placer_cannot():
    """3 x 4 fabric, pipeline a (2 x 4), b (1 x 2), c (1 x 2): the greedy placer puts b in the
    middle of the free row, leaving no 1 x 2 spot for c (in either of its orders); shelves of
    height 1 (b, c) and 2 (a) fill the fabric exactly."""
    target = fabric(3, 4)
    items = {"a": [Shape(2, 4, 1.0)], "b": [Shape(1, 2, 1.0)], "c": [Shape(1, 2, 1.0)]}
    with pytest.raises(PlacementError, match="'c'"):
        place_shapes(["a", "b", "c"], {"a": (2, 4), "b": (1, 2), "c": (1, 2)}, target)
    (packing,) = pack(items, 1.0, target, ["a", "b", "c"])
    assert packing.method.startswith("shelf")
    check(packing, items, 1.0, target, ["a", "b", "c"])
    assert occupancy(packing.rects, target).all()


def test_shelf_chooses_a_shape_other_than_the_cheapest():
    """On a 1 x 8 fabric the smallest (2 x 2) shapes cannot lie; the 1 x 4 ones can, and b's only
    within a target of 1.5."""
    target = fabric(1, 8)
    items = {"a": [Shape(2, 2, 1.0), Shape(1, 4, 1.0)], "b": [Shape(2, 2, 1.0), Shape(1, 4, 1.5)]}
    assert pack(items, 1.0, target) is None
    (packing,) = pack(items, 1.5, target)
    assert {n: (s.height, s.width) for n, s in packing.chosen.items()} == {"a": (1, 4), "b": (1, 4)}
    assert packing.bottleneck == 1.5


def opt(rows, cols, time):
    return Option(Mapping(rows, cols), sample_cycles=time, step_cycles=0.0, memory=1)


def test_search_and_pack_relaxes_only_as_far_as_needed():
    """T* = 1 takes two 2 x 2 regions (8 of 9 cores) that cannot share a 3 x 3 fabric; at 2,
    b's 1 x 2 option packs beside a's 2 x 2, so the target relaxes to 2, not to 4."""
    lists = {"a": [opt(2, 2, 1.0), opt(1, 1, 4.0)], "b": [opt(2, 2, 1.0), opt(1, 2, 2.0)]}
    placed = search_and_pack(lists, fabric(3, 3), 1, ["a", "b"])
    assert placed.t_star == 1.0 and placed.tries >= 2
    for packing in placed.packings:
        assert packing.bottleneck == 2.0
        assert packing.choice().options == {"a": lists["a"][0], "b": lists["b"][1]}
    assert search_and_pack(lists, fabric(1, 2), 1) is None          # no choice fits by area


def test_library_options_say_whether_they_turn():
    """Our Options keep their orientation (rows and columns are loop dimensions); a library
    whose options declare `rotatable` (the ISPD contest's) turns them, with no special case."""
    ours = shapes_of({"a": [opt(2, 3, 1.0)]}, 1)["a"][0]
    assert (ours.height, ours.width, ours.time, ours.rotatable) == (2, 3, 1.0, False)
    theirs = SimpleNamespace(mapping=Mapping(2, 3), area=6, rotatable=True,
                             stage_time=lambda samples: 7.0)
    shape = shapes_of({"b": [theirs]}, 1)["b"][0]
    assert (shape.rotatable, shape.payload, shape.time) == (True, theirs, 7.0)


def test_search_and_place_packs_what_greedy_placement_cannot():
    """compile_plan's search uses the shared packer: the one-option kernels of the shelf case
    above pack at T* with no relaxation."""
    kernels = [SimpleNamespace(name=n) for n in ("a", "b", "c")]
    lists = {"a": [opt(2, 4, 3.0)], "b": [opt(1, 2, 1.0)], "c": [opt(1, 2, 2.0)]}
    (choice, rects, relaxed), = _search_and_place(kernels, [lists], fabric(3, 4), 1)
    assert relaxed == 0 and choice.bottleneck == 3.0
    assert occupancy(rects, fabric(3, 4)).all()


def test_compile_plan_packs_what_greedy_placement_cannot(make_mlp):
    """The MLP's kernels fc1, fc2, log_softmax pinned to the shapes of the shelf case above on a
    3 x 4 wafer: the greedy placer alone finds no room for log_softmax."""
    model, loss_fn, example = make_mlp(d_in=16, hidden=32, d_out=8, batch=8)
    graph = capture(model, loss_fn, example, method="aot")
    sgd = optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1))
    target = wafer("classroom", rows=3, cols=4)
    pin = {"fc1": Mapping(2, 4), "fc2": Mapping(1, 2), "log_softmax": Mapping(1, 2)}
    with pytest.raises(PlacementError):
        place_shapes(list(pin), {n: (m.rows, m.width) for n, m in pin.items()}, target)
    plan = compile_plan(graph, target, sgd, mapping=pin)
    assert dict(plan.meta)["relaxations"] == 0
    assert {n: (r.height, r.width) for n, r in plan.rect.items()} == {
        n: (m.rows, m.width) for n, m in pin.items()}
    assert occupancy(plan.rects, target).all()


def reference_fill(key, col, cols):
    """The shelf's greedy fill one kernel at a time."""
    used, chosen = 0, []
    for i in key:
        if col[i] <= cols and used + col[i] <= cols:
            chosen.append(int(i))
            used += col[i]
    return chosen


def test_shelf_fill_is_the_one_at_a_time_fill():
    r = np.random.default_rng(17)
    for _ in range(300):
        n, cols = int(r.integers(0, 20)), int(r.integers(1, 30))
        col = r.choice([1, 2, 3, 5, 8, cols, cols + 1, _HUGE], n).astype(np.int64)
        key = r.permutation(n)
        assert _fill(key, col, cols) == reference_fill(key, col, cols)
