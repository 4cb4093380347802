"""The work of a matmul kernel whose weight is masked (weight sparsity), counted from the data.

A core (r, c) holds the kept weights of w[I_r, J_c] compressed (`compiler.cost.
compressed_weight_bytes`) and, with harvesting on, skips both the streamed zeros and the masked
weights (DESIGN.md, "Cost model" and "Sparsity"). Per sample b:
  forward   sum_t sum_{i in I_r, x[b,t,i] != 0} nnz(w[i, J_c])
  dX        sum_t sum_{j in J_c, dY[b,t,j] != 0} nnz(w[I_r, j])
  dW        sum_t #{kept (i, j) in I_r x J_c : x[b,t,i] != 0 and dY[b,t,j] != 0}
Everything that depends on the mask alone (`MaskTiles`) is computed once per mask, since masks
change only at update steps; the per-step counts are matmuls of the non-zero indicators
against it, one per tile row or column, never a loop over cores. Written against `xp`; `host`
is the simulator's one exit to NumPy (`simulator.backend.to_numpy`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MaskTiles(NamedTuple):
    """A (K, N) keep-mask cut into `rows x cols` core tiles of `sk x sn` (zero-padded)."""
    rows: int
    cols: int
    padded: object          # (rows * sk, cols * sn) float32 on xp
    row_counts: object      # (rows, sk, cols) float64: nnz(w[i, J_c]) of each tile row i
    col_counts: object      # (cols, sn, rows) float64: nnz(w[I_r, j]) of each tile column j
    kept: np.ndarray        # (rows, cols) kept weights per core


def mask_tiles(xp, host, mask, rows: int, cols: int) -> MaskTiles:
    k, n = mask.shape
    sk, sn = -(-k // rows), -(-n // cols)
    m = xp.zeros((rows * sk, cols * sn), dtype=xp.float32)
    m[:k, :n] = mask
    tiles = m.reshape(rows, sk, cols, sn)
    row_counts = tiles.sum(axis=3, dtype=xp.float64)
    return MaskTiles(rows, cols, m, row_counts,
                     xp.ascontiguousarray(tiles.sum(axis=1, dtype=xp.float64).transpose(1, 2, 0)),
                     host(row_counts.sum(axis=1)).astype(np.int64))


def _padded(xp, nonzero, width: int):
    """(samples * tokens, width) float32 indicators, zero-padded on the last axis."""
    samples, tokens, features = nonzero.shape
    out = xp.zeros((samples * tokens, width), dtype=xp.float32)
    out[:, :features] = nonzero.reshape(samples * tokens, features)
    return out


def _per_tile(xp, counts, per_row):
    """out[b, p, q] = sum_s counts[b, p, s] * per_row[p, s, q]: one matmul per tile `p`."""
    return xp.matmul(xp.ascontiguousarray(counts.transpose(1, 0, 2)), per_row).transpose(1, 0, 2)


def _pair_counts(xp, left, right, m, parts_l: int, parts_r: int, samples: int, chunk: int):
    """(samples, parts_l, parts_r): per tile pair, the kept (i, j) of `m` (Lp, Rp) with
    left[n, i] != 0 and right[n, j] != 0, summed over the tokens of each sample. For each
    tile row, `left @ m` counts the kept partners of every j; `right` filters them, and a
    matmul with the tile indicator sums them per column tile. float32 is exact: each partial
    count is at most one tile's size."""
    rows_n, lp = left.shape
    rp = right.shape[1]
    sl, sr = lp // parts_l, rp // parts_r
    per_row = m.reshape(parts_l, sl, rp)
    tile_of = xp.repeat(xp.eye(parts_r, dtype=xp.float32), sr, axis=0)      # (Rp, parts_r)
    out = xp.empty((parts_l, rows_n, parts_r), dtype=xp.float32)
    step = max(1, chunk // (parts_l * rp))
    for lo in range(0, rows_n, step):     # bounds the (parts_l, n, Rp) partial counts held
        a = xp.ascontiguousarray(left[lo:lo + step].reshape(-1, parts_l, sl).transpose(1, 0, 2))
        reach = xp.matmul(a, per_row)
        reach *= right[None, lo:lo + step]
        out[:, lo:lo + step] = xp.matmul(reach, tile_of)
    return out.reshape(parts_l, samples, -1, parts_r).sum(axis=2, dtype=xp.float64).transpose(1, 0, 2)


def masked_work(xp, host, x, dy, tiles: MaskTiles, chunk: int = 1 << 22) -> dict:
    """Per-sample, per-core MACs "fwd", "dx", "dw" (each (samples, rows, cols) float64 NumPy,
    formulas in the module docstring) of x (samples, tokens, K) and dY (samples, tokens, N)
    against a masked weight's `tiles`. `chunk` bounds the partial counts held at once."""
    rows, cols, m = tiles.rows, tiles.cols, tiles.padded
    samples = x.shape[0]
    nzx, nzdy = _padded(xp, x != 0, m.shape[0]), _padded(xp, dy != 0, m.shape[1])
    x_sum = nzx.reshape(samples, -1, rows, m.shape[0] // rows).sum(axis=1, dtype=xp.float64)
    dy_sum = nzdy.reshape(samples, -1, cols, m.shape[1] // cols).sum(axis=1, dtype=xp.float64)
    fwd = _per_tile(xp, x_sum, tiles.row_counts)
    dx = _per_tile(xp, dy_sum, tiles.col_counts).transpose(0, 2, 1)
    if rows * m.shape[1] <= cols * m.shape[0]:   # the smaller partials: (rows, n, Np) or (cols, n, Kp)
        dw = _pair_counts(xp, nzx, nzdy, m, rows, cols, samples, chunk)
    else:
        dw = _pair_counts(xp, nzdy, nzx, m.T, cols, rows, samples, chunk).transpose(0, 2, 1)
    return {"fwd": host(fwd), "dx": host(dx), "dw": host(dw)}
