"""The op table: core-ATen numerics written once against an array module ``xp``.

``OPS`` maps an ATen overload name, spelled as ``str(node.target)`` prints it, to
``fn(xp, *args, **kwargs)``. Tensors arrive as ``xp`` arrays; everything else as plain Python
values, with dtypes as NumPy dtype names ("float32"). Each kernel follows the formula of torch's
CPU kernel (aten/src/ATen/native/cpu/*.cpp in torch 2.13), including where torch's vectorized
code fuses a multiply-add, so that training matches torch eager within float32 rounding
(DESIGN.md, "Numerics contract"). Reduction order cannot be matched and is not attempted.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from simulator.backend import add_at, erf

OPS: dict[str, Callable[..., Any]] = {}
_KINDS: dict[str, set[str]] = {"view": set(), "elementwise": set(), "matmul": set()}


class UnsupportedOpError(KeyError):
    """An ATen op with no simulator kernel; ``.op`` names it."""

    def __init__(self, op: str):
        self.op = op
        super().__init__(op)

    def __str__(self) -> str:
        return f"ATen op {self.op!r} has no simulator kernel; supported ops: {', '.join(sorted(OPS))}"


def _as_arrays(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a kernel so 0-d results are arrays: NumPy reductions return scalars, callers want arrays."""

    @functools.wraps(fn)
    def kernel(xp, *args, **kwargs):
        out = fn(xp, *args, **kwargs)
        if isinstance(out, (tuple, list)):
            return tuple(o if o is None else xp.asarray(o) for o in out)
        return xp.asarray(out)

    return kernel


def _op(*names: str, kind: str | None = None):
    """Register a kernel under one or more ATen names; ``kind`` feeds the exported op classes."""

    def register(fn):
        for name in names:
            OPS[name] = _as_arrays(fn)
            if kind:
                _KINDS[kind].add(name)
        return fn

    return register


def run_op(xp, name: str, args, kwargs=None):
    """Run ATen op ``name``; raise ``UnsupportedOpError`` when it has no kernel."""
    try:
        fn = OPS[name]
    except KeyError:
        raise UnsupportedOpError(name) from None
    return fn(xp, *args, **(kwargs or {}))


# ---- dtypes: torch's type promotion, so Python scalars and 0-d tensors never widen float32 ----

_SCALAR_DEFAULT = {0: np.dtype("bool"), 1: np.dtype("int64"), 2: np.dtype("float32")}


def _is_array(v) -> bool:
    return hasattr(v, "dtype") and hasattr(v, "ndim")


def _category(v) -> int:
    """bool 0 < integer 1 < floating 2, the categories torch.result_type compares."""
    kind = v.kind if isinstance(v, np.dtype) else None
    if kind is None:
        if _is_array(v):
            kind = v.dtype.kind
        else:
            return 0 if isinstance(v, bool) else 1 if isinstance(v, int) else 2
    return {"b": 0, "i": 1, "u": 1}.get(kind, 2)


def _promote(dtypes) -> np.dtype:
    """Within one tier: the higher category wins outright (float32 + int64 is float32, unlike NumPy)."""
    top = max(_category(d) for d in dtypes)
    return functools.reduce(np.promote_types, [d for d in dtypes if _category(d) == top])


def _result_dtype(*vals) -> np.dtype:
    """torch.result_type: dimensioned tensors > 0-dim tensors > Python scalars (c10 ResultTypeState)."""
    tiers = [
        [np.dtype(v.dtype) for v in vals if _is_array(v) and v.ndim > 0],
        [np.dtype(v.dtype) for v in vals if _is_array(v) and v.ndim == 0],
        [_SCALAR_DEFAULT[_category(v)] for v in vals if v is not None and not _is_array(v)],
    ]
    result = None
    for dtypes in filter(None, tiers):
        tier = _promote(dtypes)
        if result is None or _category(tier) > _category(result):
            result = tier
    return result


def _dtype(name) -> np.dtype | None:
    return None if name is None else np.dtype(name)


def _cast(v, dt):
    """Cast arrays to ``dt``; Python scalars stay Python (weak) so they adopt the array's dtype."""
    return v.astype(dt, copy=False) if _is_array(v) else v


def _floating(x):
    """Integer inputs to float ops compute in torch's default float32, not NumPy's float64."""
    return x if _category(x) == 2 else x.astype(np.float32)


