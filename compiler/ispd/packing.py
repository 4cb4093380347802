"""Shape-choosing shelf packer for the contest.

At a target time T every kernel may use any of its options with time <= T, in either orientation,
so the packer chooses the shapes. The fabric is cut into horizontal shelves. For a shelf of
height H a kernel costs the least width among its (oriented) options no taller than H. Shelves are
opened one at a time: for each candidate H (the heights of the remaining kernels' options), the
shelf is filled greedily by the kernels that use it best (least area over H x width wasted), and
the H whose shelf holds the most useful area (the kernels' least areas at T) per row is kept;
once the remaining kernels fit one shelf, the least such height closes the packing. Space under
the shorter kernels of a shelf is left free (no nested shelves).
"""
from __future__ import annotations

import numpy as np

from ..placement import Rect


class _Kernel:
    __slots__ = ("name", "hs", "ws", "prefix_w", "prefix_i", "opts", "least")

    def __init__(self, name, options, limit, max_side):
        fit = [o for o in options if o.time <= limit]
        self.name = name
        self.least = min(o.area for o in fit) if fit else None
        cand = []
        for o in fit:
            if o.height <= max_side[0] and o.width <= max_side[1]:
                cand.append((o.height, o.width, o))
            if o.height != o.width and o.width <= max_side[0] and o.height <= max_side[1]:
                cand.append((o.width, o.height, o))
        cand.sort(key=lambda c: (c[0], c[1]))
        self.hs = np.array([c[0] for c in cand], dtype=np.int64)
        self.ws = np.array([c[1] for c in cand], dtype=np.int64)
        self.opts = [c[2] for c in cand]
        # least width (and its index) among options no taller than hs[i]
        pw, pi = [], []
        best_w, best_i = None, -1
        for i, w in enumerate(self.ws):
            if best_w is None or w < best_w:
                best_w, best_i = int(w), i
            pw.append(best_w)
            pi.append(best_i)
        self.prefix_w = np.array(pw, dtype=np.int64)
        self.prefix_i = np.array(pi, dtype=np.int64)

    def width_at(self, heights: np.ndarray) -> np.ndarray:
        """Least width per shelf height (a huge number where nothing fits)."""
        j = np.searchsorted(self.hs, heights, side="right") - 1
        out = np.full(len(heights), 1 << 40, dtype=np.int64)
        ok = j >= 0
        out[ok] = self.prefix_w[j[ok]]
        return out

    def pick(self, height: int):
        j = int(np.searchsorted(self.hs, height, side="right")) - 1
        if j < 0:
            return None
        i = int(self.prefix_i[j])
        return int(self.hs[i]), int(self.ws[i]), self.opts[i]


def _fill(kernels, remaining, H, cols, widths, order_key):
    """Greedy fill of one shelf of height H: kernels by order_key, first fit in width."""
    order = sorted(remaining, key=order_key)
    used, chosen = 0, []
    for k in order:
        w = widths[k]
        if used + w <= cols:
            chosen.append(k)
            used += w
    return chosen, used


def shelf_pack(option_lists: dict, limit: float, rows: int, cols: int, strategy: int = 0,
               order: list | None = None):
    """Pack every kernel at target time `limit` into rows x cols; returns
    ({name: option}, {name: Rect}) or None when the shelves overflow the fabric. `order` (the
    pipeline order) sets the kernels' order along each shelf, so neighbours stay close."""
    kernels = {n: _Kernel(n, opts, limit, (rows, cols)) for n, opts in option_lists.items()}
    if any(k.least is None or not len(k.hs) for k in kernels.values()):
        return None
    remaining = set(kernels)
    y = 0
    options, rects = {}, {}
    shelves = []                        # (y, H, [(name, x, h, w)])
    while remaining:
        left = rows - y
        if left <= 0:
            return None
        heights = np.unique(np.concatenate([kernels[n].hs for n in remaining]))
        heights = heights[heights <= left]
        if not heights.size:
            return None
        # width of each remaining kernel at every candidate height
        names = sorted(remaining)
        W = np.stack([kernels[n].width_at(heights) for n in names])          # k x h
        least = np.array([kernels[n].least for n in names], dtype=np.float64)
        # if everything fits in one shelf of some height, take the least such height
        fits_all = W.sum(axis=0) <= cols
        if fits_all.any():
            H = int(heights[np.argmax(fits_all)])
            chosen = names
        else:
            best = None
            eff = least[:, None] / (W * heights[None, :])                      # use of its space
            for hi, H in enumerate(heights):
                col = W[:, hi]
                ok = col <= cols
                if not ok.any():
                    continue
                e = eff[:, hi]
                if strategy == 0:
                    key = np.lexsort((-least, -e))
                elif strategy == 1:
                    key = np.lexsort((-e, -least * (e > 0.9)))
                else:
                    key = np.lexsort((-e, -col))
                used, chosen_i = 0, []
                for i in key:
                    if ok[i] and used + col[i] <= cols:
                        chosen_i.append(i)
                        used += col[i]
                score = least[chosen_i].sum() / (H * cols)
                if best is None or score > best[0] + 1e-12:
                    best = (score, int(H), [names[i] for i in chosen_i])
            if best is None:
                return None
            _, H, chosen = best
        # pipeline order along the shelf, snaking (odd shelves right to left)
        rank = {n: i for i, n in enumerate(order or sorted(option_lists))}
        chosen = sorted(chosen, key=lambda n: rank.get(n, 0), reverse=len(shelves) % 2 == 1)
        x, row = 0, []
        for n in chosen:
            h, w, o = kernels[n].pick(H)
            row.append((n, x, h, w, o))
            x += w
        for n, x0, h, w, o in row:
            options[n] = o
            rects[n] = Rect(n, y, x0, h, w)
            remaining.discard(n)
        shelves.append((y, H, row))
        y += H
    return options, rects
