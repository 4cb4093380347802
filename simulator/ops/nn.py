"""Layer kernels: matmuls (Linear), layer norm (ATen/native/cpu/layer_norm_kernel.cpp), embedding backward.

The matmuls go to BLAS, whose summation order differs from torch's; everything around them follows
torch's CPU formulas (DESIGN.md, "Numerics contract").
"""
from __future__ import annotations

import numpy as np

from simulator.backend import add_at
from simulator.ops.registry import Meta, fast_path, op, scalar


@op("aten.addmm.default", kind="matmul")
def _addmm(xp, bias, m1, m2, beta=1, alpha=1):
    out = m1 @ m2
    out = out if alpha == 1 else out * scalar(out.dtype, alpha)
    if beta == 0:  # BLAS semantics: beta == 0 ignores bias, even NaNs in it
        return out
    return out + (bias if beta == 1 else bias * scalar(out.dtype, beta))


@fast_path("aten.addmm.default")
def _addmm_fast(xp, bias, m1, m2, beta=1, alpha=1):
    """beta = alpha = 1 on one dtype: add the bias into the product in place instead of into a new array."""
    metas = (bias, m1, m2)
    if beta != 1 or alpha != 1 or not all(isinstance(m, Meta) and m.dtype == m1.dtype for m in metas):
        return None
    if m1.ndim != 2 or m2.ndim != 2 or np.broadcast_shapes(bias.shape, (m1.shape[0], m2.shape[1])) != (
            m1.shape[0], m2.shape[1]):
        return None
    matmul = xp.matmul

    def call(b, a1, a2):
        out = matmul(a1, a2)
        out += b
        return out

    return call


op("aten.mm.default", "aten.bmm.default", "aten.matmul.default", kind="matmul",
   fast=lambda xp, a, b: xp.matmul if isinstance(a, Meta) and isinstance(b, Meta) else None)(
    lambda xp, a, b: xp.matmul(a, b))


@op("aten.embedding_dense_backward.default")
def _embedding_dense_backward(xp, g, indices, num_weights, padding_idx, scale_grad_by_freq):
    flat = indices.reshape(-1)
    rows = g.reshape(flat.size, -1)
    if scale_grad_by_freq:
        rows = rows / xp.bincount(flat, minlength=num_weights)[flat].astype(g.dtype)[:, None]
    out = xp.zeros((num_weights, rows.shape[1]), dtype=g.dtype)
    add_at(xp, out, flat, rows)
    if padding_idx >= 0:
        out[padding_idx] = 0
    return out.reshape((num_weights,) + g.shape[indices.ndim:])


@op("aten.native_layer_norm.default")
def _native_layer_norm(xp, x, normalized_shape, weight, bias, eps):
    """Returns (y, mean, rstd), mean/rstd shaped like x with normalized dims kept as 1."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    rstd = 1 / xp.sqrt(var + scalar(x.dtype, eps))
    y = d * rstd
    y = y if weight is None else y * weight
    return (y if bias is None else y + bias), mean, rstd


@op("aten.native_layer_norm_backward.default")
def _native_layer_norm_backward(xp, g, x, normalized_shape, mean, rstd, weight, bias, output_mask):
    """dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)); dw = sum(g*xhat); db = sum(g)."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    outer = tuple(range(x.ndim - len(normalized_shape)))
    xhat = (x - mean) * rstd
    gw = g if weight is None else g * weight
    dx = rstd * (gw - xp.mean(gw, axis=axes, keepdims=True) - xhat * xp.mean(gw * xhat, axis=axes, keepdims=True))
    dw = xp.sum(g * xhat, axis=outer) if output_mask[1] and weight is not None else None
    db = xp.sum(g, axis=outer) if output_mask[2] and bias is not None else None
    return (dx if output_mask[0] else None), dw, db