def _binary(fn):
    def kernel(xp, a, b):
        dt = _result_dtype(a, b)
        return fn(xp, _cast(a, dt), _cast(b, dt))

    return kernel


def fma(xp, a, b, c):
    """a*b + c rounded once, as torch's AVX2/AVX512 ``vec::fmadd``; float64 holds a float32 product exactly."""
    dt = _result_dtype(a, b, c)
    a, b, c = (v if _is_array(v) else _f(dt, v) for v in (a, b, c))  # torch rounds Scalars to scalar_t first
    if dt != np.float32:
        return a * b + c
    f64 = np.float64
    wide = xp.asarray(a, dtype=f64) * xp.asarray(b, dtype=f64) + xp.asarray(c, dtype=f64)
    return wide.astype(np.float32)


def _f(dt, v):
    """A Python scalar rounded to ``dt``, as torch casts Scalar arguments to the kernel's scalar_t."""
    return np.asarray(v, dtype=dt)[()]


# ---- views and copies ----

def _axes(dim, ndim):
    dims = [dim] if isinstance(dim, int) else list(dim)
    return tuple(d % ndim if ndim else 0 for d in dims)


def _expand(xp, x, size, implicit=False):
    lead = len(size) - x.ndim
    shape = [x.shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(size)]
    return xp.broadcast_to(x, tuple(shape))


def _squeeze(xp, x, dims=None):
    if x.ndim == 0:
        return x
    axes = range(x.ndim) if dims is None else _axes(dims, x.ndim)
    return xp.squeeze(x, axis=tuple(a for a in axes if x.shape[a] == 1))


_op("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", kind="view")(
    lambda xp, x, size: xp.reshape(x, tuple(size)))
_op("aten.permute.default", kind="view")(lambda xp, x, dims: xp.transpose(x, tuple(dims)))
_op("aten.t.default", kind="view")(lambda xp, x: x.T)
_op("aten.transpose.int", kind="view")(lambda xp, x, d0, d1: xp.swapaxes(x, d0, d1))
_op("aten.expand.default", kind="view")(_expand)
_op("aten.alias.default", "aten.detach.default", kind="view")(lambda xp, x: x)
_op("aten.clone.default", "aten.lift_fresh_copy.default", kind="view")(lambda xp, x, memory_format=None: x.copy())
_op("aten.unsqueeze.default", kind="view")(lambda xp, x, dim: xp.expand_dims(x, dim))
_op("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default", kind="view")(_squeeze)
_op("aten._to_copy.default", kind="elementwise")(
    lambda xp, x, dtype=None, non_blocking=False: x.astype(_dtype(dtype) or x.dtype, copy=True))


# ---- constants ----

def _default_dtype(value, dtype):
    return _dtype(dtype) or _SCALAR_DEFAULT[_category(value)]


_op("aten.full.default", kind="elementwise")(
    lambda xp, size, value, dtype=None: xp.full(tuple(size), value, dtype=_default_dtype(value, dtype)))
_op("aten.zeros.default", "aten.empty.memory_format", kind="elementwise")(
    lambda xp, size, dtype=None: xp.zeros(tuple(size), dtype=_dtype(dtype) or np.float32))
_op("aten.ones.default", kind="elementwise")(
    lambda xp, size, dtype=None: xp.ones(tuple(size), dtype=_dtype(dtype) or np.float32))
_op("aten.scalar_tensor.default", kind="elementwise")(
    lambda xp, s, dtype=None: xp.asarray(s, dtype=_dtype(dtype) or np.float32))
_op("aten.full_like.default", kind="elementwise")(
    lambda xp, x, value, dtype=None: xp.full(x.shape, value, dtype=_dtype(dtype) or x.dtype))
_op("aten.fill.Scalar", kind="elementwise")(lambda xp, x, value: xp.full(x.shape, value, dtype=x.dtype))
_op("aten.zeros_like.default", "aten.empty_like.default", kind="elementwise")(
    lambda xp, x, dtype=None: xp.zeros(x.shape, dtype=_dtype(dtype) or x.dtype))
_op("aten.ones_like.default", kind="elementwise")(
    lambda xp, x, dtype=None: xp.ones(x.shape, dtype=_dtype(dtype) or x.dtype))
_op("aten.new_zeros.default", "aten.new_empty.default", kind="elementwise")(
    lambda xp, x, size, dtype=None: xp.zeros(tuple(size), dtype=_dtype(dtype) or x.dtype))
