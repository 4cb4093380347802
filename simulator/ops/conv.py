"""CNN kernels: convolution (+ backward), max / average / adaptive average pooling (+ backward)
and batch norm in training mode, written once against ``xp`` (NumPy or CuPy).

A convolution is an im2col matmul: the padded input seen through a strided view
(N, g, C/g, R, S, OH, OW) is copied once into patch rows (g, N*OH*OW, C/g*R*S) and multiplied by
the weight (g, K/g, C/g*R*S). The backward reuses the patch rows for dW and folds dX's patch
gradients back with one strided slice-add per kernel offset (r, s): at one offset the windows
touch distinct input pixels, so the add needs no scatter. Pooling reads the same strided view;
max pooling keeps torch's first-maximum index (a NaN counts as the maximum), average pooling
divides by torch's divisor (``count_include_pad``, ``divisor_override``), adaptive average
pooling multiplies by 0/1 window matrices (windows ``floor(o H / OH) .. ceil((o + 1) H / OH)``).
Formulas and output sizes follow torch's CPU kernels (aten/src/ATen/native/ Pool.h
``pooling_output_shape``, cpu/AvgPoolKernel.cpp, cpu/MaxPoolKernel.cpp,
cpu/AdaptiveAvgPoolKernel.cpp, Normalization.cpp ``batch_norm_cpu_update_stats_template``).

1-D convolutions and pools run as 2-D ones of height 1. Transposed and 3-D convolutions have no
kernel here: ``compiler.kernels.conv`` refuses them at compile.
"""
from __future__ import annotations

import math

import numpy as np

from simulator.backend import add_at
from simulator.ops.registry import op, scalar


def _pair(v, default=None, one_d_h: int | None = None) -> tuple[int, int]:
    """An int or a 1- or 2-list as (h, w); an empty list (torch's "same as kernel") -> default.
    A 1-D convolution's 1-list gets `one_d_h` (the identity) for the height it runs with."""
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    if not v:
        return default
    if len(v) == 1 and one_d_h is not None:
        return one_d_h, int(v[0])
    return (int(v[0]), int(v[-1])) if len(v) <= 2 else _too_many(v)


def _conv_params(stride, padding, dilation):
    return _pair(stride, one_d_h=1), _pair(padding, one_d_h=0), _pair(dilation, one_d_h=1)


def _too_many(v):
    raise ValueError(f"only 1-D and 2-D convolution and pooling have kernels, got parameters {v}")


def _as_2d(x):
    """(N, C, L) as (N, C, 1, L); (N, C, H, W) unchanged. Returns the view and its undo."""
    if x.ndim == 3:
        return x[:, :, None, :], (lambda y: y[:, :, 0, :])
    if x.ndim == 4:
        return x, (lambda y: y)
    return _too_many(x.shape)


def _pad(xp, x, top, left, bottom, right, value=0.0):
    if not (top or left or bottom or right):
        return x
    n, c, h, w = x.shape      # one fill and one copy: cheaper than xp.pad for small images
    out = xp.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _windows(xp, x, kernel, stride, dilation, out):
    """(N, C, R, S, OH, OW) strided view: element [n, c, r, s, i, j] is
    x[n, c, i sh + r dh, j sw + s dw] (x already padded)."""
    (r, s), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    n, c = x.shape[:2]
    bn, bc, bh, bw = x.strides
    return xp.lib.stride_tricks.as_strided(x, (n, c, r, s, oh, ow),
                                           (bn, bc, bh * dh, bw * dw, bh * sh, bw * sw))


