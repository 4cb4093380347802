"""compile_plan's fast paths against slow, obvious references: the same decisions, bit for bit.

compile_plan finds each free spot among candidate corners (`placement.FreeSpace`), refines by
measuring only the moved kernel's wires, works a kernel's figures out once for every replica
set and pipeline position (`options.Cells`), finds the Pareto front and the search's cheapest
options on arrays (`options._pareto`, `search.Lists`), and lets repeated layers share the
packers' per-kernel tables (`packing.shapes_of`, `packing._kernels`, `packing._fill`). Each is
checked here against a reference that does the obvious thing, on random small cases; then
compile_plan as a whole against itself with every reference patched in.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import compiler.packing as packing
import compiler.placement as placement
import compiler.plan as plan_module
import compiler.search as search
from compiler import compile_plan, wafer
from compiler.estimate import memory_per_core, sample_cycles, update_cycles
from compiler.frontend import capture, optimizer_spec
from compiler.mapping import Mapping
from compiler.optim_spec import OptimizerSpec
from compiler.options import (Cells, Option, _thin, boundary_cycles, cached_options,
                              clear_cache, kernel_options, pareto, unroll_counts)
from compiler.placement import FreeSpace, Rect, free_mask, refine, wire_length
from compiler.search import Lists
from tests.compiler.test_options import random_kernel
from tests.compiler.test_placement import brute_nearest

import wsebench as wb

SGD = OptimizerSpec("sgd", lr=0.1)
ADAM = OptimizerSpec("adam", lr=1e-3)


# ---------------------------------------------------------------- the references


def scan_nearest(occupied: np.ndarray, h: int, w: int, toward) -> tuple[int, int] | None:
    """Every corner of the fabric at once (`free_mask`, checked against brute force in
    test_placement): the nearest centre, ties to the first in row-major order."""
    free = free_mask(occupied, h, w)
    if not free.any():
        return None
    dr = np.abs(np.arange(free.shape[0]) + h / 2 - toward[0])
    dc = np.abs(np.arange(free.shape[1]) + w / 2 - toward[1])
    best = int(np.argmin(np.where(free, dr[:, None] + dc[None, :], np.inf)))
    return divmod(best, free.shape[1])


def grid_of(rects, shape) -> np.ndarray:
    occupied = np.zeros(shape, dtype=bool)
    for r in rects:
        occupied[r.cells()] = True
    return occupied


def reference_nearest(space: FreeSpace, h: int, w: int, toward):
    """`FreeSpace.nearest` by scanning the whole fabric."""
    if h > space.shape[0] or w > space.shape[1]:
        return None
    return scan_nearest(grid_of(space.rects, space.shape), h, w, toward)


def reference_refine(rects, pairs, target, passes=2):
    """`placement.refine` measuring the total wire length after every trial move."""
    rects, talks = list(rects), {frozenset(pair) for pair in pairs}
    length = wire_length(tuple(rects), pairs)
    for _ in range(passes):
        improved = False
        for i, rect in enumerate(rects):
            near = [r for r in rects if frozenset((r.name, rect.name)) in talks]
            if not near:
                continue
            occupied = grid_of(rects[:i] + rects[i + 1:], (target.rows, target.cols))
            centroid = (np.mean([r.center[0] for r in near]), np.mean([r.center[1] for r in near]))
            spot = scan_nearest(occupied, rect.height, rect.width, centroid)
            if spot is not None and spot != (rect.row, rect.col):
                trial = rects[:i] + [Rect(rect.name, *spot, rect.height, rect.width)] + rects[i + 1:]
                if wire_length(tuple(trial), pairs) < length:
                    rects, length, improved = trial, wire_length(tuple(trial), pairs), True
        if not improved:
            break
    return tuple(rects)


def reference_pareto(options, samples):
    """Sort by (area, stage time, widest narrow side), keep each option faster than the last kept."""
    best = []
    narrow = lambda o: min(o.mapping.rows, o.mapping.width)       # noqa: E731
    for opt in sorted(options, key=lambda o: (o.area, o.stage_time(samples), -narrow(o))):
        if not best or opt.stage_time(samples) < best[-1].stage_time(samples):
            best.append(opt)
    return best


def reference_options(kernel, target, optimizer, in_flight, density=(1.0, 1.0), replicas=(1,),
                      per_dim=24, harvest=True, boundary=0.0):
    """`kernel_options` building every option one by one from the cost model, then the front."""
    rows_extent, cols_extent = kernel.nest.extents
    options = []
    for r in _thin(unroll_counts(rows_extent, target.rows), per_dim):
        for c in _thin(unroll_counts(cols_extent, target.cols), per_dim):
            if kernel.nest.one_dim and r * c > rows_extent:
                continue
            memory = memory_per_core(kernel, Mapping(r, c), target, optimizer, in_flight)
            if memory > target.sram_bytes:
                continue
            sample = sample_cycles(kernel, Mapping(r, c), target, density, harvest)
            for rep in replicas:
                if rep > kernel.samples or r > target.rows or c * rep > target.cols:
                    continue
                m = Mapping(r, c, rep)
                options.append(Option(m, sample, update_cycles(kernel, m, target, optimizer),
                                      memory, boundary_cycles(boundary, m)))
    return reference_pareto(options, kernel.samples)


def reference_fill(key, col, cols):
    """The shelf's greedy fill one kernel at a time."""
    used, chosen = 0, []
    for i in key:
        if col[i] <= cols and used + col[i] <= cols:
            chosen.append(int(i))
            used += col[i]
    return chosen


