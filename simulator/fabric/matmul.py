"""The matmul kind's fabric programs (`compiler.kernels.matmul`: core (r, c) holds w[I_r, J_c],
Hot Chips 2020 dataflow), built on `chain.Chain`:
- **forward**: y = x @ w. x streams along the rows, partial sums chain down the columns, y
  leaves over the south edge (`Chain` with axis 0).
- **backward**: dX = dY @ w^T and dW = x^T dY, both driven by the same dY wavelets. dY streams
  along the columns (multicast down each column), dX partial sums chain across the rows and
  leave over the east edge (`Chain` with axis 1, absent for a first layer, which needs no
  dX); each dY value also adds itself times the core's stashed x tile into the core's dW tile:
  an FMAC over the tile's non-zeros of x (the stash keeps the non-zeros the forward received,
  as the analytic model's nnz(x) nnz(dY) counts).
A sample with several tokens streams them one after another (each token a row of x and dY).
"""
from __future__ import annotations

import numpy as np

from compiler.cost import tile_sizes

from .chain import Chain
from .pe import Work
from .programs import register


class MatmulForward(Chain):
    """y = x @ w: `x` (items, K), `w` (K, N) on `rows x cols` cores."""

    def __init__(self, x, w, rows: int, cols: int, values: int, harvest: bool):
        super().__init__(x, w, rows, cols, 0, values, harvest)

    def output(self, run) -> dict:
        return {"y": self.product(run)}

    def reference(self) -> dict:
        return {"y": self.a @ self.m}


class MatmulBackward(Chain):
    """dX = dY @ w^T (when `dx`) and dW = x^T dY: `x` (items, K), `w` (K, N), `dy` (items, N)."""

    def __init__(self, x, w, dy, rows: int, cols: int, values: int, harvest: bool, dx: bool = True):
        super().__init__(dy, np.asarray(w, np.float32).T, rows, cols, 1, values, harvest, chained=dx)
        self.x = np.asarray(x, np.float32)
        if self.x.shape != (self.items, self.m.shape[1]):
            raise ValueError(f"x has shape {self.x.shape}; the backward needs (items, K) = "
                             f"{(self.items, self.m.shape[1])}")
        k = self.x.shape[1]
        self.step_k = -(-k // rows)
        stash = np.zeros((self.items, rows * self.step_k), dtype=np.float32)
        stash[:, :k] = self.x
        self.stash_host = stash.reshape(self.items, rows, self.step_k)
        self.tk = tile_sizes(k, rows)

    def start(self, xp, datapath) -> None:
        super().start(xp, datapath)
        self.stash = xp.asarray(self.stash_host)                           # (items, rows, step_k)
        counted = (self.stash_host != 0) if self.harvest else \
            np.broadcast_to(np.arange(self.step_k) < self.tk[:, None], self.stash_host.shape)
        self.stash_count = xp.asarray(counted.sum(axis=-1).astype(np.int64))  # (items, rows)
        rows, cols = self.region
        self.dw = xp.zeros((rows, cols, self.step_in, self.step_k), dtype=xp.float32)

    def each_value(self, s, value, pos) -> None:
        """dW[:, j] += dY_j x over the core's tile of x (a zero value adds nothing)."""
        self.dw[self.ri, self.ci, pos] += value[..., None] * self.stash[s, self.ri]

    def value_work(self, s, counted) -> Work:
        own = super().value_work(s, counted)
        dw = self.dp.fmac(self.xp, self.stash_count[s, self.ri])
        return Work(own.simd + dw.simd * counted, own.sram + dw.sram * counted, None)

    def output(self, run) -> dict:
        rows, cols = self.region
        dw = np.asarray(run.extra["dw"])                         # (rows, cols, step_n, step_k)
        full = dw.transpose(0, 3, 1, 2).reshape(rows * self.step_k, cols * self.step_in)
        out = {"dw": full[:self.x.shape[1], :self.a.shape[1]]}
        if self.chained:
            out["dx"] = self.product(run)
        return out

    def reference(self) -> dict:
        out = {"dw": self.x.T @ self.a}
        if self.chained:
            out["dx"] = self.a @ self.m
        return out

    def state(self) -> dict:
        """Device arrays the run hands back (`engine.Run.extra`)."""
        return {"dw": self.dw}


def _items(tensor) -> np.ndarray:
    """(samples * tokens, features): every token a row."""
    a = np.asarray(tensor, dtype=np.float32)
    return a.reshape(-1, a.shape[-1])


@register("matmul", "forward")
def forward(kernel, mapping, target, tensors: dict, harvest: bool = True) -> MatmulForward:
    """`tensors`: "x" (samples, [tokens,] K) and "w" (K, N), the kernel's operands."""
    return MatmulForward(_items(tensors["x"]), tensors["w"], mapping.rows, mapping.cols,
                         target.dense_values_per_wavelet, harvest)


@register("matmul", "backward")
def backward(kernel, mapping, target, tensors: dict, harvest: bool = True) -> MatmulBackward:
    """`tensors`: "x" (samples, [tokens,] K), "w" (K, N) and "dy" (samples, [tokens,] N); a
    kernel without a dX stream (a first layer) computes dW only."""
    return MatmulBackward(_items(tensors["x"]), tensors["w"], _items(tensors["dy"]), mapping.rows,
                          mapping.cols, target.dense_values_per_wavelet, harvest,
                          dx="dx" in kernel.stream)
