"""The matmul kernel kind: hand-optimized kernels for the matmul family (nn.Linear and friends).

Loop nest `for b, t, i, j: out[b, t, j] += x[b, t, i] * w[i, j]`; w stays resident, split into
ceil(K/rows) x ceil(N/cols) tiles, x streams in along rows (multicast), partial sums are
chained along the unrolled reduction dimension i (Hot Chips 2020 dataflow). Core (r, c) holding
w[I_r, J_c] does, per sample (DESIGN.md, "Cost model", sparsity harvesting):
  forward   MACs = nnz(x[b, I_r]) * |J_c|        in: x (zeros filtered)   out: |J_c| psums
  backward  dX MACs = nnz(dY[b, J_c]) * |I_r|    in: dY                   out: |I_r| psums
            dW MACs = nnz(x[b, I_r]) * nnz(dY[b, J_c])
summed over the tokens a sample sends. A masked weight is stored compressed and its cores skip
the masked entries too (`masked`). The first layer (no dx stream) has no dX pass.
Building: `build`; counts: `counts`; cost: `components` below.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ... import cost
from ...passes import MATMUL_OPS
from ..base import Kernel
from . import counts as _counts
from .build import build, matmul_kernel, matmul_nest, weight_view
from .masked import mask_tiles


def computes_dx(kernel: Kernel) -> bool:
    """The first layer needs no gradient for its input, so it skips the dX pass."""
    return "dx" in kernel.stream


class MatmulKind:
    name = "matmul"
    per_call_governors = True

    build = staticmethod(build)
    weight_view = staticmethod(weight_view)

    @staticmethod
    def mask_tiles(xp, host, mask, mapping):
        return mask_tiles(xp, host, mask, mapping.rows, mapping.cols)

    @staticmethod
    def weights_per_core(kernel: Kernel, mapping, tiles=None):
        """The weight tile plus its share of the bias (spread over a row of cores) on the
        fullest core; with a mask's `tiles`, per core (rows, cols): the kept weights plus the
        bias share."""
        k, n = kernel.nest.extent("i"), kernel.nest.extent("j")
        bias = math.ceil(max(kernel.param_numel - k * n, 0) / mapping.cols)
        if tiles is not None:
            return tiles.kept + bias
        return math.ceil(k / mapping.rows) * math.ceil(n / mapping.cols) + bias

    def memory_per_core(self, kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """Weights with their gradient accumulator and optimizer state, plus the x tiles stashed
        for the samples between forward and backward, and the in/out buffers. A masked weight
        (`kept` on the fullest core) is stored compressed; the bias stays dense."""
        weights = self.weights_per_core(kernel, mapping)
        tk = math.ceil(kernel.nest.extent("i") / mapping.rows)
        tn = math.ceil(kernel.nest.extent("j") / mapping.cols)
        if kept is None:
            resident = cost.resident_bytes(weights, target, optimizer)
        else:
            resident = cost.resident_bytes(weights - tk * tn, target, optimizer) + \
                cost.compressed_weight_bytes(kept, tk, tn, target, optimizer)
        tokens = kernel.nest.extent("t")
        stash = tk * tokens
        buffers = tn * tokens + stash
        return int(resident + (in_flight * stash + buffers) * target.activation_bytes)

    @staticmethod
    def dense_macs(kernel: Kernel) -> int:
        n = kernel.nest
        passes = 3 if computes_dx(kernel) else 2
        return passes * n.extent("t") * n.extent("i") * n.extent("j")

    @staticmethod
    def assumed_counts(kernel: Kernel, mapping, target, density, harvest: bool):
        return _counts.assumed(kernel, mapping, density, harvest)

    @staticmethod
    def measured_counts(kernel: Kernel, mapping, env: dict, runs):
        return _counts.measured(kernel, mapping, env, runs)

    @staticmethod
    def components(kernel: Kernel, c, mapping, target) -> cost.Components:
        """Per distinct sample and core (samples, 1, rows, cols): each pass's MACs over the SIMD
        width, the streamed operand in (zeros filtered, `cost.wavelets`) and the partial sums
        out. A tile size shared by every core stays a size-1 axis."""
        g = _geometry(kernel, mapping, target, c.x.dtype)
        x, dy = c.x[:, None, :, None], c.dy[:, None, None, :]
        tokens = c.tokens[:, None, None, None]
        fwd = x * g.tn
        dw = x * dy / tokens if c.pairs is None else c.pairs[:, None]
        dx = dy * g.tk if g.dx else None
        if c.worked is not None:
            worked = c.worked[:, None, None, None]
            fwd = np.where(worked, c.fwd[:, None], fwd)
            dw = np.where(worked, c.dw[:, None], dw)
            dx = np.where(worked, c.dx[:, None], dx) if g.dx else None
        fwd /= g.simd
        bwd_compute = np.ceil(dw / g.simd)
        if g.dx:
            dx /= g.simd
            bwd_compute += np.ceil(dx, out=dx)
        return cost.Components(np.ceil(fwd, out=fwd), cost.wavelets(x, tokens * g.dense_k),
                               tokens * g.tn, bwd_compute, cost.wavelets(dy, tokens * g.dense_n),
                               tokens * g.tk if g.dx else 0, _macs(c, g))

    @staticmethod
    def governed(graph, kernel: Kernel, mask_shape) -> list:
        """Per call: its forward matmul, whose marker governs the call's token rows when its x
        has the mask's positions ([B*T, K] or [B, T, K]); a pooled input ([B, K]) has none."""
        batch, positions = mask_shape
        types, ops, out = graph.type_of, set(kernel.ops), []
        for call in kernel.calls:
            x = call["x"]
            forward = next((c.name for c in graph.consumers.get(x, [])
                            if c.name in ops and c.op in MATMUL_OPS), None)
            width = types[x].shape[-1] if types[x].shape else 1
            out.append((forward, "tokens" if types[x].numel == batch * positions * width else None))
        return out

    @staticmethod
    def streamed(kernel: Kernel) -> dict[str, str]:
        return {role: kernel.stream[role] for role in ("x", "dy") if role in kernel.stream}