def reference_cheapest(options, limit, samples):
    fitting = [o for o in options if o.stage_time(samples) <= limit]
    return min(fitting, key=lambda o: (o.area, o.stage_time(samples))) if fitting else None


def reference_times(option_lists, samples):
    if any(not opts for opts in option_lists.values()):
        return []
    floor = max(min(o.stage_time(samples) for o in opts) for opts in option_lists.values())
    return sorted({o.stage_time(samples) for opts in option_lists.values() for o in opts
                   if o.stage_time(samples) >= floor})


# ---------------------------------------------------------------- placement


def random_rects(r, rows, cols, count, side):
    """Non-overlapping random rectangles (some tries are dropped)."""
    rects, occupied = [], np.zeros((rows, cols), dtype=bool)
    for i in range(count):
        h, w = int(r.integers(1, side + 1)), int(r.integers(1, side + 1))
        if h > rows or w > cols:
            continue
        row, col = int(r.integers(0, rows - h + 1)), int(r.integers(0, cols - w + 1))
        if not occupied[row:row + h, col:col + w].any():
            rects.append(Rect(f"k{i}", row, col, h, w))
            occupied[row:row + h, col:col + w] = True
    return rects


def random_toward(r, rows, cols):
    """Whole, half and third coordinates (a centroid of three centres), in and off the fabric."""
    pick = lambda n: float(r.integers(-2, 3 * n + 6)) / float(r.integers(1, 4))   # noqa: E731
    return pick(rows) - 2, pick(cols) - 2


def test_nearest_is_the_brute_force_nearest():
    r = np.random.default_rng(11)
    for _ in range(150):
        rows, cols = int(r.integers(1, 14)), int(r.integers(1, 14))
        space = FreeSpace(rows, cols)
        for rect in random_rects(r, rows, cols, int(r.integers(0, 8)), 5):
            space.add(rect)
        h, w = int(r.integers(1, 7)), int(r.integers(1, 7))
        toward = random_toward(r, rows, cols)
        want = brute_nearest(grid_of(space.rects, (rows, cols)), h, w, toward) \
            if h <= rows and w <= cols else None
        assert space.nearest(h, w, toward) == want, (space.rects, h, w, toward)


def test_nearest_follows_rectangles_coming_and_going():
    """Larger fabrics, where the search window grows, with rectangles lifted out and put back."""
    r = np.random.default_rng(12)
    for _ in range(25):
        rows, cols = int(r.integers(20, 70)), int(r.integers(20, 70))
        rects = random_rects(r, rows, cols, 40, 16)
        space = FreeSpace(rows, cols)
        for rect in rects:
            space.add(rect)
        for _ in range(8):
            if rects and r.random() < 0.5:
                gone = rects.pop(int(r.integers(len(rects))))
                space.remove(gone)
            h, w = int(r.integers(1, 18)), int(r.integers(1, 18))
            toward = random_toward(r, rows, cols)
            assert space.nearest(h, w, toward) == reference_nearest(space, h, w, toward)


def test_refine_is_the_reference_refinement():
    r = np.random.default_rng(13)
    target = wafer("classroom", rows=24, cols=30)
    moved = 0
    for _ in range(30):
        rects = tuple(random_rects(r, target.rows, target.cols, 14, 7))
        names = [x.name for x in rects]
        pairs = sorted({tuple(sorted((names[int(a)], names[int(b)])))
                        for a, b in r.integers(0, len(names), (len(names) + 3, 2)) if a != b})
        passes = int(r.integers(1, 4))
        got = refine(rects, pairs, target, passes)
        assert got == reference_refine(rects, pairs, target, passes)
        moved += got != rects
    assert moved > 5                     # the references are compared on real moves


# ---------------------------------------------------------------- options, search, packing