_op("aten.new_ones.default", kind="elementwise")(
    lambda xp, x, size, dtype=None: xp.ones(tuple(size), dtype=_dtype(dtype) or x.dtype))
_op("aten.new_full.default", kind="elementwise")(
    lambda xp, x, size, value, dtype=None: xp.full(tuple(size), value, dtype=_dtype(dtype) or x.dtype))
_op("aten.copy.default", kind="elementwise")(
    lambda xp, x, src, non_blocking=False: xp.broadcast_to(src, x.shape).astype(x.dtype, copy=True))


@_op("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(xp, start, end=None, step=1, dtype=None):
    start, end = (0, start) if end is None else (start, end)
    return xp.arange(start, end, step, dtype=_dtype(dtype) or _result_dtype(start, end, step))


# ---- pointwise arithmetic (torch's CPU ufuncs; ``alpha`` goes through fmadd as in ufunc/add.h) ----

def add_scaled(xp, a, b, alpha=1):
    """torch's ``add(a, b, alpha=alpha)``: ``a + alpha * b`` fused as ``vec::fmadd(b, alpha, a)`` (ufunc/add.h)."""
    dt = _result_dtype(a, b)
    a, b = _cast(a, dt), _cast(b, dt)
    return a + b if alpha == 1 else fma(xp, b, _f(dt, alpha), a)


def _div(xp, a, b, rounding_mode=None):
    dt = _result_dtype(a, b)
    if rounding_mode is None and _category(dt) < 2:
        dt = np.dtype(np.float32)  # true division of integers gives torch's default float dtype
    a, b = _cast(a, dt), _cast(b, dt)
    if rounding_mode == "floor":
        return xp.floor_divide(a, b)
    return xp.trunc(a / b).astype(dt) if rounding_mode == "trunc" else a / b


_op("aten.add.Tensor", "aten.add.Scalar", kind="elementwise")(add_scaled)
_op("aten.sub.Tensor", "aten.sub.Scalar", kind="elementwise")(lambda xp, a, b, alpha=1: add_scaled(xp, a, b, -alpha))
_op("aten.rsub.Scalar", "aten.rsub.Tensor", kind="elementwise")(lambda xp, a, b, alpha=1: add_scaled(xp, b, a, -alpha))
_op("aten.mul.Tensor", "aten.mul.Scalar", kind="elementwise")(_binary(lambda xp, a, b: a * b))
_op("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", kind="elementwise")(_div)
_op("aten.maximum.default", kind="elementwise")(_binary(lambda xp, a, b: xp.maximum(a, b)))
_op("aten.minimum.default", kind="elementwise")(_binary(lambda xp, a, b: xp.minimum(a, b)))
_op("aten.pow.Tensor_Tensor", "aten.pow.Scalar", kind="elementwise")(_binary(lambda xp, a, b: xp.power(a, b)))

for _name, _fn in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                   "ge": "greater_equal"}.items():
    _op(f"aten.{_name}.Scalar", f"aten.{_name}.Tensor", kind="elementwise")(
        _binary(lambda xp, a, b, _fn=_fn: getattr(xp, _fn)(a, b)))
for _name in ("logical_and.default", "logical_or.default", "bitwise_and.Tensor", "bitwise_or.Tensor"):
    _op(f"aten.{_name}", kind="elementwise")(_binary(lambda xp, a, b, _fn=_name.split(".")[0]: getattr(xp, _fn)(a, b)))


@_op("aten.pow.Tensor_Scalar", kind="elementwise")
def _pow_scalar(xp, x, e):
    """torch's pow_tensor_scalar_optimized_kernel special-cases these exponents with exact formulas."""
    x = _cast(x, _result_dtype(x, e))
    special = {2: lambda: x * x, 3: lambda: x * x * x, 0.5: lambda: xp.sqrt(x), -0.5: lambda: 1 / xp.sqrt(x),
               -1: lambda: 1 / x, -2: lambda: 1 / (x * x)}
    if _category(x) == 2 and e in special:
        return special[e]()
    return xp.power(x, e)


@_op("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar",
     kind="elementwise")
def _where(xp, cond, a, b):
    dt = _result_dtype(a, b)
    return xp.where(cond, xp.asarray(a, dtype=dt), xp.asarray(b, dtype=dt))


