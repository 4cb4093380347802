"""The matmul kind's fabric program, forward pass: `y = x @ w` on the kernel's rectangle.

Core (r, c) holds w[I_r, J_c] (`compiler.kernels.matmul`, Hot Chips 2020 dataflow):
- **x, colour X**: the tile x[I_r] of every sample enters row r over its west edge and is
  multicast along the row (route: from the west to the ramp and on east). Its sender filters
  zeros: a tile goes as one (value, index) wavelet per non-zero when that is fewer than its
  dense wavelets, else densely (`Target.dense_values_per_wavelet` values a wavelet); a control
  wavelet (no value) ends each sample's tile.
- **the x task**: per value, an FMAC of the value with the weight row w[i, J_c] into the
  sample's accumulator; the receiver skips zero values (no work), as the analytic model counts.
- **partial sums, colour P**, are chained down each column along the reduction dimension:
  row 0 sends its |J_c| partial sums south when its own x is done; a lower row's P task adds
  each arriving partial sum into its own, once its own x for that sample is done, and its
  PE sends the sum on south (route: from the north to the ramp, from the ramp south). The
  last row's sums leave over the south edge: the kernel's output.
A sample with several tokens streams them one after another (each token a row of x).
"""
from __future__ import annotations

import numpy as np

from compiler.cost import tile_sizes

from .pe import Work
from .programs import register
from .queues import Wavelets, empty
from .router import E, N, RAMP, S, W, route_mask

X, P = 0, 1


