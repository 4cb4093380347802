"""compiler.kernels.matmul.masked: the per-core work against a masked weight, counted from the
tensors, equals a brute-force loop over cores, samples and weights."""
from __future__ import annotations

import numpy as np
import pytest

from compiler import wafer
from compiler.cost import tile_sizes
from compiler.kernels import matmul_kernel
from compiler.kernels.matmul import MATMUL
from compiler.kernels.matmul.counts import MatmulCounts
from compiler.kernels.matmul.masked import mask_tiles as _mask_tiles, masked_work as _masked_work
from compiler.mapping import Mapping

T = wafer("classroom")


def brute_force(x, dy, mask, rows, cols):
    """Per-sample, per-core MACs of a masked matmul, one core, sample, token and weight at a time."""
    samples, tokens, k = x.shape
    n = dy.shape[2]
    sk, sn = -(-k // rows), -(-n // cols)
    out = {key: np.zeros((samples, rows, cols)) for key in ("fwd", "dx", "dw")}
    for b in range(samples):
        for r in range(rows):
            rows_i = range(r * sk, min(k, (r + 1) * sk))
            for c in range(cols):
                cols_j = range(c * sn, min(n, (c + 1) * sn))
                for t in range(tokens):
                    for i in rows_i:
                        for j in cols_j:
                            if not mask[i, j]:
                                continue
                            out["fwd"][b, r, c] += x[b, t, i] != 0
                            out["dx"][b, r, c] += dy[b, t, j] != 0
                            out["dw"][b, r, c] += (x[b, t, i] != 0) and (dy[b, t, j] != 0)
    return out


def mask_tiles(xp, mask, rows, cols):
    return _mask_tiles(xp, np.asarray, mask, rows, cols)


def masked_work(xp, x, dy, tiles, chunk=1 << 22):
    return _masked_work(xp, np.asarray, x, dy, tiles, chunk)


def _sparse(rng, shape, density):
    return np.where(rng.random(shape) < density, rng.standard_normal(shape), 0.0).astype(np.float32)


@pytest.mark.parametrize("case", range(12))
def test_masked_work_equals_a_brute_force_count(case):
    rng = np.random.default_rng(case)
    k, n = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    rows, cols = int(rng.integers(1, k + 1)), int(rng.integers(1, n + 1))   # may leave empty tiles
    samples, tokens = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = _sparse(rng, (samples, tokens, k), rng.random())
    dy = _sparse(rng, (samples, tokens, n), rng.random())
    mask = rng.random((k, n)) < rng.random()
    got = masked_work(np, x, dy, mask_tiles(np, mask, rows, cols), chunk=int(rng.integers(1, 200)))
    want = brute_force(x, dy, mask, rows, cols)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    everything = brute_force(np.ones((1, 1, k)), np.ones((1, 1, n)), mask, rows, cols)["dw"][0]
    np.testing.assert_array_equal(mask_tiles(np, mask, rows, cols).kept, everything)


def test_full_mask_costs_what_the_unmasked_harvest_costs():
    rng = np.random.default_rng(3)
    k, n, rows, cols, samples, tokens = 37, 29, 5, 4, 3, 4
    x, dy = _sparse(rng, (samples, tokens, k), 0.4), _sparse(rng, (samples, tokens, n), 0.6)
    tk, tn = tile_sizes(k, rows), tile_sizes(n, cols)
    per_row = np.add.reduceat(x != 0, np.arange(rows) * tk[0], axis=2).astype(float)
    per_col = np.add.reduceat(dy != 0, np.arange(cols) * tn[0], axis=2).astype(float)
    nx, ndy = per_row.sum(axis=1), per_col.sum(axis=1)
    pairs = np.einsum("str,stc->src", per_row, per_col)
    work = masked_work(np, x, dy, mask_tiles(np, np.ones((k, n), bool), rows, cols))
    kernel, mapping = matmul_kernel(k=k, n=n, samples=samples, tokens=tokens), Mapping(rows, cols)
    count = (nx, ndy, np.full(samples, float(tokens)))
    plain = MATMUL.components(kernel, MatmulCounts(*count, pairs), mapping, T)
    fields = {key: work[key] for key in ("fwd", "dx", "dw")}
    masked = MATMUL.components(kernel, MatmulCounts(*count, None, **fields,
                                                    worked=np.ones(samples, dtype=bool)),
                               mapping, T)
    for key in ("fwd_compute", "fwd_link", "bwd_compute", "bwd_link"):
        np.testing.assert_array_equal(*np.broadcast_arrays(getattr(masked, key), getattr(plain, key)),
                                      err_msg=key)
    np.testing.assert_array_equal(masked.macs, plain.macs)