@_op("aten.clamp.default", "aten.clamp_min.default", kind="elementwise")
def _clamp(xp, x, lo=None, hi=None):
    x = _cast(x, _result_dtype(x, lo, hi))
    x = x if lo is None else xp.maximum(x, lo)
    return x if hi is None else xp.minimum(x, hi)


_op("aten.clamp_max.default", kind="elementwise")(lambda xp, x, hi: _clamp(xp, x, None, hi))
_op("aten.hardtanh.default", kind="elementwise")(lambda xp, x, lo=-1, hi=1: _clamp(xp, x, lo, hi))
_op("aten.masked_fill.Scalar", kind="elementwise")(
    lambda xp, x, mask, value: xp.where(mask, xp.asarray(value, dtype=x.dtype), x))
_op("aten.lerp.Scalar", kind="elementwise")(lambda xp, a, b, w: lerp(xp, a, b, w))
_op("aten.addcmul.default", kind="elementwise")(
    lambda xp, a, t1, t2, value=1: fma(xp, _f(a.dtype, value) * t1, t2, a))  # cpu addcmul: fmadd(v*t1, t2, a)
_op("aten.addcdiv.default", kind="elementwise")(
    lambda xp, a, t1, t2, value=1: a + (_f(a.dtype, value) * t1) / t2)


def lerp(xp, a, b, w):
    """torch's lerp (ATen/native/Lerp.h): from ``a`` when |w| < 0.5, else back from ``b``; fmadd-rounded."""
    w = _f(a.dtype, w)
    diff = b - a
    if abs(w) < 0.5:
        return fma(xp, w, diff, a)
    return fma(xp, -diff, _f(a.dtype, 1 - w), b)


# ---- pointwise math and activations ----

_M_SQRT1_2 = math.sqrt(0.5)
_GELU_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5  # torch's kBeta = M_SQRT2 * M_2_SQRTPI * 0.5
_GELU_KAPPA = 0.044715

for _name, _fn in {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "expm1": "expm1",
                   "log1p": "log1p", "sin": "sin", "cos": "cos"}.items():
    _op(f"aten.{_name}.default", kind="elementwise")(lambda xp, x, _fn=_fn: getattr(xp, _fn)(_floating(x)))
for _name, _fn in {"neg": "negative", "abs": "abs", "sign": "sign", "square": "square",
                   "logical_not": "logical_not", "bitwise_not": "invert"}.items():
    _op(f"aten.{_name}.default", kind="elementwise")(lambda xp, x, _fn=_fn: getattr(xp, _fn)(x))
_op("aten.erf.default", kind="elementwise")(lambda xp, x: erf(xp, _floating(x)))
_op("aten.rsqrt.default", kind="elementwise")(lambda xp, x: 1 / xp.sqrt(_floating(x)))  # Vectorized::rsqrt
_op("aten.reciprocal.default", kind="elementwise")(lambda xp, x: 1 / _floating(x))
_op("aten.relu.default", kind="elementwise")(lambda xp, x: xp.maximum(x, xp.zeros((), x.dtype)))
_op("aten.sigmoid.default", kind="elementwise")(lambda xp, x: 1 / (1 + xp.exp(-_floating(x))))
_op("aten.sigmoid_backward.default", kind="elementwise")(lambda xp, g, y: g * (1 - y) * y)
_op("aten.tanh_backward.default", kind="elementwise")(lambda xp, g, y: g * fma(xp, -y, y, _f(y.dtype, 1)))
_op("aten.silu.default", kind="elementwise")(lambda xp, x: x / (1 + xp.exp(-x)))
_op("aten.threshold_backward.default", kind="elementwise")(
    lambda xp, g, x, threshold: xp.where(x <= threshold, xp.zeros((), g.dtype), g))


@_op("aten.silu_backward.default", kind="elementwise")
def _silu_backward(xp, g, x):
    s = 1 / (1 + xp.exp(-x))
    return g * s * (1 + x * (1 - s))


@_op("aten.gelu.default", kind="elementwise")
def _gelu(xp, x, approximate="none"):
    """GeluKernelImpl (ATen/native/cpu/Activation.cpp): erf form, or the tanh approximation."""
    f = functools.partial(_f, x.dtype)
    if approximate == "tanh":
        inner = f(_GELU_BETA) * (x + f(_GELU_KAPPA) * (x * x * x))
        return f(0.5) * x * (1 + xp.tanh(inner))
    return x * f(0.5) * (1 + erf(xp, x * f(_M_SQRT1_2)))


