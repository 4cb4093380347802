"""A convolution kernel's counts and cost components on a mapping.

A mapping of rows x cols cores runs the contest's execution parameters (h', w', c', k') =
`contest.args_for`: core row (i w' + j)(c' + 1) + l holds input rows block i, columns block j
and channel block l (l < c'; row l = c' of each group sums the partial outputs), and core
columns 3 m .. 3 m + 2 output-channel block m. The tile's multiply-accumulates,
hs_i ws_j cs_l ks_m R S / T^2, are the contest's time (`contest.conv_time` on the first, fullest
tiles) of its three columns, which share them: each core does a third, so every MAC is done
once. Per sample (DESIGN.md, "Cost model", sparsity harvesting), with `dense` a core's third:
  forward   MACs = dense d_x            in: x tile, zeros filtered     out: y tile psums
  backward  dW MACs = dense d_x d_dY    dX MACs = dense d_dY (none for a first layer)
            in: dY tile, zeros filtered  out: dX tile partial sums
with d_x the share of non-zeros in the core's x tile (x[b, channels of l, rows of i, columns
of j]) and d_dY that of its dY tile (dY[b, channels of m, output rows of i, columns of j]):
a ReLU zero in x skips its R S ks_m multiplies, as in the matmul. Counts are those densities
per tile, per sample: assumed (the static estimate) or measured from the step's tensors.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ... import cost
from ..base import Counts, Kernel, harvest_rows
from .build import conv_of, conv_of_nest
from .contest import COLUMNS_PER_BLOCK, args_for, cdiv, conv_time


class ConvCounts(NamedTuple):
    """Densities per distinct sample: `x` (U, h', w', c') of each x tile, `dy` (U, h', w', k')
    of each dY tile, and `x_all`, `dy_all` (U,) of the whole tensors (for the MACs)."""
    x: np.ndarray
    dy: np.ndarray
    x_all: np.ndarray
    dy_all: np.ndarray


def computes_dx(kernel: Kernel) -> bool:
    return "dx" in kernel.stream


def params_of(kernel: Kernel, mapping) -> tuple[int, int, int, int]:
    return args_for(conv_of(kernel), mapping.rows, mapping.cols)


def x_tile(kernel: Kernel, args) -> int:
    """Values of the fullest x tile: rows x columns x x's channels of one block."""
    return _x_tile(kernel.nest, args)


def _x_tile(nest, args) -> int:
    c, (h, w, cc, _) = conv_of_nest(nest), args
    return cdiv(c.H, h) * cdiv(c.W, w) * cdiv(nest.extent("x_channels"), cc)


def dense_macs(kernel: Kernel) -> int:
    """Forward + dW (+ dX) MACs per sample: each is OH OW K (C / groups) R S."""
    n = kernel.nest
    one = n.extent("oh") * n.extent("ow") * n.extent("k") * n.extent("c") * n.extent("r") * n.extent("s")
    return (3 if computes_dx(kernel) else 2) * one


def assumed(kernel: Kernel, mapping, density, harvest: bool) -> Counts:
    """Every tile at the assumed densities (x, dY); every value when harvesting is off."""
    dx, ddy = (density, density) if np.ndim(density) == 0 else density
    if not harvest:
        dx = ddy = 1.0
    h, w, cc, k = params_of(kernel, mapping)
    return Counts(ConvCounts(np.full((1, h, w, cc), float(dx)), np.full((1, h, w, k), float(ddy)),
                             np.full(1, float(dx)), np.full(1, float(ddy))),
                  np.zeros((1, 1), dtype=np.intp))


def block_density(xp, values, blocks: tuple[int, int, int]):
    """(samples, bc, bh, bw) share of non-zeros of `values` (samples, C, H, W) cut into bc x bh
    x bw contiguous blocks of ceil(extent / blocks) (as `cost.tile_sizes`), each over its size."""
    n, extents = values.shape[0], values.shape[1:]
    steps = [cdiv(e, b) for e, b in zip(extents, blocks)]
    nonzero = xp.zeros((n,) + tuple(b * s for b, s in zip(blocks, steps)), dtype=xp.float32)
    nonzero[:, :extents[0], :extents[1], :extents[2]] = values != 0
    shape = (n, blocks[0], steps[0], blocks[1], steps[1], blocks[2], steps[2])
    counts = nonzero.reshape(shape).sum(axis=(2, 4, 6))
    sizes = [cost.tile_sizes(e, b) for e, b in zip(extents, blocks)]
    size = sizes[0][:, None, None] * sizes[1][None, :, None] * sizes[2][None, None, :]
    return counts, xp.asarray(np.maximum(size, 1).astype(np.float32))