def x_stream(x: np.ndarray, rows: int, values: int, harvest: bool) -> tuple:
    """(Wavelets (rows, length), lengths (rows,)): the wavelets entering each row, sample by
    sample, from `x` (items, K): zeros filtered where that sends fewer, a control wavelet
    after each sample's tile."""
    items, k = x.shape
    tk = tile_sizes(k, rows)
    step = -(-k // rows)
    tiles = np.zeros((items, rows * step), dtype=np.float32)
    tiles[:, :k] = x
    tiles = tiles.reshape(items, rows, step)
    at = np.arange(step)
    nonzero = (tiles != 0) & (at < tk[:, None])
    nnz = nonzero.sum(axis=-1)
    dense_count = -(-tk // values)                                       # (rows,)
    sparse = harvest & (nnz < dense_count)                               # (items, rows)
    slots = step + 1                                                     # every tile + control
    k_ = np.arange(slots)
    # dense: wavelet k holds values k*values ...; sparse: wavelet k holds the k-th non-zero
    start = k_ * values
    dense_v = np.zeros((items, rows, slots, values), dtype=np.float32)
    padded = np.zeros((items, rows, slots * values), dtype=np.float32)
    padded[..., :step] = np.where(at < tk[:, None], tiles, 0)
    dense_v[...] = padded.reshape(items, rows, slots, values)
    dense_n = np.clip(tk[:, None] - start, 0, values)                    # (rows, slots)
    order = np.argsort(~nonzero, axis=-1, kind="stable")
    pos = np.zeros((items, rows, slots), dtype=np.int64)
    pos[..., :step] = order
    sparse_v = np.take_along_axis(padded, pos, axis=-1)
    length = np.where(sparse, nnz, dense_count)                          # data wavelets
    data = k_ < length[..., None]
    n = np.where(sparse[..., None], 1, dense_n[None]) * data
    idx = np.where(sparse[..., None], pos, start) * data
    v = np.where(sparse[..., None, None], np.eye(values, dtype=np.float32)[0] * sparse_v[..., None],
                 dense_v) * data[..., None]
    valid = k_ <= length[..., None]                                      # the control one too
    flat = lambda a: np.swapaxes(a, 0, 1).reshape((rows, items * slots) + a.shape[3:])  # noqa: E731
    keep = flat(valid)
    order = np.argsort(~keep, axis=1, kind="stable")
    pick = lambda a: np.take_along_axis(flat(a), order.reshape(order.shape + (1,) * (a.ndim - 3)),  # noqa: E731
                                        axis=1)
    w = Wavelets(np.full(keep.shape, X, dtype=np.int16), pick(n).astype(np.int8),
                 pick(idx).astype(np.int32), pick(v).astype(np.float32))
    return w, keep.sum(axis=1)


def routes(rows: int, cols: int) -> np.ndarray:
    """(2, 5, rows, cols) route bits: x from the west to the ramp and on east (the last column
    to the ramp only); partial sums from the north to the ramp, and from the ramp south."""
    out = np.zeros((2, 5, rows, cols), dtype=np.uint8)
    out[X, W] = route_mask(RAMP, E)
    out[X, W, :, -1] = route_mask(RAMP)
    out[P, N, 1:] = route_mask(RAMP)
    out[P, RAMP] = route_mask(S)
    return out


class MatmulForward:
    """The forward program of one replica (`programs` describes the protocol)."""

    colours = 2
    priority = (P, X)        # a waiting partial sum unblocks the rows below: serve it first
    reduction = (P,)         # the partial-sum tasks (`check` reports them apart)

    def __init__(self, x: np.ndarray, w: np.ndarray, rows: int, cols: int, values: int,
                 harvest: bool):
        self.x, self.w = np.asarray(x, np.float32), np.asarray(w, np.float32)
        self.items, (k, n) = self.x.shape[0], self.w.shape
        if self.x.shape[1] != k:
            raise ValueError(f"x has {self.x.shape[1]} features but the weight has {k} rows")
        self.region, self.harvest, self.values = (rows, cols), harvest, values
        self.tk, self.tn = tile_sizes(k, rows), tile_sizes(n, cols)
        self.step_k, self.step_n = -(-k // rows), -(-n // cols)
        self.routes = routes(rows, cols)
        self.streams = {"W": x_stream(self.x, rows, values, harvest)}
        self.sinks = {"S": self.items * self.tn}
        longest = int(self.streams["W"][1].max())
        self.bound = 64 * (longest * (self.step_n + 2) + self.items * self.step_n * 4 + rows + cols) + 256

    def start(self, xp, datapath) -> None:
        """Device state: weight tiles, accumulators, and the counters of the x and P tasks and
        of the PE's sends."""
        rows, cols = self.region
        self.xp, self.dp = xp, datapath
        wt = np.zeros((rows * self.step_k, cols * self.step_n), dtype=np.float32)
        wt[:self.w.shape[0], :self.w.shape[1]] = self.w
        self.wt = xp.asarray(wt.reshape(rows, self.step_k, cols, self.step_n).transpose(0, 2, 1, 3))
        self.acc = xp.zeros((self.items, rows, cols, self.step_n), dtype=xp.float32)
        self.n_out = xp.asarray(np.broadcast_to(self.tn, (rows, cols)).astype(np.int64))
        self.ri, self.ci = (xp.asarray(a) for a in np.indices((rows, cols)))
        zero = lambda: xp.zeros((rows, cols), dtype=xp.int64)  # noqa: E731
        self.xs, self.ps, self.pj, self.oj = zero(), zero(), zero(), zero()
        self.os = xp.where(self.n_out > 0, 0, self.items)        # an empty tile sends nothing
        self.first = self.ri == 0

    def ready(self, colour: int, heads):
        return self.xs > self.ps if colour == P else self.xs >= 0

    def run(self, colour: int, heads, mask) -> Work:
        return self._psum(heads, mask) if colour == P else self._x(heads, mask)

    def _x(self, heads, mask) -> Work:
        """Accumulate each value of an x wavelet times its weight row; a control wavelet ends
        the sample."""
        xp = self.xp
        h = Wavelets(*(f[X] for f in heads))
        control = mask & (h.n == 0)
        counted = xp.zeros(self.region, dtype=xp.int64)
        contrib = xp.zeros(self.region + (self.step_n,), dtype=xp.float32)
        for k in range(self.values):
            valid = mask & (h.n > k)
            value = xp.where(valid, h.v[..., k], 0)
            pos = xp.clip(h.idx + k, 0, self.step_k - 1).astype(xp.intp)
            weights = xp.take_along_axis(self.wt, pos[..., None, None], axis=2)[:, :, 0]
            contrib += value[..., None] * weights
            counted += valid & ((value != 0) if self.harvest else True)
        s = xp.minimum(self.xs, self.items - 1)
        self.acc[s, self.ri, self.ci] += contrib
        self.xs = self.xs + control
        op = self.dp.fmac(xp, self.n_out)
        return self.dp.task(xp, Work(op.simd * counted, op.sram * counted, None), mask)

    def _psum(self, heads, mask) -> Work:
        """Add an arriving partial sum into this core's own for the same output."""
        xp = self.xp
        s, j = xp.minimum(self.ps, self.items - 1), xp.minimum(self.pj, self.step_n - 1)
        self.acc[s, self.ri, self.ci, j] += xp.where(mask, heads.v[P, ..., 0], 0)
        self.pj = self.pj + mask
        wrap = self.pj >= self.n_out
        self.ps, self.pj = self.ps + wrap, xp.where(wrap, 0, self.pj)
        return self.dp.task(xp, self.dp.fmac(xp, xp.ones_like(self.n_out)), mask)

    def emit(self) -> tuple:
        """The PE's next partial sum to send south, where it is complete: its own x is done and
        (below row 0) the sum from above was added."""
        xp = self.xp
        added = (self.ps > self.os) | ((self.ps == self.os) & (self.pj > self.oj))
        want = (self.os < self.items) & (self.xs > self.os) & (self.first | added)
        s, j = xp.minimum(self.os, self.items - 1), xp.minimum(self.oj, self.step_n - 1)
        w = empty(xp, self.region, self.values)
        v = w.v.copy()
        v[..., 0] = self.acc[s, self.ri, self.ci, j]
        return want, Wavelets(xp.full(self.region, P, dtype=xp.int16), xp.ones(self.region, xp.int8),
                              j.astype(xp.int32), v)

    def emitted(self, mask) -> None:
        xp = self.xp
        self.oj = self.oj + mask
        wrap = self.oj >= self.n_out
        self.os, self.oj = self.os + wrap, xp.where(wrap, 0, self.oj)

    def output(self, run) -> np.ndarray:
        """(items, N) y read off the south sink, sample by sample, |J_c| sums per column."""
        value = run.sinks["S"][0]
        j = np.arange(self.step_n)
        at = np.arange(self.items)[None, :, None] * self.tn[:, None, None] + j      # (C, items, tn)
        valid = j < self.tn[:, None, None]
        tiles = np.where(valid, np.take_along_axis(value, np.minimum(at, value.shape[1] - 1)
                                                   .reshape(len(self.tn), -1), axis=1)
                         .reshape(at.shape), 0)
        y = tiles.transpose(1, 0, 2).reshape(self.items, -1)
        return y[:, :self.w.shape[1]]


@register("matmul", "forward")
def forward(kernel, mapping, target, tensors: dict, harvest: bool = True) -> MatmulForward:
    """`tensors`: "x" (samples, [tokens,] K) and "w" (K, N), the kernel's operands."""
    x = np.asarray(tensors["x"], dtype=np.float32)
    return MatmulForward(x.reshape(-1, x.shape[-1]), tensors["w"], mapping.rows, mapping.cols,
                         target.dense_values_per_wavelet, harvest)
