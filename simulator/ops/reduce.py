"""Reducing kernels: sums and means, min/max, variance, softmax and log-softmax, and the losses.

Each follows torch's CPU formula (ReduceOps.cpp, SoftMaxKernel.cpp, LossNLL.cpp, Loss.cpp) so that
training matches torch eager within float32 rounding; the order in which a reduction adds its
terms cannot be matched and is not attempted (DESIGN.md, "Numerics contract").
"""
from __future__ import annotations

import math

import numpy as np

from simulator.ops.registry import category, dtype_of, fast_path, op, scalar
from simulator.ops.shape import axes_of


def _reduce_axes(dim, ndim):
    full = ndim == 0 or dim is None or (not isinstance(dim, int) and len(dim) == 0)
    return None if full else axes_of(dim, ndim)


def _sum_dtype(x, dtype):
    return dtype_of(dtype) or (np.dtype(np.int64) if category(x) < 2 else x.dtype)


@op("aten.sum.dim_IntList", "aten.sum.default")
def _sum(xp, x, dim=None, keepdim=False, dtype=None):
    return xp.sum(x, axis=_reduce_axes(dim, x.ndim), keepdims=keepdim, dtype=_sum_dtype(x, dtype))


@fast_path("aten.sum.dim_IntList", "aten.sum.default")
def _sum_fast(xp, x, dim=None, keepdim=False, dtype=None):
    axes, dt = _reduce_axes(dim, x.ndim), _sum_dtype(x, dtype)
    if xp is np:  # np.sum on an ndarray is exactly np.add.reduce, less its Python wrapper
        return lambda t: np.add.reduce(t, axis=axes, dtype=dt, keepdims=keepdim)
    return lambda t: xp.sum(t, axis=axes, keepdims=keepdim, dtype=dt)


@op("aten.cumsum.default")
def _cumsum(xp, x, dim, dtype=None):
    """Running sums in order along `dim` (position ids from an attention mask); integers and
    bools sum as int64, as torch's do."""
    return xp.cumsum(x, axis=dim % max(x.ndim, 1), dtype=_sum_dtype(x, dtype))


@op("aten.mean.dim", "aten.mean.default")
def _mean(xp, x, dim=None, keepdim=False, dtype=None):
    """CPU mean is ``sum(...).div_(count)`` (ReduceOps.cpp), not a running mean."""
    axes = _reduce_axes(dim, x.ndim)
    count = math.prod(x.shape[a] for a in axes) if axes is not None else x.size
    return _sum(xp, x.astype(dtype_of(dtype) or x.dtype, copy=False), dim, keepdim) / count


def _minmax(fn):
    return lambda xp, x, dim=(), keepdim=False: getattr(xp, fn)(x, axis=_reduce_axes(dim, x.ndim), keepdims=keepdim)


op("aten.amax.default")(_minmax("max"))
op("aten.amin.default")(_minmax("min"))
op("aten.any.dim", "aten.any.dims", "aten.any.default")(_minmax("any"))
op("aten.all.dim", "aten.all.dims", "aten.all.default")(_minmax("all"))
op("aten.max.dim")(lambda xp, x, dim, keepdim=False: (
    xp.max(x, axis=dim, keepdims=keepdim), xp.argmax(x, axis=dim, keepdims=keepdim)))
op("aten.argmax.default")(lambda xp, x, dim=None, keepdim=False: xp.argmax(x, axis=dim, keepdims=keepdim))


@op("aten.var_mean.correction")
def _var_mean(xp, x, dim=None, correction=None, keepdim=False):
    axes = _reduce_axes(dim, x.ndim)
    count = math.prod(x.shape[a] for a in axes) if axes is not None else x.size
    mean = xp.sum(x, axis=axes, keepdims=True) / count
    d = x - mean
    var = xp.sum(d * d, axis=axes, keepdims=keepdim) / max(count - (1 if correction is None else correction), 0)
    return var, mean if keepdim else xp.reshape(mean, var.shape)


# ---- softmax ----

@op("aten._log_softmax.default")
def _log_softmax(xp, x, dim, half_to_float=False):
    """x - max - log(sum(exp(x - max))), as _vec_log_softmax_lastdim (SoftMaxKernel.cpp)."""
    shifted = x - xp.max(x, axis=dim, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=dim, keepdims=True))


@op("aten._softmax.default")
def _softmax(xp, x, dim, half_to_float=False):
    """exp(x - max) times 1/sum, as _vec_softmax_lastdim multiplies by the reciprocal."""
    e = xp.exp(x - xp.max(x, axis=dim, keepdims=True))
    return e * (1 / xp.sum(e, axis=dim, keepdims=True))


