"""compiler.free_space: the free spot nearest a point, from candidate corners only, is the one a
search of every corner finds (brute force on small fabrics, a whole-fabric scan on larger ones
where the search window grows), as rectangles are placed and lifted out again."""
from __future__ import annotations

import numpy as np

from compiler.free_space import FreeSpace
from compiler.placement import Rect, free_mask


def brute_nearest(occupied, h, w, toward):
    """Every free top-left corner, tried one by one: the nearest centre (L1) to `toward`, ties
    broken by row then column, as `place` documents."""
    best = None
    for row in range(occupied.shape[0] - h + 1):
        for col in range(occupied.shape[1] - w + 1):
            if occupied[row:row + h, col:col + w].any():
                continue
            key = (abs(row + h / 2 - toward[0]) + abs(col + w / 2 - toward[1]), row, col)
            best = key if best is None or key < best else best
    return None if best is None else best[1:]


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


def scattered_rects(r, rows, cols, count, side):
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
        for rect in scattered_rects(r, rows, cols, int(r.integers(0, 8)), 5):
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
        rects = scattered_rects(r, rows, cols, 40, 16)
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
