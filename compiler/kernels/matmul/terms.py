"""A matmul kernel's cost components on a mapping (DESIGN.md, "Cost model"), per core
(r, c) holding w[I_r, J_c], per sample:
  forward   compute ceil(nnz(x[I_r]) |J_c| / simd)   in: x, zeros filtered   out: |J_c| psums
  backward  compute ceil(nnz(x) nnz(dY) / simd) + ceil(nnz(dY[J_c]) |I_r| / simd)
            in: dY, zeros filtered   out: |I_r| dX partial sums (none for a first layer)
summed over the tokens a sample sends (dW from the counted pairs when it sends several).

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
    wavelets of a token's tile `dense_k`, `dense_n`, the sum of the tiles (K, N), whether it
    has a dX pass, the SIMD width, and the target's per-core terms."""
    tk: np.ndarray
    tn: np.ndarray
    dense_k: np.ndarray
    dense_n: np.ndarray
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
    return _tiles_geometry(_uniform(full_k), _uniform(full_n), float(k), float(n), dx, target)


def _tiles_geometry(tk, tn, k: float, n: float, dx: bool, target) -> Geometry:
    dtype = tk.dtype
    return Geometry(tk[:, None], tn, cost.dense_wavelets(tk[:, None], target).astype(dtype),
                    cost.dense_wavelets(tn, target).astype(dtype), k, n, dx, target.simd,
                    tuple(cost.core_terms(target).items()))


def _uniform(tiles: np.ndarray) -> np.ndarray:
    """The tile sizes, or one of them when every core has the same (a size-1 axis)."""
    return tiles[:1] if (tiles == tiles[0]).all() else tiles


def components(kernel: Kernel, c, mapping, target) -> cost.Components:
    """Per distinct sample and core (samples, 1, rows, cols): each pass's MACs over the SIMD
    width, the streamed operand in (zeros filtered, `cost.wavelets`) and the partial sums out.
    A tile size shared by every core stays a size-1 axis."""
    g = geometry(kernel, mapping, target, c.x.dtype)
    x, dy = c.x[:, None, :, None], c.dy[:, None, None, :]
    tokens = c.tokens[:, None, None, None]
    dw = x * dy / tokens if c.pairs is None else c.pairs[:, None]
    fwd, dx = x * g.tn, (dy * g.tk if g.dx else None)
    if c.worked is not None:
        worked = c.worked[:, None, None, None]
        fwd = np.where(worked, c.fwd[:, None], fwd)
        dw = np.where(worked, c.dw[:, None], dw)
        dx = np.where(worked, c.dx[:, None], dx) if g.dx else None
    return _terms(g, x, dy, tokens, fwd, dw, dx, macs(c, g))


def _terms(g: Geometry, x, dy, tokens, fwd, dw, dx, macs_) -> cost.Components:
    """The components of MACs `fwd`, `dw`, `dx` per core and the streamed counts `x`, `dy`."""
    fwd = fwd / g.simd
    bwd_compute = np.ceil(dw / g.simd)
    if g.dx:
        bwd_compute += np.ceil(dx / g.simd)
    return cost.Components(np.ceil(fwd, out=fwd), cost.wavelets(x, tokens * g.dense_k),
                           tokens * g.tn, bwd_compute, cost.wavelets(dy, tokens * g.dense_n),
                           tokens * g.tk if g.dx else 0, macs_, **dict(g.core))


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
    grid = _grid(kernel.nest.extent("i"), kernel.nest.extent("j"), mapping.rows, mapping.cols,
                 computes_dx(kernel), target)
    return Table(grid, c.x, c.dy, lambda: macs(c, geometry(kernel, mapping, target, c.x.dtype)))


@functools.lru_cache(maxsize=256)
def _grid(k: int, n: int, rows: int, cols: int, dx: bool, target) -> Grid:
    """The table of every count a core of each tile size can have (one token)."""
    full_k, full_n = _counts.tile_arrays(k, n, rows, cols, np.dtype(np.float32))
    row_values, row_tiles, row_offset, row_runs = _values(full_k)
    col_values, col_tiles, col_offset, col_runs = _values(full_n)
    g = _tiles_geometry(row_tiles, col_tiles, float(k), float(n), dx, target)
    x, dy = row_values[None, None, :, None], col_values[None, None, None, :]
    one = np.ones((1, 1, 1, 1), dtype=np.float32)
    c = _terms(g, x, dy, one, x * g.tn, x * dy, dy * g.tk if dx else None, np.zeros(1))
    cycles = cost.per_core_cycles(c, (1, 1, len(row_values), len(col_values)))[0]
    cycles.flags.writeable = False
    return Grid(cycles, row_offset, col_offset, row_runs, col_runs)


def _values(tiles: np.ndarray):
    """For the tile sizes of each core row (or column): every count 0..t each size allows,
    the tile size of each, the table offset of each core's size, and where each run of equal
    sizes starts (tiles are contiguous: full ones, then a partial one, then empty ones)."""
    sizes, which = np.unique(tiles, return_inverse=True)
    starts = np.concatenate([[0], np.cumsum(sizes + 1)[:-1]]).astype(np.float32)
    values = np.concatenate([np.arange(t + 1, dtype=np.float32) for t in sizes])
    tile_of = np.concatenate([np.full(int(t) + 1, t, dtype=np.float32) for t in sizes])
    runs = np.flatnonzero(np.diff(which, prepend=-1))
    return values, tile_of, starts[which], runs
