"""The contest's kernel library: conv, dblock and cblock with the README's performance model.

A kernel is one or more convolutions side by side. Its execution parameters are h', w' (shared)
and (c'_i, k'_i) per convolution; with them (the formulas live in `compiler.kernels.conv.contest`,
which the training convolution kind evaluates too)
- height x width = `contest_shape`: h' w' (max_i c'_i + 1) tiles by 3 sum_i k'_i tiles;
- time   = max_i `conv_time` (cycles per sample);
- memory = max_i `conv_memory` (words on the most loaded tile; the README's ratios taken up to
  whole tiles).
Options over memlimit are invalid. The options implement the same protocol as
`compiler.options.Option` (`area`, `stage_time(samples)`, `mapping`, plus `rotatable`), so
`compiler.search`'s exact min-bottleneck search and `compiler.packing`'s packer run on them
unchanged.

Block shapes (our reading of the README; F = f):
- dblock: 1x1 F->F/4, 3x3 F/4->F/4, 1x1 F/4->F, all at h x w, stride 1;
- cblock: input F/2 channels at h x w (the contest graphs feed it that, e.g. [112][112][128] into
  f=256 h=112): 1x1 F/2->F/4, 3x3 F/4->F/4 stride 2, 1x1 F/4->F at h/2 x w/2, and the strided
  1x1 projection F/2->F.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..kernels.conv.contest import Conv, conv_memory, conv_time, contest_shape
from ..mapping import Mapping
from ..options import unroll_counts
from .reader import Node


def convs_of(node: Node) -> tuple[Conv, ...]:
    a = node.attr
    if node.kind == "conv":
        return (Conv(a["H"], a["W"], a["R"], a["S"], a["C"], a["K"], a["T"], a["U"]),)
    f, h, w = a["f"], a["h"], a["w"]
    if node.kind == "dblock":
        return (Conv(h, w, 1, 1, f, f // 4), Conv(h, w, 3, 3, f // 4, f // 4),
                Conv(h, w, 1, 1, f // 4, f))
    if node.kind == "cblock":
        h2, w2 = max(1, h // 2), max(1, w // 2)
        return (Conv(h, w, 1, 1, f // 2, f // 4), Conv(h, w, 3, 3, f // 4, f // 4, 2, 2),
                Conv(h2, w2, 1, 1, f // 4, f), Conv(h, w, 1, 1, f // 2, f, 2, 2))
    raise ValueError(f"{node.kind} is not a kernel")


@dataclass(frozen=True)
class ContestOption:
    """One execution-parameter choice of a contest kernel."""
    kind: str
    args: tuple[int, ...]          # (h', w', c'_1, k'_1, c'_2, k'_2, ...)
    height: int                    # tiles (rows) unrotated
    width: int                     # tiles (columns) unrotated
    time: float                    # cycles per sample
    memory: int                    # words on the most loaded tile

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def mapping(self) -> Mapping:
        return Mapping(self.height, self.width)

    @property
    def rotatable(self) -> bool:
        """The contest lets every kernel turn by 90 degrees (place(... R90))."""
        return True

    def stage_time(self, samples: int = 1) -> float:
        return self.time


def evaluate(node: Node, args: tuple[int, ...]) -> ContestOption:
    convs = convs_of(node)
    if len(args) != 2 + 2 * len(convs):
        raise ValueError(f"{node.kind} takes {2 + 2 * len(convs)} execution args, got {len(args)}")
    h, w = args[:2]
    times, mems = [], []
    for i, c in enumerate(convs):
        cc, k = args[2 + 2 * i], args[3 + 2 * i]
        times.append(conv_time(c, h, w, cc, k))
        mems.append(conv_memory(c, h, w, cc, k))
    return ContestOption(node.kind, tuple(args), *contest_shape(args), max(times), max(mems))


def _counts(extent: int, limit: int) -> np.ndarray:
    return np.asarray([n for n in unroll_counts(extent, limit) if n <= limit], dtype=np.int64)


@lru_cache(maxsize=512)
def _options(kind: str, convs: tuple[Conv, ...], memlimit: int, long_side: int, short_side: int
             ) -> tuple[ContestOption, ...]:
    """Non-dominated (area, time) options whose rectangle fits long_side x short_side in some
    orientation and whose memory is within memlimit."""
    hmin, wmin = min(c.H for c in convs), min(c.W for c in convs)
    cmax = max(c.C for c in convs)
    parts: list[tuple] = []           # (area, time, height, width, args matrix)
    for h in _counts(hmin, long_side // 2):
        for w in _counts(wmin, long_side // (2 * h)):
            hw = int(h * w)
            for cc in _counts(cmax, long_side // hw - 1):
                height = hw * (int(cc) + 1)
                max_width = long_side if height <= short_side else short_side
                per = []              # per conv: (k values, times, c used), valid k only
                for c in convs:
                    ci = min(int(cc), c.C)
                    ks = _counts(c.K, max_width // 3)
                    mem = conv_memory(c, h, w, ci, ks)
                    t = conv_time(c, h, w, ci, ks)
                    valid = mem <= memlimit
                    if not valid.any():
                        break
                    per.append((ks[valid], t[valid], ci))
                else:
                    # every achievable bottleneck: for each, the least k' per conv reaching it
                    targets = np.unique(np.concatenate([ts for _, ts, _ in per]))
                    targets = targets[targets >= max(ts.min() for _, ts, _ in per)]
                    cols = [np.full(targets.size, h), np.full(targets.size, w)]
                    width = np.zeros(targets.size, dtype=np.int64)
                    worst = np.zeros(targets.size)
                    for ks, ts, ci in per:           # ts is non-increasing in k
                        j = ts.size - np.searchsorted(ts[::-1], targets, side="right")
                        cols += [np.full(targets.size, ci), ks[j]]
                        width += 3 * ks[j]
                        worst = np.maximum(worst, ts[j])
                    fit = width <= max_width
                    if fit.any():
                        parts.append((height * width[fit], worst[fit], np.full(fit.sum(), height),
                                      width[fit], np.stack(cols, axis=1)[fit]))
    if not parts:
        return ()
    area, time, height, width, args = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((time, area))
    area, time, height, width, args = area[order], time[order], height[order], width[order], args[order]
    before = np.concatenate([[np.inf], np.minimum.accumulate(time)[:-1]])
    best = []
    for i in np.nonzero(time < before)[0]:
        a = tuple(int(v) for v in args[i])
        mem = max(conv_memory(c, a[0], a[1], a[2 + 2 * j], a[3 + 2 * j]) for j, c in enumerate(convs))
        best.append(ContestOption(kind, a, int(height[i]), int(width[i]), float(time[i]), mem))
    return tuple(best)


def kernel_options(node: Node, memlimit: int, fabric: tuple[int, int]) -> list[ContestOption]:
    """Valid, non-dominated options of a contest kernel on a fabric (rows, cols), by area."""
    rows, cols = fabric
    return list(_options(node.kind, convs_of(node), memlimit, max(rows, cols), min(rows, cols)))


def option_lists(graph, fabric: tuple[int, int] | None = None) -> dict:
    """Kernel name -> its option list, for `compiler.search`."""
    fabric = fabric or (graph.height, graph.width)
    return {n.name: kernel_options(n, graph.memlimit, fabric) for n in graph.kernels}