@_op("aten.gelu_backward.default", kind="elementwise")
def _gelu_backward(xp, g, x, approximate="none"):
    """GeluBackwardKernelImpl (ATen/native/cpu/Activation.cpp), same operation order."""
    f = functools.partial(_f, x.dtype)
    if approximate == "tanh":
        x_sq = x * x
        t = xp.tanh(f(_GELU_BETA) * (x + f(_GELU_KAPPA) * (x_sq * x)))
        left = f(0.5) * x
        right_derivative = left * (1 - t * t) * f(_GELU_BETA) * (1 + f(3) * f(_GELU_KAPPA) * x_sq)
        return g * (f(0.5) * (1 + t) + right_derivative)
    cdf = f(0.5) * (1 + erf(xp, x * f(_M_SQRT1_2)))
    pdf = f(2.0 / math.sqrt(math.pi) * _M_SQRT1_2 * 0.5) * xp.exp(x * x * f(-0.5))
    return g * (cdf + x * pdf)


# ---- dropout: masks come from the host (DESIGN.md: "Rewrite it to take mask inputs") ----

def dropout_scale(p: float) -> np.float32:
    """Eager dropout's multiplier on kept values: ``noise.div_(1 - p)`` (ATen Dropout.cpp, _dropout_impl).

    It is 1 / float32(1 - p) rounded in float32. ``native_dropout`` instead uses float32(1 / (1 - p))
    computed in double; the two differ by an ulp for some p (e.g. 0.15).
    """
    return np.float32(0.0) if p == 1 else np.float32(1.0) / np.float32(1.0 - p)


def apply_dropout_mask(xp, x, mask, p: float):
    """Eager ``F.dropout`` given its Bernoulli keep-mask: ``(x * (mask / (1 - p)), mask)``."""
    noise = mask.astype(x.dtype) * x.dtype.type(dropout_scale(p))  # mask is 0/1: exact, = mask / (1-p)
    return x * noise, mask.astype(bool)


_op("aten.native_dropout_backward.default", kind="elementwise")(
    lambda xp, g, mask, scale: g * mask.astype(g.dtype) * _f(g.dtype, scale))  # Dropout.cpp: grad * mask * scale


# ---- reductions ----

def _reduce_axes(dim, ndim):
    full = ndim == 0 or dim is None or (not isinstance(dim, int) and len(dim) == 0)
    return None if full else _axes(dim, ndim)


def _sum_dtype(x, dtype):
    return _dtype(dtype) or (np.dtype(np.int64) if _category(x) < 2 else x.dtype)


@_op("aten.sum.dim_IntList", "aten.sum.default")
def _sum(xp, x, dim=None, keepdim=False, dtype=None):
    return xp.sum(x, axis=_reduce_axes(dim, x.ndim), keepdims=keepdim, dtype=_sum_dtype(x, dtype))


@_op("aten.mean.dim", "aten.mean.default")
def _mean(xp, x, dim=None, keepdim=False, dtype=None):
    """CPU mean is ``sum(...).div_(count)`` (ReduceOps.cpp), not a running mean."""
    axes = _reduce_axes(dim, x.ndim)
    count = math.prod(x.shape[a] for a in axes) if axes is not None else x.size
    return _sum(xp, x.astype(_dtype(dtype) or x.dtype, copy=False), dim, keepdim) / count


def _minmax(fn):
    return lambda xp, x, dim=(), keepdim=False: getattr(xp, fn)(x, axis=_reduce_axes(dim, x.ndim), keepdims=keepdim)


_op("aten.amax.default")(_minmax("max"))
_op("aten.amin.default")(_minmax("min"))
_op("aten.any.dim", "aten.any.dims", "aten.any.default")(_minmax("any"))
_op("aten.all.dim", "aten.all.dims", "aten.all.default")(_minmax("all"))
_op("aten.max.dim")(lambda xp, x, dim, keepdim=False: (
    xp.max(x, axis=dim, keepdims=keepdim), xp.argmax(x, axis=dim, keepdims=keepdim)))
_op("aten.argmax.default")(lambda xp, x, dim=None, keepdim=False: xp.argmax(x, axis=dim, keepdims=keepdim))


