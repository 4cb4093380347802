"""A matmul kernel's counts: per sample and per core, what it receives and what it computes.

Core (r, c) holds w[I_r, J_c] (Hot Chips 2020 dataflow, DESIGN.md "Cost model"):
  x     nnz(x[b, t, I_r]) summed over the tokens a sample sends      (`MatmulCounts.x`)
  dY    nnz(dY[b, t, J_c]) likewise                                     (`MatmulCounts.dy`)
  dW    sum_t nnz(x[b, t, I_r]) nnz(dY[b, t, J_c])                      (`MatmulCounts.pairs`)
Assumed counts (the static estimate) are density x tile size x tokens, with dW the expected
product x dY / tokens; measured counts come from the step's tensors: a harvested variant counts
the non-zeros, a dense one (harvesting off) every value, which is the same for every sample when
every token row counts, so it is one distinct sample. With `running` markers only the token rows
a variant charges count; a row the run did not compute (a halted position, a pad) has no
measured values, so a baseline charges it dense.
A masked weight (weight sparsity) is counted by `masked.masked_work` into `MatmulCounts.fwd`,
`dx` and `dw`. `counter`: with one token per sample, no markers and no mask, each sample's x
and dY tile counts straight from the tensors (`compiler.table.Counter`).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ...cost import tile_sizes
from ...table import Counter
from ..base import Counts, harvest_rows
from .masked import masked_work


class MatmulCounts(NamedTuple):
    """Counts of each distinct sample (the first axis of every field): `x` (U, rows), `dy`
    (U, cols), `tokens` (U,) charged; `pairs` (U, rows, cols) the dW work, None for the expected
    x dY / tokens. A masked weight's MACs per core `fwd`, `dx`, `dw` (U, rows, cols) replace the
    unmasked formulas where `worked` (U,) is True; None when unmasked."""
    x: np.ndarray
    dy: np.ndarray
    tokens: np.ndarray
    pairs: np.ndarray | None = None
    fwd: np.ndarray | None = None
    dx: np.ndarray | None = None
    dw: np.ndarray | None = None
    worked: np.ndarray | None = None


def tiles(kernel, mapping, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Tile sizes of the reduction dim over rows and the output dim over cols (read-only)."""
    return tile_arrays(kernel.nest.extent("i"), kernel.nest.extent("j"), mapping.rows, mapping.cols,
                       np.dtype(dtype))