op("aten._log_softmax_backward_data.default")(
    lambda xp, g, y, dim, input_dtype=None: g - xp.exp(y) * xp.sum(g, axis=dim, keepdims=True))
op("aten._softmax_backward_data.default")(
    lambda xp, g, y, dim, input_dtype=None: y * (g - xp.sum(g * y, axis=dim, keepdims=True)))


# Fast paths: the same ufuncs in the same order. On NumPy ``max``/``sum`` are ``maximum.reduce`` /
# ``add.reduce`` less their Python wrappers, and an op whose first input is a temporary of the
# output's shape writes into it instead of allocating (elementwise, so the bits are the same).

def _reducers(xp):
    if xp is np:
        return np.maximum.reduce, np.add.reduce
    return xp.max, xp.sum


@fast_path("aten._log_softmax.default")
def _log_softmax_fast(xp, x, dim, half_to_float=False):
    if x.dtype.kind != "f":
        return None
    amax, total, exp, log, subtract = *_reducers(xp), xp.exp, xp.log, xp.subtract

    def call(t):
        shifted = t - amax(t, axis=dim, keepdims=True)
        return subtract(shifted, log(total(exp(shifted), axis=dim, keepdims=True)), out=shifted)

    return call


@fast_path("aten._softmax.default")
def _softmax_fast(xp, x, dim, half_to_float=False):
    if x.dtype.kind != "f":
        return None
    amax, total, exp = *_reducers(xp), xp.exp

    def call(t):
        e = exp(t - amax(t, axis=dim, keepdims=True))
        e *= 1 / total(e, axis=dim, keepdims=True)
        return e

    return call


@fast_path("aten._log_softmax_backward_data.default")
def _log_softmax_backward_fast(xp, g, y, dim, input_dtype=None):
    if g.shape != y.shape or g.dtype != y.dtype or g.dtype.kind != "f":
        return None
    total, exp, subtract = _reducers(xp)[1], xp.exp, xp.subtract

    def call(tg, ty):
        scaled = exp(ty)
        scaled *= total(tg, axis=dim, keepdims=True)
        return subtract(tg, scaled, out=scaled)

    return call


@fast_path("aten._softmax_backward_data.default")
def _softmax_backward_fast(xp, g, y, dim, input_dtype=None):
    if g.shape != y.shape or g.dtype != y.dtype or g.dtype.kind != "f":
        return None
    total, subtract, multiply = _reducers(xp)[1], xp.subtract, xp.multiply

    def call(tg, ty):
        gy = tg * ty
        inner = subtract(tg, total(gy, axis=dim, keepdims=True), out=gy)
        return multiply(ty, inner, out=inner)

    return call


# ---- losses (ATen/native/LossNLL.cpp, Loss.cpp) ----

def _nll_weights(xp, x, target, weight, ignore_index):
    keep = target != ignore_index
    safe = xp.where(keep, target, 0)
    w = xp.take(weight, safe) if weight is not None else xp.ones(safe.shape, dtype=x.dtype)
    return safe, w * keep.astype(x.dtype)


def _nll_index(xp, x, safe):
    return (safe,) if x.ndim == 1 else (xp.arange(x.shape[0]), safe)


@op("aten.nll_loss_forward.default")
def _nll_loss_forward(xp, x, target, weight, reduction, ignore_index):
    """Returns (output, total_weight); reduction 0 none, 1 mean (sum / total_weight), 2 sum."""
    safe, w = _nll_weights(xp, x, target, weight, ignore_index)
    losses = -x[_nll_index(xp, x, safe)] * w
    total = xp.sum(w)
    if reduction == 0:
        return losses, xp.zeros((), dtype=x.dtype)
    out = xp.sum(losses)
    return (out / total if reduction == 1 else out), total


@op("aten.nll_loss_backward.default")
def _nll_loss_backward(xp, go, x, target, weight, reduction, ignore_index, total_weight):
    """grad_input[i, t_i] = w[t_i] * -(grad_output / total_weight) for mean (nll_loss_backward_out_frame)."""
    safe, w = _nll_weights(xp, x, target, weight, ignore_index)
    grad = -(go / total_weight if reduction == 1 else go)
    out = xp.zeros_like(x)
    out[_nll_index(xp, x, safe)] = w * grad
    return out


@op("aten.mse_loss.default")
def _mse_loss(xp, x, t, reduction=1):
    d = x - t
    sq = d * d
    return sq if reduction == 0 else xp.sum(sq) / sq.size if reduction == 1 else xp.sum(sq)


op("aten.mse_loss_backward.default")(  # Loss.cpp: norm * (input - target) * grad_output
    lambda xp, g, x, t, reduction: scalar(x.dtype, 2.0 / x.size if reduction == 1 else 2.0) * (x - t) * g)
