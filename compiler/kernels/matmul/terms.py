"""A matmul kernel's cost components on a mapping (DESIGN.md, "Cost model"), per core
(r, c) holding w[I_r, J_c], per sample:
  forward   compute nnz(x[I_r]) ceil(|J_c| / simd)        in: x, zeros filtered, + 1 control
            reduce |J_c| (r > 0)                           out: |J_c| psums
  backward  compute nnz(dY[J_c]) (ceil(nnz(x[I_r]) / simd) + ceil(|I_r| / simd))
            in: dY, zeros filtered, + 1 control            reduce |I_r| (c > 0)
            out: |I_r| dX partial sums (none, nor dX compute and reduce, for a first layer)
summed over the tokens a sample sends (dW from the counted pairs when it sends several). The
fabric model (`simulator.fabric`, the reference) fixes the shape of each term:
- each streamed value is one FMAC of a scalar and a vector, rounded up to the SIMD width on
  its own (the lanes do not pack across values): over the core's outputs in the forward and
  the dX, over the core's non-zeros of x for dW;
- a core after the first of its partial-sum chain (rows below the first in the forward,
  columns after the first in the dX) adds each arriving sum as it comes off the fabric: one
  cycle a sum, no task activation (`cost.Components`, reduce);
- each token's tile ends with a control wavelet (`cost.streamed_wavelets`);
- a chain of one core sends a token's sums only once the token's stream is done (the run's
  drain: the last token's, `cost.fill_cycles`); a longer chain's last core sends each sum as
  it adds it.

`tabulate`: when every core's cycles follow from its own two counts (one token per sample, no
masked weight), the cycles of every count a core can have are worked out once per mapping, and
a sample's cores are looked up in that table (`compiler.table.Table`): the same components,
evaluated on each distinct per-core input once instead of on every core of every sample.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ... import cost
from ...table import Grid, Table
from ..base import Kernel
from . import counts as _counts


class Geometry(NamedTuple):
    """What a matmul's cost needs of its mapping, worked out once: tile sizes over rows `tk`
    (R or 1, 1) and over cols `tn` (C or 1,) (one when every core has the same), the dense
    wavelets of a token's tile `dense_k`, `dense_n`, the SIMD cycles of one value's FMAC over
    a tile `simd_k`, `simd_n`, whether a core row (col) adds a chain's arriving partial sums
    `chained_k` (R or 1, 1), `chained_n` (C or 1,), the sum of the tiles (K, N), whether it
    has a dX pass, the SIMD width, and the target's per-core terms."""
    tk: np.ndarray
    tn: np.ndarray
    dense_k: np.ndarray
    dense_n: np.ndarray
    simd_k: np.ndarray
    simd_n: np.ndarray
    chained_k: np.ndarray
    chained_n: np.ndarray
    k: float
    n: float
    dx: bool
    simd: int
    core: tuple          # `cost.core_terms` of the target, as (name, value) pairs


def computes_dx(kernel: Kernel) -> bool:
    """The first layer needs no gradient for its input, so it skips the dX pass."""
    return "dx" in kernel.stream


def geometry(kernel: Kernel, mapping, target, dtype=np.float32) -> Geometry:
    return _geometry(kernel.nest.extent("i"), kernel.nest.extent("j"), mapping.rows, mapping.cols,
                     computes_dx(kernel), target, np.dtype(dtype))


@functools.lru_cache(maxsize=1024)
def _geometry(k: int, n: int, rows: int, cols: int, dx: bool, target, dtype) -> Geometry:
    full_k, full_n = _counts.tile_arrays(k, n, rows, cols, dtype)
    return _tiles_geometry(_uniform(full_k), _uniform(full_n), _chained(rows, dtype),
                           _chained(cols, dtype), float(k), float(n), dx, target)


def _chained(parts: int, dtype) -> np.ndarray:
    """1 where a core of a chain of `parts` adds the sums arriving from the one before it."""
    return (np.arange(parts) > 0).astype(dtype) if parts > 1 else np.zeros(1, dtype)


def _tiles_geometry(tk, tn, chained_k, chained_n, k: float, n: float, dx: bool,
                    target) -> Geometry:
    dtype = tk.dtype
    return Geometry(tk[:, None], tn, cost.dense_wavelets(tk[:, None], target).astype(dtype),
                    cost.dense_wavelets(tn, target).astype(dtype),
                    np.ceil(tk[:, None] / target.simd), np.ceil(tn / target.simd),
                    chained_k[:, None], chained_n, k, n, dx, target.simd,
                    tuple(cost.core_terms(target).items()))


def _uniform(tiles: np.ndarray) -> np.ndarray:
    """The tile sizes, or one of them when every core has the same (a size-1 axis)."""
    return tiles[:1] if (tiles == tiles[0]).all() else tiles