@_op("aten.var_mean.correction")
def _var_mean(xp, x, dim=None, correction=None, keepdim=False):
    axes = _reduce_axes(dim, x.ndim)
    count = math.prod(x.shape[a] for a in axes) if axes is not None else x.size
    mean = xp.sum(x, axis=axes, keepdims=True) / count
    d = x - mean
    var = xp.sum(d * d, axis=axes, keepdims=keepdim) / max(count - (1 if correction is None else correction), 0)
    return var, mean if keepdim else xp.reshape(mean, var.shape)


@_op("aten._log_softmax.default")
def _log_softmax(xp, x, dim, half_to_float=False):
    """x - max - log(sum(exp(x - max))), as _vec_log_softmax_lastdim (SoftMaxKernel.cpp)."""
    shifted = x - xp.max(x, axis=dim, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=dim, keepdims=True))


@_op("aten._softmax.default")
def _softmax(xp, x, dim, half_to_float=False):
    """exp(x - max) times 1/sum, as _vec_softmax_lastdim multiplies by the reciprocal."""
    e = xp.exp(x - xp.max(x, axis=dim, keepdims=True))
    return e * (1 / xp.sum(e, axis=dim, keepdims=True))


_op("aten._log_softmax_backward_data.default")(
    lambda xp, g, y, dim, input_dtype=None: g - xp.exp(y) * xp.sum(g, axis=dim, keepdims=True))
_op("aten._softmax_backward_data.default")(
    lambda xp, g, y, dim, input_dtype=None: y * (g - xp.sum(g * y, axis=dim, keepdims=True)))


# ---- matmuls ----

@_op("aten.addmm.default", kind="matmul")
def _addmm(xp, bias, m1, m2, beta=1, alpha=1):
    out = m1 @ m2
    out = out if alpha == 1 else out * _f(out.dtype, alpha)
    if beta == 0:  # BLAS semantics: beta == 0 ignores bias, even NaNs in it
        return out
    return out + (bias if beta == 1 else bias * _f(out.dtype, beta))


_op("aten.mm.default", "aten.bmm.default", "aten.matmul.default", kind="matmul")(lambda xp, a, b: xp.matmul(a, b))


# ---- indexing, gather/scatter, slicing ----

def _grid(xp, index, dim):
    """Index tuple addressing ``index``'s own positions, with axis ``dim`` replaced by its values."""
    idx = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (index.ndim - i - 1)) for i, n in enumerate(index.shape)]
    idx[dim % max(index.ndim, 1)] = index
    return tuple(idx)


def _scatter(xp, x, dim, index, src, add=False):
    out = x.copy()
    src = xp.broadcast_to(xp.asarray(src, dtype=x.dtype), index.shape) if not _is_array(src) or src.ndim == 0 \
        else src[tuple(slice(0, n) for n in index.shape)]
    if add:
        add_at(xp, out, _grid(xp, index, dim), src)
    else:
        out[_grid(xp, index, dim)] = src
    return out


_op("aten.gather.default")(lambda xp, x, dim, index, sparse_grad=False: x[_grid(xp, index, dim)])
_op("aten.scatter.value", "aten.scatter.src")(lambda xp, x, dim, index, src: _scatter(xp, x, dim, index, src))
_op("aten.scatter_add.default")(lambda xp, x, dim, index, src: _scatter(xp, x, dim, index, src, add=True))
_op("aten.index_select.default")(lambda xp, x, dim, index: xp.take(x, index.reshape(-1), axis=dim))
_op("aten.embedding.default")(lambda xp, w, idx, padding_idx=-1, scale_grad_by_freq=False, sparse=False:
                               xp.take(w, idx, axis=0))
_op("aten.index.Tensor")(lambda xp, x, indices: x[tuple(slice(None) if i is None else i for i in indices)])
_op("aten.select.int", kind="view")(lambda xp, x, dim, index: x[(slice(None),) * (dim % x.ndim) + (index,)])


@_op("aten.slice.Tensor", kind="view")
def _slice(xp, x, dim=0, start=None, end=None, step=1):
    return x[(slice(None),) * (dim % x.ndim) + (slice(start, end, step),)]


@_op("aten.index_put.default")
def _index_put(xp, x, indices, values, accumulate=False):
    out, idx = x.copy(), tuple(slice(None) if i is None else i for i in indices)
    values = xp.asarray(values, dtype=x.dtype)
    if accumulate:
        add_at(xp, out, idx, xp.broadcast_to(values, out[idx].shape))
    else:
        out[idx] = values
    return out


@_op("aten.embedding_dense_backward.default")
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


