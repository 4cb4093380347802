"""A matmul kernel's counts: per sample and per core, what it receives and what it computes.

Core (r, c) holds w[I_r, J_c] (Hot Chips 2020 dataflow, DESIGN.md "Cost model"):
  x     nnz(x[b, t, I_r]) summed over the tokens a sample sends      (`MatmulCounts.x`)
  dY    nnz(dY[b, t, J_c]) likewise                                     (`MatmulCounts.dy`)
  dW    sum_t nnz(x[b, t, I_r]) nnz(dY[b, t, J_c])                      (`MatmulCounts.pairs`)
Assumed counts (the static estimate) are density x tile size x tokens, with dW the expected
product x dY / tokens; measured counts come from the step's tensors, one row per timing variant:
a harvested variant counts the non-zeros, a dense one (harvesting off) counts every value. With
`running` markers only the token rows a variant charges count; a row the run did not compute
(a halted position, a pad) has no measured values, so a baseline charges it dense.
A masked weight (weight sparsity) is counted by `masked.masked_work` into `MatmulCounts.macs`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...cost import tile_sizes
from .masked import masked_work


class MatmulCounts(NamedTuple):
    """Counts per variant and sample: `x` (V, S, rows), `dy` (V, S, cols), `tokens` (V, S)
    charged; `pairs` (V, S, rows, cols) the dW work, None for the expected x dY / tokens;
    `work` for a masked weight: the (fwd, dx, dw) MACs, stacked (3, V, S, rows, cols), and the
    variants (V,) bool they replace the unmasked formulas in; None when unmasked."""
    x: np.ndarray
    dy: np.ndarray
    tokens: np.ndarray
    pairs: np.ndarray | None = None
    work: tuple | None = None


def tiles(kernel, mapping) -> tuple[np.ndarray, np.ndarray]:
    """Tile sizes of the reduction dim over rows and the output dim over cols, as float64."""
    return (tile_sizes(kernel.nest.extent("i"), mapping.rows).astype(np.float64),
            tile_sizes(kernel.nest.extent("j"), mapping.cols).astype(np.float64))


def assumed(kernel, mapping, density, harvest: bool) -> MatmulCounts:
    """One sample at densities (x, dY); every value when harvesting is off."""
    dx, ddy = (density, density) if np.ndim(density) == 0 else density
    if not harvest:
        dx = ddy = 1.0
    tokens = kernel.nest.extent("t")
    tk, tn = tiles(kernel, mapping)
    return MatmulCounts((dx * tk * tokens)[None, None], (ddy * tn * tokens)[None, None],
                        np.full((1, 1), float(tokens)))


def tile_nonzeros(xp, values, parts: int):
    """(samples, tokens, parts) non-zero counts of `values` (samples, tokens, features) split
    into `parts` contiguous tiles of ceil(features / parts)."""
    samples, tokens, features = values.shape
    step = -(-features // parts)
    nz = values != 0
    if xp is np:
        return np.add.reduceat(nz, np.arange(parts) * step, axis=2, dtype=np.int32)
    pad = step * parts - features
    if pad:
        nz = xp.concatenate([nz, xp.zeros((samples, tokens, pad), dtype=bool)], axis=2)
    return xp.count_nonzero(nz.reshape(samples, tokens, parts, step), axis=3)


def streams(xp, kernel, env: dict):
    """x and dY as (samples, tokens, features), the tokens of its calls one after another (a
    weight shared by recurrent steps is called once per step), and the tokens of each call;
    dY is all ones when the kernel has none (nothing to harvest)."""
    samples, width = kernel.samples, kernel.nest.extent("j")
    xs, dys = [], []
    for call in kernel.calls:
        x = env[call["x"]].reshape(samples, -1, env[call["x"]].shape[-1])
        if "dy" in call:
            dy = env[call["dy"]]
            dy = (dy.T if dy.shape[-1] != width else dy).reshape(samples, -1, width)
        else:
            dy = xp.ones((samples, x.shape[1], width), dtype=bool)
        xs.append(x)
        dys.append(dy)
    tokens = [x.shape[1] for x in xs]
    if len(xs) == 1:
        return xs[0], dys[0], tokens
    return xp.concatenate(xs, axis=1), xp.concatenate(dys, axis=1), tokens


def measured(kernel, mapping, env: dict, runs) -> MatmulCounts:
    """Counts of every variant of `runs` from the step's tensors."""
    xp = runs.xp
    x, dy, call_tokens = streams(xp, kernel, env)
    nx = runs.host(tile_nonzeros(xp, x, mapping.rows)).astype(np.float64)
    ndy = runs.host(tile_nonzeros(xp, dy, mapping.cols)).astype(np.float64)
    tk, tn = tiles(kernel, mapping)
    rows = runs.rows(kernel, call_tokens)
    charged = np.stack([np.ones(nx.shape[:2]) if rows is None else rows[v.positions]
                        for v in runs.variants])                                   # (V, S, T)
    computed = charged[0] if rows is None else rows["actual"]
    harvest = np.array([v.harvest for v in runs.variants])[:, None, None]
    measured_rows = np.where(harvest, np.minimum(charged, computed), 0.0)
    dense_rows = (charged - measured_rows)[..., None]
    a = nx * measured_rows[..., None] + dense_rows * tk                                # (V, S, T, R)
    g = ndy * measured_rows[..., None] + dense_rows * tn
    tile = runs.tiles(kernel)
    work = None if tile is None else _masked_work(xp, runs, x, dy, tile, charged, rows is not None)
    pairs = None if work is not None or nx.shape[1] == 1 else np.einsum("vstr,vstc->vsrc", a, g)
    return MatmulCounts(a.sum(axis=2), g.sum(axis=2), charged.sum(axis=2), pairs, work)


def _masked_work(xp, runs, x, dy, tile, charged, marked: bool):
    """((fwd, dx, dw) MACs, each (V, S, rows, cols), and which variants they count): a
    harvested variant skips the masked weights (`masked_work`) of the rows it charges; a
    dense one multiplies every weight, which the unmasked formulas count."""
    counted = np.array([v.harvest for v in runs.variants])
    work = np.zeros((3, len(counted), x.shape[0], tile.rows, tile.cols))
    for v in np.flatnonzero(counted):
        keep = xp.asarray(charged[v])[:, :, None] if marked else None
        found = masked_work(xp, runs.host, x if keep is None else x * keep.astype(x.dtype),
                            dy if keep is None else dy * keep.astype(dy.dtype), tile)
        work[:, v] = found["fwd"], found["dx"], found["dw"]
    return work, counted
