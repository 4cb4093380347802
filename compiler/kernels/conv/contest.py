"""The ISPD 2020 contest's convolution kernel model, the one source of the convolution formulas:
`compiler.ispd.library` (the contest) and the training convolution kind (`compiler.kernels.conv`)
both evaluate these.

A convolution of an H x W input with C channels into K channels, kernel R x S, stride T x U,
runs with execution parameters h', w' (the input split over height and width), c' (input
channels) and k' (output channels) (contest README, "conv" kernel):
- its rectangle is h' w' (c' + 1) cores high and 3 k' wide (`contest_shape`);
- time   = ceil(H/h') ceil(W/w') ceil(C/c') ceil(K/k') R S / T^2 cycles per sample (`conv_time`):
  the multiply-accumulates of one core's tile;
- memory = ceil(C/c') ceil(K/k') R S (the weight tile, `conv_weight_words`) +
  ceil((W+S-1)/w') ceil((H+R-1)/h') ceil(K/k') (`conv_window_words`) words on a core.
Every formula takes ints or NumPy integer arrays alike (`cdiv` is the ceiling of a division for
both), so the contest's vectorized option search and the kind's per-mapping cost read the same
lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


COLUMNS_PER_BLOCK = 3     # the rectangle is 3 k' wide: three columns per output-channel block


@dataclass(frozen=True)
class Conv:
    H: int
    W: int
    R: int
    S: int
    C: int
    K: int
    T: int = 1
    U: int = 1


def cdiv(a, b):
    """ceil(a / b) for positive ints and integer arrays."""
    return -(-a // b)


def conv_time(c: Conv, h, w, cc, k):
    return cdiv(c.H, h) * cdiv(c.W, w) * cdiv(c.C, cc) * cdiv(c.K, k) * c.R * c.S / c.T ** 2


def conv_weight_words(c: Conv, cc, k):
    return cdiv(c.C, cc) * cdiv(c.K, k) * c.R * c.S


def conv_window_words(c: Conv, h, w, k):
    return cdiv(c.W + c.S - 1, w) * cdiv(c.H + c.R - 1, h) * cdiv(c.K, k)


def conv_memory(c: Conv, h, w, cc, k):
    return conv_weight_words(c, cc, k) + conv_window_words(c, h, w, k)


def contest_shape(args: tuple[int, ...]) -> tuple[int, int]:
    """(height, width) in cores of execution args (h', w', c'_1, k'_1, ...): convolutions side
    by side share h', w'."""
    h, w, cs, ks = args[0], args[1], args[2::2], args[3::2]
    return h * w * (max(cs) + 1), COLUMNS_PER_BLOCK * sum(ks)


def _splits(extent: int, limit: int) -> list[int]:
    """For each distinct tile size ceil(extent / n), n <= limit, the smallest such n."""
    best: dict[int, int] = {}
    for n in range(1, max(1, min(extent, limit)) + 1):
        best.setdefault(cdiv(extent, n), n)
    return sorted(best.values())


@lru_cache(maxsize=4096)
def args_for(c: Conv, rows: int, cols: int) -> tuple[int, int, int, int]:
    """The execution parameters (h', w', c', k') whose contest rectangle fits `rows` x `cols`
    with the least `conv_time` (then the least memory): k' = cols // 3 and h' w' (c' + 1) <=
    rows. A region under the contest's smallest rectangle (2 x 3) runs one tile, h' = w' = c' =
    k' = 1, on its cores."""
    k = max(1, min(c.K, cols // COLUMNS_PER_BLOCK))
    rows = max(rows, 2)
    best = None
    for h in _splits(c.H, rows // 2):
        for w in _splits(c.W, rows // (2 * h)):
            cc = max(1, min(c.C, rows // (h * w) - 1))
            key = (conv_time(c, h, w, cc, k), conv_memory(c, h, w, cc, k))
            if best is None or key < best[0]:
                best = (key, (h, w, cc, k))
    return best[1]