@functools.lru_cache(maxsize=1024)
def tile_arrays(k: int, n: int, rows: int, cols: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Tile sizes of K over `rows` and of N over `cols`, as `dtype` (cached, read-only)."""
    out = tile_sizes(k, rows).astype(dtype), tile_sizes(n, cols).astype(dtype)
    for t in out:
        t.flags.writeable = False
    return out


def assumed(kernel, mapping, density, harvest: bool) -> Counts:
    """One sample at densities (x, dY); every value when harvesting is off."""
    dx, ddy = (density, density) if np.ndim(density) == 0 else density
    if not harvest:
        dx = ddy = 1.0
    tokens = kernel.nest.extent("t")
    tk, tn = tiles(kernel, mapping)
    return Counts(MatmulCounts((dx * tk * tokens)[None], (ddy * tn * tokens)[None],
                               np.full(1, float(tokens))), np.zeros((1, 1), dtype=np.intp))


def tile_nonzeros(xp, values, parts: int, dense: bool = False):
    """(samples, tokens, parts) non-zero counts of `values` (samples, tokens, features) split
    into `parts` contiguous tiles of ceil(features / parts): the non-zero indicators, padded
    with zeros to whole tiles, one tile per row, times a vector of ones (one BLAS call over the
    values once; float32 is exact, as every count is below 2**24). `dense`: one more sample
    after them whose every value counts (harvesting off)."""
    samples, tokens, features = values.shape
    step = -(-features // parts)
    if not dense and step in _WORDS and xp is np:     # CuPy's packbits has no axis
        return _bit_counts(xp, values, parts, step)
    nonzero = xp.empty((samples + dense, tokens, parts * step), dtype=xp.float32)
    xp.not_equal(values, 0, out=nonzero[:samples, :, :features])
    if parts * step > features:
        nonzero[:, :, features:] = 0
    if dense:
        nonzero[samples, :, :features] = 1
    return (nonzero.reshape(-1, step) @ _ones(xp, step)).reshape(samples + dense, tokens, parts)


_WORDS = {8: "uint8", 16: "uint16", 32: "uint32", 64: "uint64"}   # tile bits -> one word


def _bit_counts(xp, values, parts: int, step: int):
    """`tile_nonzeros` of tiles one machine word wide, on NumPy: the non-zero indicators
    packed eight to a byte along the features, each tile's word's set bits counted
    (`bitwise_count`), about twice as fast."""
    bits = xp.packbits(values != 0, axis=-1)           # (samples, tokens, ceil(features / 8))
    width = parts * step // 8
    if bits.shape[-1] < width:                         # whole tiles: the padding counts nothing
        pad = xp.zeros(bits.shape[:-1] + (width - bits.shape[-1],), dtype=xp.uint8)
        bits = xp.concatenate([bits, pad], axis=-1)
    return xp.bitwise_count(bits.view(_WORDS[step])).astype(xp.float32)


@functools.lru_cache(maxsize=64)
def _ones(xp, size: int):
    return xp.ones(size, dtype=xp.float32)


def counter(kernel, mapping, grid) -> Counter | None:
    """The kernel's counts for a tabulated step (`compiler.table.Counter`): those of
    `measured`'s every-row case, one token per sample and one call; None otherwise."""
    if kernel.steps != 1 or kernel.nest.extent("t") != 1:
        return None
    samples, width, call = kernel.samples, kernel.nest.extent("j"), kernel.calls[0]
    every = [tile_nonzeros(np, np.ones((1, 1, n), dtype=np.float32), parts)[0, 0]
             for n, parts in ((kernel.nest.extent("i"), mapping.rows), (width, mapping.cols))]

    def nonzeros(xp, values, parts):
        return tile_nonzeros(xp, values, parts)[:, 0]

    def count(xp, env):
        x = nonzeros(xp, env[call["x"]].reshape(samples, 1, -1), mapping.rows)
        if "dy" not in call:                         # nothing to harvest: every value counts
            return x, xp.asarray(np.repeat(every[1][None], samples, axis=0))
        dy = env[call["dy"]]
        return x, nonzeros(xp, (dy.T if dy.shape[-1] != width else dy).reshape(samples, 1, width),
                           mapping.cols)

    def counts(x, dy, rows) -> Counts:
        return Counts(MatmulCounts(x, dy, _tokens(len(x), 1)), rows)
    return Counter(grid, tuple(every), count, counts)


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


def measured(kernel, mapping, env: dict, runs) -> Counts:
    """Counts of every variant of `runs` from the step's tensors."""
    xp = runs.xp
    x, dy, call_tokens = streams(xp, kernel, env)
    rows = runs.rows(kernel, call_tokens)
    every = rows is None         # every row charged: the dense counts are one more sample

    def counted(values, parts):
        return runs.host(tile_nonzeros(xp, values, parts, every)).astype(np.float32, copy=False)
    nx, ndy = counted(x, mapping.rows), counted(dy, mapping.cols)
    if every:
        return _every_row(xp, runs, x, dy, nx, ndy, runs.tiles(kernel))
    tk, tn = tiles(kernel, mapping, np.float32)
    return _charged_rows(xp, runs, x, dy, nx, ndy, tk, tn, rows, runs.tiles(kernel))


def _every_row(xp, runs, x, dy, nx, ndy, tile) -> Counts:
    """Every token row charged and computed: one distinct sample per sample for the variants
    that skip zeros (their non-zeros), one for those that do not (every value: the last of
    `nx`, `ndy`)."""
    samples, tokens = x.shape[:2]
    pairs = np.einsum("str,stc->src", nx, ndy) if tokens > 1 else None
    per_sample = (lambda n: n[:, 0]) if tokens == 1 else (lambda n: n.sum(axis=1))
    counts = MatmulCounts(per_sample(nx), per_sample(ndy), _tokens(samples + 1, tokens), pairs)
    if tile is not None:
        work = masked_work(xp, runs.host, x, dy, tile)
        dense = np.zeros((1,) + work["fwd"].shape[1:])
        counts = counts._replace(**{k: np.concatenate([w, dense]) for k, w in work.items()},
                                 worked=np.arange(samples + 1) < samples)
    return Counts(counts, harvest_rows(runs.harvests, samples))


@functools.lru_cache(maxsize=64)
def _tokens(samples: int, tokens: int) -> np.ndarray:
    out = np.full(samples, float(tokens), dtype=np.float32)
    out.flags.writeable = False
    return out


def _charged_rows(xp, runs, x, dy, nx, ndy, tk, tn, rows, tile) -> Counts:
    """`rows` (positions -> (S, T) weights) say which token rows each variant charges: a row
    charged but not computed (halted, a pad) has no measured values, so it counts its whole
    tile. Variants that charge the same rows the same way share their samples."""
    distinct, which = _distinct_variants(runs.variants, rows)
    charged = np.stack([rows[v.positions] for v in distinct]).astype(np.float32)     # (D, S, T)
    harvest = np.array([v.harvest for v in distinct])[:, None, None]
    measured_rows = np.where(harvest, np.minimum(charged, rows["actual"]), np.float32(0))
    dense_rows = (charged - measured_rows)[..., None]
    a = nx * measured_rows[..., None] + dense_rows * tk                                # (D, S, T, R)
    g = ndy * measured_rows[..., None] + dense_rows * tn
    flat = lambda v: v.reshape((-1,) + v.shape[2:])  # noqa: E731
    pairs = None if tile is not None or nx.shape[1] == 1 else flat(np.matmul(a.swapaxes(2, 3), g))
    counts = MatmulCounts(flat(a.sum(axis=2)), flat(g.sum(axis=2)), flat(charged.sum(axis=2)), pairs)
    if tile is not None:
        counts = counts._replace(**_masked_rows(xp, runs, x, dy, tile, charged, distinct))
    samples = nx.shape[0]
    return Counts(counts, np.array(which)[:, None] * samples + np.arange(samples))


def _distinct_variants(variants, rows) -> tuple[list, list[int]]:
    """The variants that differ in the rows they charge or in skipping zeros, and the index of
    each variant among them (a transformer's fixed-depth run charges the run's own rows)."""
    distinct, which = [], []
    for v in variants:
        charged = rows[v.positions]
        same = next((i for i, d in enumerate(distinct) if d.harvest == v.harvest and
                     (rows[d.positions] is charged or np.array_equal(rows[d.positions], charged))), None)
        if same is None:
            distinct.append(v)
            same = len(distinct) - 1
        which.append(same)
    return distinct, which


def _masked_rows(xp, runs, x, dy, tile, charged, variants) -> dict:
    """`MatmulCounts` fields fwd, dx, dw and `worked` of every (variant, sample) of `variants`:
    a harvested variant skips the masked weights (`masked_work`) of the rows it charges; a
    dense one multiplies every weight, which the unmasked formulas count."""
    counted = np.array([v.harvest for v in variants])
    shape = (len(counted), x.shape[0], tile.rows, tile.cols)
    work = {key: np.zeros(shape) for key in ("fwd", "dx", "dw")}
    for v in np.flatnonzero(counted):
        keep = xp.asarray(charged[v])[:, :, None]
        found = masked_work(xp, runs.host, x * keep.astype(x.dtype), dy * keep.astype(dy.dtype), tile)
        for key in work:
            work[key][v] = found[key]
    flat = {key: w.reshape((-1,) + shape[2:]) for key, w in work.items()}
    return dict(flat, worked=np.repeat(counted, x.shape[0]))