class _Geometry(NamedTuple):
    """What a matmul's cost needs of its mapping, worked out once: tile sizes over rows `tk`
    (R or 1, 1) and over cols `tn` (C or 1,) (one when every core has the same), the dense
    wavelets of a token's tile `dense_k`, `dense_n`, the sum of the tiles (K, N), whether it
    has a dX pass, and the SIMD width."""
    tk: np.ndarray
    tn: np.ndarray
    dense_k: np.ndarray
    dense_n: np.ndarray
    k: float
    n: float
    dx: bool
    simd: int


def _geometry(kernel: Kernel, mapping, target, dtype) -> _Geometry:
    return _geometry_of(kernel.nest.extent("i"), kernel.nest.extent("j"), mapping.rows,
                        mapping.cols, computes_dx(kernel), target, np.dtype(dtype))


@functools.lru_cache(maxsize=1024)
def _geometry_of(k: int, n: int, rows: int, cols: int, dx: bool, target, dtype) -> _Geometry:
    full_k, full_n = _counts.tile_arrays(k, n, rows, cols, dtype)
    tk, tn = _uniform(full_k)[:, None], _uniform(full_n)
    return _Geometry(tk, tn, cost.dense_wavelets(tk, target).astype(dtype),
                     cost.dense_wavelets(tn, target).astype(dtype), float(k), float(n), dx,
                     target.simd)


def _macs(c, g: _Geometry) -> np.ndarray:
    """(samples,) MACs of each sample: x times the output columns, dY times the input rows, and
    the dW pairs, factored over the cores (summed in float64); the counted MACs of a masked
    weight where `worked`."""
    x, dy = c.x.sum(axis=1, dtype=np.float64), c.dy.sum(axis=1, dtype=np.float64)
    pairs = x * dy / c.tokens if c.pairs is None else c.pairs.sum(axis=(1, 2), dtype=np.float64)
    macs = x * g.n + pairs
    if g.dx:
        macs += dy * g.k
    if c.worked is None:
        return macs
    work = c.fwd.sum(axis=(1, 2)) + c.dw.sum(axis=(1, 2)) + (c.dx.sum(axis=(1, 2)) if g.dx else 0.0)
    return np.where(c.worked, work, macs)


def _uniform(tiles: np.ndarray) -> np.ndarray:
    """The tile sizes, or one of them when every core has the same (a size-1 axis)."""
    return tiles[:1] if (tiles == tiles[0]).all() else tiles


MATMUL = MatmulKind()

__all__ = ["MATMUL", "MatmulKind", "matmul_nest", "matmul_kernel", "computes_dx"]