def pooling_size(size: int, kernel: int, pad: int, stride: int, dilation: int, ceil: bool) -> int:
    """torch's ``pooling_output_shape``: with ceil mode the last window must start inside the
    input or its left padding."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    r, s = w_shape[2:]
    sizes = tuple((x_shape[2 + i] + 2 * padding[i] - dilation[i] * ((r, s)[i] - 1) - 1) // stride[i] + 1
                  for i in range(2))
    return (r, s), sizes


def _patches(xp, x, kernel, stride, padding, dilation, out, groups):
    """(g, N*OH*OW, C/g*R*S) patch rows of x (N, C, H, W)."""
    n, c = x.shape[:2]
    padded = _pad(xp, x, padding[0], padding[1], padding[0], padding[1])
    view = _windows(xp, padded, kernel, stride, dilation, out)            # (N, C, R, S, OH, OW)
    view = view.reshape(n, groups, c // groups, *kernel, *out)
    return xp.ascontiguousarray(view.transpose(1, 0, 5, 6, 2, 3, 4)).reshape(
        groups, n * out[0] * out[1], -1)


def _refuse_transposed(transposed):
    if transposed:
        raise ValueError("transposed convolution has no kernel (compiler.kernels.conv refuses it)")


@op("aten.convolution.default")
def _convolution(xp, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    _refuse_transposed(transposed)
    x, undo = _as_2d(x)
    w4 = w if w.ndim == 4 else w[:, :, None, :]
    stride, padding, dilation = _conv_params(stride, padding, dilation)
    kernel, out = _conv_geometry(x.shape, w4.shape, stride, padding, dilation)
    cols = _patches(xp, x, kernel, stride, padding, dilation, out, groups)
    k = w4.shape[0]
    y = cols @ w4.reshape(groups, k // groups, -1).transpose(0, 2, 1)      # (g, N*OH*OW, K/g)
    y = y.reshape(groups, x.shape[0], out[0], out[1], k // groups).transpose(1, 0, 4, 2, 3)
    y = xp.ascontiguousarray(y).reshape(x.shape[0], k, *out)
    if bias is not None:
        y += bias[None, :, None, None]
    return undo(y)


@op("aten.convolution_backward.default")
def _convolution_backward(xp, grad, x, w, bias_sizes, stride, padding, dilation, transposed,
                          output_padding, groups, output_mask):
    """(dX, dW, dBias), None where `output_mask` says torch does not compute it."""
    _refuse_transposed(transposed)
    x2, undo = _as_2d(x)
    g2 = _as_2d(grad)[0]
    w4 = w if w.ndim == 4 else w[:, :, None, :]
    stride, padding, dilation = _conv_params(stride, padding, dilation)
    kernel, out = _conv_geometry(x2.shape, w4.shape, stride, padding, dilation)
    n, k = x2.shape[0], w4.shape[0]
    dy = g2.reshape(n, groups, k // groups, out[0] * out[1]).transpose(1, 0, 3, 2)
    dy = dy.reshape(groups, n * out[0] * out[1], k // groups)               # (g, N*OH*OW, K/g)
    dx = dw = db = None
    if output_mask[1]:
        cols = _patches(xp, x2, kernel, stride, padding, dilation, out, groups)
        dw = (dy.transpose(0, 2, 1) @ cols).reshape(w.shape)
    if output_mask[2]:
        db = g2.sum(axis=(0, 2, 3))
    if output_mask[0]:
        dcols = dy @ w4.reshape(groups, k // groups, -1)                     # (g, N*OH*OW, C/g*R*S)
        c = x2.shape[1]
        dcols = dcols.reshape(groups, n, out[0], out[1], c // groups, *kernel)
        dcols = dcols.transpose(1, 0, 4, 5, 6, 2, 3).reshape(n, c, *kernel, *out)
        dx = undo(_fold(xp, dcols, x2.shape, kernel, stride, padding, dilation, out))
    return dx, dw, db


def _fold(xp, parts, shape, kernel, stride, padding, dilation, out, extra=(0, 0)):
    """The input-shaped sum of `parts` (N, C, R, S, OH, OW), each added where `_windows` read
    it: one strided slice-add per kernel offset (windows at one offset never overlap)."""
    (sh, sw), (dh, dw), (ph, pw), (oh, ow) = stride, dilation, padding, out
    n, c, h, w = shape
    full = xp.zeros((n, c, h + 2 * ph + extra[0], w + 2 * pw + extra[1]), dtype=parts.dtype)
    for r in range(kernel[0]):
        for s in range(kernel[1]):
            full[:, :, r * dh:r * dh + sh * (oh - 1) + 1:sh,
                 s * dw:s * dw + sw * (ow - 1) + 1:sw] += parts[:, :, r, s]
    return full[:, :, ph:ph + h, pw:pw + w]


def _pool_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _pair(kernel_size)
    stride = _pair(stride, kernel)
    padding, dilation = _pair(padding), _pair(dilation)
    out = tuple(pooling_size(x_shape[2 + i], kernel[i], padding[i], stride[i], dilation[i], ceil_mode)
                for i in range(2))
    # ceil mode may read past the right edge: pad there too (never chosen: -inf, or not counted)
    extra = tuple(max(0, (out[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
                      - x_shape[2 + i] - 2 * padding[i]) for i in range(2))
    return kernel, stride, padding, dilation, out, extra


@op("aten.max_pool2d_with_indices.default")
def _max_pool2d_with_indices(xp, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    x2, undo = _as_2d(x)
    kernel, stride, padding, dilation, out, extra = _pool_geometry(
        x2.shape, kernel_size, stride, padding, dilation, ceil_mode)
    padded = _pad(xp, x2, padding[0], padding[1], padding[0] + extra[0], padding[1] + extra[1],
                  value=-np.inf)
    n, c, h, w = x2.shape
    view = _windows(xp, padded, kernel, stride, dilation, out)
    flat = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, out[0], out[1], -1)
    best = xp.argmax(flat, axis=-1)                    # the first maximum; NaN counts as maximum
    values = xp.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    r, s = best // kernel[1], best % kernel[1]
    rows = xp.arange(out[0])[:, None] * stride[0] - padding[0] + r * dilation[0]
    cols = xp.arange(out[1])[None, :] * stride[1] - padding[1] + s * dilation[1]
    return undo(xp.ascontiguousarray(values)), undo((rows * w + cols).astype(np.int64))


@op("aten.max_pool2d_with_indices_backward.default")
def _max_pool2d_with_indices_backward(xp, grad, x, kernel_size, stride, padding, dilation,
                                      ceil_mode, indices):
    """Each output's gradient added to the input pixel it took (windows may share one)."""
    n, c = x.shape[:2]
    plane = math.prod(x.shape[2:])
    out = xp.zeros((n * c, plane), dtype=grad.dtype)
    rows = xp.arange(n * c)[:, None]
    add_at(xp, out, (rows, indices.reshape(n * c, -1)), grad.reshape(n * c, -1))
    return out.reshape(x.shape)