def components(kernel: Kernel, c, mapping, target) -> cost.Components:
    """Per distinct sample and core (samples, 1, rows, cols): each pass's FMAC cycles, the
    streamed operand in (zeros filtered, `cost.streamed_wavelets`), the partial sums added and
    those out. A tile size shared by every core stays a size-1 axis. A masked weight's counted
    MACs (where `worked`) are streamed values against the whole tile (`_per`), each rounded
    as the dense tile's, the total rounded up to a whole cycle."""
    g = geometry(kernel, mapping, target, c.x.dtype)
    x, dy = c.x[:, None, :, None], c.dy[:, None, None, :]
    tokens = c.tokens[:, None, None, None]
    per_value = x / tokens if c.pairs is None else _per_dy_value(c.pairs[:, None], dy)
    fwd, bwd = _compute(g, x, dy, per_value)
    if c.worked is not None:
        worked = c.worked[:, None, None, None]
        fwd_m, bwd_m = _compute(g, _per(c.fwd[:, None], g.tn), dy, _per_dy_value(c.dw[:, None], dy),
                                _per(c.dx[:, None], g.tk) if g.dx else None)
        fwd, bwd = np.where(worked, np.ceil(fwd_m), fwd), np.where(worked, np.ceil(bwd_m), bwd)
    return _terms(g, x, dy, tokens, fwd, bwd, macs(c, g))


def _per(macs_, tile):
    """A masked weight's MACs as values streamed against a whole tile: its MACs over the tile
    size (the rounding of each value's FMAC is the dense tile's: a full mask costs what no
    mask costs)."""
    return np.divide(macs_, tile, out=np.zeros(np.broadcast_shapes(np.shape(macs_), tile.shape)),
                     where=tile > 0)


def _per_dy_value(pairs, dy):
    """The non-zeros of x a dY value meets, on average over a sample's tokens: its dW pairs
    over its dY non-zeros (rounded off float noise, so that a whole number stays whole)."""
    out = np.divide(pairs, dy, out=np.zeros(np.broadcast_shapes(pairs.shape, dy.shape)),
                    where=dy > 0)
    return np.round(out, 6)


def _compute(g: Geometry, x, dy, per_value, dx_values=None):
    """FMAC cycles of each pass: every streamed value one FMAC, rounded up to the SIMD width on
    its own: x times its outputs; dY times the non-zeros of x it meets (dW) and, with a dX
    pass, its outputs (`dx_values` of them; default dY's)."""
    bwd = dy * np.ceil(per_value / g.simd)
    if g.dx:
        bwd = bwd + (dy if dx_values is None else dx_values) * g.simd_k
    return x * g.simd_n, bwd


def _terms(g: Geometry, x, dy, tokens, fwd, bwd, macs_) -> cost.Components:
    """The components of FMAC cycles `fwd`, `bwd` per core and the streamed counts `x`, `dy`."""
    out_k = tokens * g.tk if g.dx else 0
    return cost.Components(fwd, cost.streamed_wavelets(x, tokens * g.dense_k, tokens),
                           tokens * g.tn, bwd, cost.streamed_wavelets(dy, tokens * g.dense_n, tokens),
                           out_k, macs_, fwd_reduce=tokens * g.tn * g.chained_k,
                           bwd_reduce=out_k * g.chained_n,
                           fwd_drain=0 if g.chained_k.any() else g.tn,
                           bwd_drain=0 if g.chained_n.any() or not g.dx else g.tk,
                           **dict(g.core))


def sample_cycles_grid(kernel: Kernel, rows, cols, target, density, harvest: bool) -> np.ndarray:
    """(len(rows), len(cols)) `estimate.sample_cycles` of every rows x cols mapping at once (the
    mapping search's grid): a mapping's core rows (columns) come in a few classes, a tile size
    and whether it adds a chain's arriving sums; each class pair is evaluated once, on the
    assumed counts `counts.assumed` gives a core of that class, and each mapping takes its
    busiest."""
    dx, ddy = (density, density) if np.ndim(density) == 0 else density
    if not harvest:
        dx = ddy = 1.0
    k, n, tokens = (kernel.nest.extent(d) for d in ("i", "j", "t"))
    tk, chained_k, row_starts = _classes(k, rows)
    tn, chained_n, col_starts = _classes(n, cols)
    g = _tiles_geometry(tk, tn, chained_k, chained_n, float(k), float(n), computes_dx(kernel),
                        target)
    x = (dx * tk * tokens)[None, None, :, None]
    dy = (ddy * tn * tokens)[None, None, None, :]
    one = np.full((1, 1, 1, 1), float(tokens))
    c = _terms(g, x, dy, one, *_compute(g, x, dy, x / one), np.zeros(1))
    cores = cost.per_core_cycles(c, (1, 1, len(tk), len(tn)))[0]
    return np.maximum.reduceat(np.maximum.reduceat(cores, row_starts, axis=0), col_starts, axis=1)