def test_kernel_options_are_the_reference_options(make_matmul, make_generated):
    """Fresh, and through one shared `Cells` over every replica set, position and boundary."""
    r = np.random.default_rng(14)
    for _ in range(8):
        kern = random_kernel(r, make_matmul, make_generated)
        target = wafer("classroom", sram_bytes=int(r.integers(4, 48)) * 1024)
        cells = Cells(kern, target)
        for _ in range(3):
            args = ([SGD, ADAM][int(r.integers(2))], int(r.integers(1, 9)),
                    (float(r.uniform(0.1, 1)), 1.0), [(1,), (2,), (1, 2, 4)][int(r.integers(3))])
            kwargs = {"per_dim": 10, "boundary": float(r.choice([0.0, 50.0, 4096.0]))}
            want = reference_options(kern, target, *args, **kwargs)
            assert kernel_options(kern, target, *args, **kwargs) == want
            assert kernel_options(kern, target, *args, **kwargs, cells=cells) == want


def test_pareto_is_the_reference_front():
    r = np.random.default_rng(15)
    for _ in range(60):
        options = [Option(Mapping(int(r.integers(1, 5)), int(r.integers(1, 5)), int(r.integers(1, 3))),
                          float(r.integers(1, 6)), float(r.integers(0, 3)), 0, float(r.integers(0, 4)))
                   for _ in range(int(r.integers(0, 30)))]       # small integers: many ties
        samples = int(r.integers(1, 4))
        assert pareto(options, samples) == reference_pareto(options, samples)


def random_lists(r):
    """Option lists with ties on area and time; some kernels share one list (repeated layers)."""
    def one():
        return [Option(Mapping(int(r.integers(1, 4)), int(r.integers(1, 4))),
                       float(r.integers(1, 8)), 0.0, 0) for _ in range(int(r.integers(0, 7)))]
    shared = one()
    return {f"k{i}": shared if r.random() < 0.4 else one() for i in range(int(r.integers(1, 6)))}


def test_lists_pick_the_reference_cheapest_and_times():
    r = np.random.default_rng(16)
    for _ in range(100):
        lists = random_lists(r)
        table = Lists(lists, 1)
        assert table.times() == reference_times(lists, 1)
        for limit in np.arange(0.0, 9.0, 0.5):
            for opts in lists.values():
                assert table.cheapest(opts, limit) is reference_cheapest(opts, limit, 1)


def test_shelf_fill_is_the_one_at_a_time_fill():
    r = np.random.default_rng(17)
    for _ in range(300):
        n, cols = int(r.integers(0, 20)), int(r.integers(1, 30))
        col = r.choice([1, 2, 3, 5, 8, cols, cols + 1, packing._HUGE], n).astype(np.int64)
        key = r.permutation(n)
        assert packing._fill(key, col, cols) == reference_fill(key, col, cols)


# ---------------------------------------------------------------- compile_plan as a whole


@pytest.fixture
def references(monkeypatch):
    """compile_plan with every fast path replaced by its reference."""
    monkeypatch.setattr(FreeSpace, "nearest", reference_nearest)
    monkeypatch.setattr(plan_module, "refine", reference_refine)
    monkeypatch.setattr(plan_module, "cached_options",
                        lambda k, t, o, f, d, reps, harvest, boundary:
                        reference_options(k, t, o, f, d, reps, harvest=harvest, boundary=boundary))
    monkeypatch.setattr(search.Lists, "cheapest",
                        lambda self, opts, limit: reference_cheapest(opts, limit, self.samples))
    monkeypatch.setattr(search.Lists, "times",
                        lambda self: reference_times(self.option_lists, self.samples))
    monkeypatch.setattr(packing, "_fill", reference_fill)
    monkeypatch.setattr(packing, "_kernels", lambda items, limit, rows, cols: {
        n: packing._Kernel(s, limit, rows, cols) for n, s in items.items()})
    fresh = packing.shapes_of
    monkeypatch.setattr(packing, "shapes_of", lambda lists, samples: {
        n: fresh({n: list(opts)}, samples)[n] for n, opts in lists.items()})


@pytest.fixture(scope="module")
def stack():
    """A 3-layer transformer: repeated layers share option lists, shapes and shelf tables."""
    torch.manual_seed(0)
    model = wb.models.transformer(vocab=20, d_model=16, heads=2, layers=3, ffn=32, max_len=8,
                                  classes=2)
    example = (torch.randint(1, 20, (8, 8)), torch.randint(0, 2, (8,)))
    opt = optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1))
    return capture(model, nn.CrossEntropyLoss(), example, method="aot"), opt


# both relax the target after T* and refine moves kernels in each
CASES = [({"rows": 12, "cols": 40}, "auto"), ({"rows": 20, "cols": 20}, "data")]


@pytest.mark.parametrize("overrides,strategy", CASES)
def test_compile_plan_decides_as_the_references_do(stack, overrides, strategy, request):
    graph, opt = stack
    target = wafer("classroom", **overrides)
    clear_cache()
    fast = compile_plan(graph, target, opt, mapping=strategy)
    request.getfixturevalue("references")
    slow = compile_plan(graph, target, opt, mapping=strategy)
    assert fast.to_json() == slow.to_json()
    assert fast.estimate() == slow.estimate()