def _avg_divisor(xp, x_shape, kernel, stride, padding, out, count_include_pad, divisor_override,
                 dtype):
    """(OH, OW) divisors of torch's average pooling: the window clipped to the padded input
    (count_include_pad), or to the input itself, unless `divisor_override`."""
    if divisor_override:
        return scalar(dtype, divisor_override)
    sizes = []
    for i in range(2):
        start = np.arange(out[i]) * stride[i] - padding[i]
        end = np.minimum(start + kernel[i], x_shape[2 + i] + padding[i])
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, x_shape[2 + i])
        sizes.append(end - start)
    return xp.asarray(np.outer(*sizes).astype(dtype))


@op("aten.avg_pool2d.default")
def _avg_pool2d(xp, x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    x2, undo = _as_2d(x)
    kernel, stride, padding, _, out, extra = _pool_geometry(x2.shape, kernel_size, stride, padding,
                                                            1, ceil_mode)
    padded = _pad(xp, x2, padding[0], padding[1], padding[0] + extra[0], padding[1] + extra[1])
    total = _windows(xp, padded, kernel, stride, (1, 1), out).sum(axis=(2, 3))
    return undo(total / _avg_divisor(xp, x2.shape, kernel, stride, padding, out, count_include_pad,
                                     divisor_override, x.dtype))


@op("aten.avg_pool2d_backward.default")
def _avg_pool2d_backward(xp, grad, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                         divisor_override):
    x2, undo = _as_2d(x)
    kernel, stride, padding, _, out, extra = _pool_geometry(x2.shape, kernel_size, stride, padding,
                                                            1, ceil_mode)
    share = _as_2d(grad)[0] / _avg_divisor(xp, x2.shape, kernel, stride, padding, out,
                                           count_include_pad, divisor_override, grad.dtype)
    parts = xp.broadcast_to(share[:, :, None, None], share.shape[:2] + kernel + out)
    return undo(_fold(xp, parts, x2.shape, kernel, stride, padding, (1, 1), out, extra))


def _adaptive_windows(xp, size: int, out: int, dtype):
    """(out, size) 0/1 matrix of adaptive pooling's windows and (out,) their lengths."""
    o = np.arange(out)
    start, end = (o * size) // out, -((-(o + 1) * size) // out)
    at = np.arange(size)
    member = (at >= start[:, None]) & (at < end[:, None])
    return xp.asarray(member.astype(dtype)), xp.asarray((end - start).astype(dtype))


@op("aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool2d(xp, x, output_size):
    x2, undo = _as_2d(x)
    oh, ow = _pair(output_size)
    rows, kh = _adaptive_windows(xp, x2.shape[2], oh, x.dtype)
    cols, kw = _adaptive_windows(xp, x2.shape[3], ow, x.dtype)
    total = rows @ x2 @ cols.T
    return undo(total / (kh[:, None] * kw[None, :]))


@op("aten._adaptive_avg_pool2d_backward.default")
def _adaptive_avg_pool2d_backward(xp, grad, x):
    x2, undo = _as_2d(x)
    g2 = _as_2d(grad)[0]
    rows, kh = _adaptive_windows(xp, x2.shape[2], g2.shape[2], grad.dtype)
    cols, kw = _adaptive_windows(xp, x2.shape[3], g2.shape[3], grad.dtype)
    share = g2 / kh[:, None] / kw[None, :]           # torch divides by kH, then by kW
    return undo(rows.T @ share @ cols)


def _batch_statistics(xp, x, eps):
    """Per channel (axis 1), as torch's ``batch_norm_cpu_collect_stats``: the mean and the sum
    of squared deviations accumulated in float64 and stored in x's dtype, and
    invstd = 1 / sqrt(var_sum / n + eps) with the variance in x's dtype, the rest in float64."""
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = (x.sum(axis=axes, dtype=np.float64) / count).astype(x.dtype)
    deviation = x - mean.reshape(shape)
    var_sum = xp.square(deviation).sum(axis=axes, dtype=np.float64).astype(x.dtype)
    var = var_sum / scalar(x.dtype, count)
    invstd = (1 / xp.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
    return mean, var_sum, invstd, count, shape


def _normalized(x, mean, invstd, weight, bias, shape):
    """torch's contiguous kernel: alpha = invstd w, beta = b - mean alpha, out = x alpha + beta."""
    alpha = invstd if weight is None else invstd * weight
    beta = -mean * alpha if bias is None else bias - mean * alpha
    return x * alpha.reshape(shape) + beta.reshape(shape)


def _running(xp, momentum, batch, running):
    """momentum * batch + (1 - momentum) * running, in float64 (torch's double momentum)."""
    return (momentum * batch.astype(np.float64) + (1 - momentum) * running.astype(np.float64)
            ).astype(running.dtype)


@op("aten._native_batch_norm_legit_functional.default")
def _batch_norm_functional(xp, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """(out, save_mean, save_invstd, new running_mean, new running_var) of a training step
    (``batch_norm_cpu_update_stats_template``): the running variance takes the unbiased batch
    variance var_sum / (n - 1)."""
    if not training:
        raise ValueError("batch norm in eval mode has no training-step kernel; train the model")
    mean, var_sum, invstd, count, shape = _batch_statistics(xp, x, eps)
    unbiased = var_sum / scalar(x.dtype, max(count - 1, 1))
    return (_normalized(x, mean, invstd, weight, bias, shape), mean, invstd,
            _running(xp, momentum, mean, running_mean), _running(xp, momentum, unbiased, running_var))


@op("aten._native_batch_norm_legit.no_stats")
def _batch_norm_no_stats(xp, x, weight, bias, training, momentum, eps):
    """Batch norm without running statistics (track_running_stats=False)."""
    mean, _, invstd, _, shape = _batch_statistics(xp, x, eps)
    return _normalized(x, mean, invstd, weight, bias, shape), mean, invstd