@_op("aten.cat.default")
def _cat(xp, tensors, dim=0):
    # torch skips legacy empty 1-D tensors of shape (0,) when concatenating
    keep = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors)
    dt = _result_dtype(*keep)
    return xp.concatenate([t.astype(dt, copy=False) for t in keep], axis=dim % keep[0].ndim)


@_op("aten.split.Tensor", "aten.split_with_sizes.default", kind="view")
def _split(xp, x, sizes, dim=0):
    dim %= x.ndim
    if isinstance(sizes, int):
        sizes = [min(sizes, x.shape[dim] - s) for s in range(0, x.shape[dim], sizes)] or [0]
    bounds = np.cumsum([0] + list(sizes)).tolist()
    return tuple(_slice(xp, x, dim, a, b) for a, b in zip(bounds[:-1], bounds[1:]))


@_op("aten.slice_backward.default")
def _slice_backward(xp, g, input_sizes, dim, start, end, step):
    out = xp.zeros(tuple(input_sizes), dtype=g.dtype)
    out[(slice(None),) * (dim % out.ndim) + (slice(start, end, step),)] = g
    return out


@_op("aten.select_backward.default")
def _select_backward(xp, g, input_sizes, dim, index):
    out = xp.zeros(tuple(input_sizes), dtype=g.dtype)
    out[(slice(None),) * (dim % out.ndim) + (index,)] = g
    return out


# ---- losses (ATen/native/LossNLL.cpp, Loss.cpp) ----

def _nll_weights(xp, x, target, weight, ignore_index):
    keep = target != ignore_index
    safe = xp.where(keep, target, 0)
    w = xp.take(weight, safe) if weight is not None else xp.ones(safe.shape, dtype=x.dtype)
    return safe, w * keep.astype(x.dtype)


def _nll_index(xp, x, safe):
    return (safe,) if x.ndim == 1 else (xp.arange(x.shape[0]), safe)


@_op("aten.nll_loss_forward.default")
def _nll_loss_forward(xp, x, target, weight, reduction, ignore_index):
    """Returns (output, total_weight); reduction 0 none, 1 mean (sum / total_weight), 2 sum."""
    safe, w = _nll_weights(xp, x, target, weight, ignore_index)
    losses = -x[_nll_index(xp, x, safe)] * w
    total = xp.sum(w)
    if reduction == 0:
        return losses, xp.zeros((), dtype=x.dtype)
    out = xp.sum(losses)
    return (out / total if reduction == 1 else out), total


@_op("aten.nll_loss_backward.default")
def _nll_loss_backward(xp, go, x, target, weight, reduction, ignore_index, total_weight):
    """grad_input[i, t_i] = w[t_i] * -(grad_output / total_weight) for mean (nll_loss_backward_out_frame)."""
    safe, w = _nll_weights(xp, x, target, weight, ignore_index)
    grad = -(go / total_weight if reduction == 1 else go)
    out = xp.zeros_like(x)
    out[_nll_index(xp, x, safe)] = w * grad
    return out


@_op("aten.mse_loss.default")
def _mse_loss(xp, x, t, reduction=1):
    d = x - t
    sq = d * d
    return sq if reduction == 0 else xp.sum(sq) / sq.size if reduction == 1 else xp.sum(sq)


_op("aten.mse_loss_backward.default")(  # Loss.cpp: norm * (input - target) * grad_output
    lambda xp, g, x, t, reduction: _f(x.dtype, 2.0 / x.size if reduction == 1 else 2.0) * (x - t) * g)


# ---- layer norm (ATen/native/cpu/layer_norm_kernel.cpp) ----

@_op("aten.native_layer_norm.default")
def _native_layer_norm(xp, x, normalized_shape, weight, bias, eps):
    """Returns (y, mean, rstd), mean/rstd shaped like x with normalized dims kept as 1."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = xp.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = xp.mean(d * d, axis=axes, keepdims=True)
    rstd = 1 / xp.sqrt(var + _f(x.dtype, eps))
    y = d * rstd
    y = y if weight is None else y * weight
    return (y if bias is None else y + bias), mean, rstd


@_op("aten.native_layer_norm_backward.default")
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


VIEW_OPS: frozenset[str] = frozenset(_KINDS["view"])
ELEMENTWISE_OPS: frozenset[str] = frozenset(_KINDS["elementwise"])
MATMUL_OPS: frozenset[str] = frozenset(_KINDS["matmul"])