def measured(kernel: Kernel, mapping, env: dict, runs) -> Counts:
    """Densities of every sample's tiles from x and dY; the variants that do not skip zeros
    share one more, dense, sample."""
    xp, samples = runs.xp, kernel.samples
    h, w, cc, k = params_of(kernel, mapping)
    x = _four_d(env[kernel.stream["x"]])
    dy = _four_d(env[kernel.stream["dy"]]) if "dy" in kernel.stream else xp.ones(
        (samples, kernel.nest.extent("k"), kernel.nest.extent("oh"), kernel.nest.extent("ow")),
        dtype=bool)
    nx, sx = block_density(xp, x, (cc, h, w))
    ndy, sdy = block_density(xp, dy, (k, h, w))
    dense = lambda a: np.concatenate([a, np.ones((1,) + a.shape[1:])])   # noqa: E731
    counts = ConvCounts(dense(runs.host(nx / sx).transpose(0, 2, 3, 1)),
                        dense(runs.host(ndy / sdy).transpose(0, 2, 3, 1)),
                        dense(runs.host(nx.sum(axis=(1, 2, 3))) / x[0].size),
                        dense(runs.host(ndy.sum(axis=(1, 2, 3))) / dy[0].size))
    return Counts(counts, harvest_rows(tuple(runs.harvests), samples))


def _four_d(value):
    """A 1-D convolution's (N, C, L) as (N, C, 1, L)."""
    return value[:, :, None, :] if value.ndim == 3 else value


class Layout(NamedTuple):
    """Per core row: its blocks i, j, l, whether it is in the contest rectangle (`placed`) and
    whether it multiplies (`works`: placed, not a summing row); per core column: its block m
    and whether it is in the rectangle (`used`); the fullest x and y (or dY) tiles."""
    i: np.ndarray
    j: np.ndarray
    l: np.ndarray
    placed: np.ndarray
    works: np.ndarray
    m: np.ndarray
    used: np.ndarray
    tile_macs: np.ndarray      # (rows, cols) dense MACs of each core (a third of its tile's)
    x_tile: int
    y_tile: int


def layout(kernel: Kernel, rows: int, cols: int) -> Layout:
    return _layout(kernel.nest, rows, cols)


@functools.lru_cache(maxsize=1024)
def _layout(nest, rows: int, cols: int) -> Layout:
    c = conv_of_nest(nest)
    h, w, cc, k = args_for(c, rows, cols)
    r = np.arange(rows)
    group, l = r // (cc + 1), r % (cc + 1)
    i, j = np.minimum(group // w, h - 1), group % w
    placed = group < h * w
    works = placed & (l < cc)
    col = np.arange(cols)
    m = np.minimum(col // COLUMNS_PER_BLOCK, k - 1)
    used = col < COLUMNS_PER_BLOCK * k
    sizes = [cost.tile_sizes(e, p) for e, p in ((c.H, h), (c.W, w), (c.C, cc), (c.K, k))]
    per_row = sizes[0][i] * sizes[1][j] * sizes[2][np.minimum(l, cc - 1)] * works
    group = per_row[:, None] * (sizes[3][m] * used)[None, :] * c.R * c.S / c.T ** 2
    y = cdiv(nest.extent("oh"), h) * cdiv(nest.extent("ow"), w) * cdiv(c.K, k)
    assert math.isclose(group.max(), conv_time(c, h, w, cc, k))  # the contest's time, per group
    macs = group / COLUMNS_PER_BLOCK
    for a in (i, j, l, placed, works, m, used, macs):
        a.flags.writeable = False
    return Layout(i, j, l, placed, works, m, used, macs, _x_tile(nest, (h, w, cc, k)), y)


def components(kernel: Kernel, counts: ConvCounts, mapping, target) -> cost.Components:
    """Per distinct sample and core (U, 1, rows, cols): the formulas of the module docstring."""
    g = layout(kernel, mapping.rows, mapping.cols)
    dx = counts.x[:, g.i, g.j, np.minimum(g.l, counts.x.shape[3] - 1)][:, :, None]   # (U, rows, 1)
    ddy = counts.dy[:, g.i[:, None], g.j[:, None], g.m[None, :]]                      # (U, rows, cols)
    macs = g.tile_macs[None]
    simd = target.simd
    x_dense, y_dense = cost.dense_wavelets(g.x_tile, target), cost.dense_wavelets(g.y_tile, target)
    active = (g.works[:, None] & g.used[None, :])[None]           # the cores that multiply
    fwd_in = cost.wavelets(dx * g.x_tile, x_dense) * active
    bwd_in = cost.wavelets(ddy * g.y_tile, y_dense) * active
    y_out = y_dense * (g.placed[:, None] & g.used[None, :])[None]  # psums, then their sums
    fwd = np.ceil(macs * dx / simd)
    bwd = np.ceil(macs * dx * ddy / simd)
    dx_out = 0.0
    if computes_dx(kernel):
        bwd = bwd + np.ceil(macs * ddy / simd)
        dx_out = x_dense * active
    one = dense_macs(kernel) // (3 if computes_dx(kernel) else 2)
    total = one * (counts.x_all + counts.x_all * counts.dy_all
                   + (counts.dy_all if computes_dx(kernel) else 0.0))
    expand = lambda a: np.asarray(a, dtype=np.float64)[:, None] if np.ndim(a) == 3 else a  # noqa: E731
    return cost.Components(expand(fwd), expand(fwd_in), expand(y_out), expand(bwd), expand(bwd_in),
                           expand(dx_out), np.asarray(total, dtype=np.float64),
                           **cost.core_terms(target))