def _classes(extent: int, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (tile size, chained) core rows of `extent` unrolled over each of `counts`
    cores, one after another, and where each count's start."""
    tiles, chained, starts = [], [], []
    for parts in counts:
        starts.append(len(tiles))
        sizes = cost.tile_sizes(extent, parts)
        for pair in sorted(set(zip(sizes.tolist(), _chained(parts, np.float64).tolist()))):
            tiles.append(pair[0])
            chained.append(pair[1])
    return np.array(tiles, dtype=np.float64), np.array(chained), np.array(starts)


def macs(c, g: Geometry) -> np.ndarray:
    """(samples,) MACs of each sample: x times the output columns, dY times the input rows, and
    the dW pairs, factored over the cores (summed in float64); the counted MACs of a masked
    weight where `worked`."""
    # per sample a count sum is below 2**24 (exact in float32); products need float64
    x, dy = c.x.sum(axis=1).astype(np.float64), c.dy.sum(axis=1).astype(np.float64)
    pairs = x * dy / c.tokens if c.pairs is None else c.pairs.sum(axis=(1, 2), dtype=np.float64)
    out = x * g.n + pairs
    if g.dx:
        out += dy * g.k
    if c.worked is None:
        return out
    work = c.fwd.sum(axis=(1, 2)) + c.dw.sum(axis=(1, 2)) + (c.dx.sum(axis=(1, 2)) if g.dx else 0.0)
    return np.where(c.worked, work, out)


def tabulate(kernel: Kernel, c, mapping, target) -> Table | None:
    """`c` as a `Table` when each core's cycles follow from its own x and dY counts (one
    token per sample, no counted pairs, no masked weight); None otherwise."""
    if c.pairs is not None or c.worked is not None or not (c.tokens == 1).all():
        return None
    return Table(grid_of(kernel, mapping, target), c.x, c.dy,
                 lambda: macs(c, geometry(kernel, mapping, target, c.x.dtype)))


def grid_of(kernel: Kernel, mapping, target) -> Grid:
    """The kernel's table on `mapping` (`_grid`, cached)."""
    return _grid(kernel.nest.extent("i"), kernel.nest.extent("j"), mapping.rows, mapping.cols,
                 computes_dx(kernel), target)


@functools.lru_cache(maxsize=256)
def _grid(k: int, n: int, rows: int, cols: int, dx: bool, target) -> Grid:
    """The table of every count a core of each tile size can have (one token)."""
    full_k, full_n = _counts.tile_arrays(k, n, rows, cols, np.dtype(np.float32))
    row_values, row_tiles, row_chained, row_offset, row_runs = _values(full_k)
    col_values, col_tiles, col_chained, col_offset, col_runs = _values(full_n)
    g = _tiles_geometry(row_tiles, col_tiles, row_chained, col_chained, float(k), float(n), dx,
                        target)
    x, dy = row_values[None, None, :, None], col_values[None, None, None, :]
    one = np.ones((1, 1, 1, 1), dtype=np.float32)
    c = _terms(g, x, dy, one, *_compute(g, x, dy, x), np.zeros(1))
    shape = (1, 1, len(row_values), len(col_values))
    cycles = cost.per_core_cycles(c, shape)[0]
    passes = np.stack([np.broadcast_to(t, shape)[0, 0] for pass_ in cost.pass_terms(c) for t in pass_])
    passes = passes.astype(np.float64)
    for table in (cycles, passes):
        table.flags.writeable = False
    return Grid(cycles, row_offset, col_offset, row_runs, col_runs, passes)


def _values(tiles: np.ndarray):
    """For the tile sizes of each core row (or column), the first of the partial-sum chain
    apart (it adds no arriving sums): every count 0..t each (size, chained) allows, the tile
    size and chained flag of each, the table offset of each core's, and where each run of
    equal ones starts (tiles are contiguous: full ones, then a partial one, then empty ones)."""
    keys = np.stack([tiles, _chained(len(tiles), tiles.dtype)], axis=1)
    kinds, which = np.unique(keys, axis=0, return_inverse=True)
    which, sizes = which.reshape(-1), kinds[:, 0]
    starts = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]]).astype(np.float32)
    values = np.concatenate([np.arange(t + 1, dtype=np.float32) for t in sizes])
    tile_of, chained_of = (np.concatenate([np.full(int(t) + 1, f, dtype=np.float32)
                                           for t, f in zip(sizes, field)])
                           for field in (sizes, kinds[:, 1]))
    runs = np.flatnonzero(np.diff(which, prepend=-1))
    return values, tile_of, chained_of, starts[which], runs
