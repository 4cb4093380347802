"""Pointwise kernels: arithmetic, comparisons, math functions, activations and their backwards, dropout.

Each follows the formula of torch's CPU kernel (aten/src/ATen/native/cpu/*.cpp in torch 2.13),
including where torch's vectorized code fuses a multiply-add (``fma``), so that training matches
torch eager within float32 rounding (DESIGN.md, "Numerics contract").
"""
from __future__ import annotations

import functools
import math

import numpy as np

from simulator.backend import erf
from simulator.ops.registry import (
    Meta, all_of, bind, cast, category, constant, fast_path, floating, fma, fma_wide, is_array, op,
    result_dtype, scalar,
)


def _binary(ufunc: str):
    """A two-operand kernel computing in torch's result dtype with the ufunc ``xp.<ufunc>``."""

    def kernel(xp, a, b):
        dt = result_dtype(a, b)
        return getattr(xp, ufunc)(cast(a, dt), cast(b, dt))

    def specialize(xp, a, b):
        if not all_of(result_dtype(a, b), a, b) or not (isinstance(a, Meta) or isinstance(b, Meta)):
            return None  # a cast is needed (or nothing is a tensor): leave it to the general form
        fn = getattr(xp, ufunc)
        if isinstance(a, Meta) and isinstance(b, Meta):
            return fn
        return _with_constant(fn, b, tensor_first=True) if isinstance(a, Meta) else \
            _with_constant(fn, a, tensor_first=False)

    kernel.specialize = specialize
    return kernel


def _with_constant(fn, value, tensor_first: bool):
    """``call(t)``: the ufunc ``fn`` of a tensor and a constant, in the op's order. Like a ufunc
    it takes ``out=`` (``elementwise_out``), so the executor may write into a dead input."""
    if tensor_first:
        def call(t, out=None):
            return fn(t, value, out=out)
    else:
        def call(t, out=None):
            return fn(value, t, out=out)
    call.elementwise_out = True
    return call


# ---- arithmetic (torch's CPU ufuncs; ``alpha`` goes through fmadd as in ufunc/add.h) ----

def add_scaled(xp, a, b, alpha=1):
    """torch's ``add(a, b, alpha=alpha)``: ``a + alpha * b`` fused as ``vec::fmadd(b, alpha, a)`` (ufunc/add.h).

    alpha = -1 is plain ``a - b``: the product is exact and the one rounding is the subtraction's.
    """
    if _optimizer_case(xp, a, b) and alpha != 1 and alpha != -1:
        return fma_wide(b, scalar(a.dtype, alpha), a)   # what the general form ends in, without its dispatch
    dt = result_dtype(a, b)
    a, b = cast(a, dt), cast(b, dt)
    if alpha == 1:
        return a + b
    return a - b if alpha == -1 else fma(xp, b, scalar(dt, alpha), a)


def _optimizer_case(xp, a, b) -> bool:
    """Both NumPy float32 arrays of one (non-0-d) shape: an optimizer update's ``param + alpha * grad``."""
    return (xp is np and type(a) is np.ndarray and type(b) is np.ndarray and a.dtype == np.float32
            and b.dtype == np.float32 and a.shape == b.shape and a.ndim > 0)


def _add_scaled_fast(xp, a, b, alpha=1):
    dt = result_dtype(a, b)
    if not all_of(dt, a, b):
        return None
    if alpha == 1 or alpha == -1:
        return _binary("add" if alpha == 1 else "subtract").specialize(xp, a, b)
    s = scalar(dt, alpha)
    return bind(lambda xp, a, b: fma(xp, b, s, a), xp, (a, b))


def _with_tensors(fn, args, keep):
    """``fn`` over the arguments at positions ``keep``, as a call taking every ``Meta`` of ``args`` in order."""
    slots = [i for i, a in enumerate(args) if isinstance(a, Meta)]
    if slots == list(keep):
        return fn
    if len(slots) == 3 and len(keep) == 2:  # where(cond, zero, x) with the zero a folded tensor
        return (lambda c, _, x: fn(c, x)) if keep == (0, 2) else (lambda c, x, _: fn(c, x))
    picks = tuple(slots.index(i) for i in keep)
    return lambda *tensors: fn(*(tensors[p] for p in picks))


def _swapped(spec, a, b):
    """``spec`` was built for (b, a); take the tensors in the op's own order (a, b)."""
    if spec is None or not (isinstance(a, Meta) and isinstance(b, Meta)):
        return spec
    return lambda ta, tb: spec(tb, ta)


def _div(xp, a, b, rounding_mode=None):
    dt = result_dtype(a, b)
    if rounding_mode is None and category(dt) < 2:
        dt = np.dtype(np.float32)  # true division of integers gives torch's default float dtype
    a, b = cast(a, dt), cast(b, dt)
    if rounding_mode == "floor":
        return xp.floor_divide(a, b)
    return xp.trunc(a / b).astype(dt) if rounding_mode == "trunc" else a / b


op("aten.add.Tensor", "aten.add.Scalar", kind="elementwise", fast=_add_scaled_fast)(add_scaled)
op("aten.sub.Tensor", "aten.sub.Scalar", kind="elementwise",
   fast=lambda xp, a, b, alpha=1: _add_scaled_fast(xp, a, b, -alpha))(
    lambda xp, a, b, alpha=1: add_scaled(xp, a, b, -alpha))
op("aten.rsub.Scalar", "aten.rsub.Tensor", kind="elementwise",
   fast=lambda xp, a, b, alpha=1: _swapped(_add_scaled_fast(xp, b, a, -alpha), a, b))(
    lambda xp, a, b, alpha=1: add_scaled(xp, b, a, -alpha))
op("aten.mul.Tensor", "aten.mul.Scalar", kind="elementwise")(_binary("multiply"))
op("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", kind="elementwise")(_div)
op("aten.maximum.default", kind="elementwise")(_binary("maximum"))
op("aten.minimum.default", kind="elementwise")(_binary("minimum"))
op("aten.pow.Tensor_Tensor", "aten.pow.Scalar", kind="elementwise")(_binary("power"))

for _name, _fn in {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
                   "ge": "greater_equal"}.items():
    op(f"aten.{_name}.Scalar", f"aten.{_name}.Tensor", kind="elementwise")(_binary(_fn))
for _name in ("logical_and.default", "logical_or.default", "bitwise_and.Tensor", "bitwise_or.Tensor"):
    op(f"aten.{_name}", kind="elementwise")(_binary(_name.split(".")[0]))


@fast_path("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode")
def _div_fast(xp, a, b, rounding_mode=None):
    dt = result_dtype(a, b)
    if rounding_mode is not None or category(dt) < 2 or not all_of(dt, a, b):
        return None
    return _binary("true_divide").specialize(xp, a, b)


@op("aten.pow.Tensor_Scalar", kind="elementwise")
def _pow_scalar(xp, x, e):
    """torch's pow_tensor_scalar_optimized_kernel special-cases these exponents with exact formulas."""
    x = cast(x, result_dtype(x, e))
    special = {2: lambda: x * x, 3: lambda: x * x * x, 0.5: lambda: xp.sqrt(x), -0.5: lambda: 1 / xp.sqrt(x),
               -1: lambda: 1 / x, -2: lambda: 1 / (x * x)}
    if category(x) == 2 and e in special:
        return special[e]()
    return xp.power(x, e)


@op("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar",
    kind="elementwise")
def _where(xp, cond, a, b):
    dt = result_dtype(a, b)
    return xp.where(cond, xp.asarray(a, dtype=dt), xp.asarray(b, dtype=dt))


def _is_plus_zero(v) -> bool:
    """True for a Python scalar or a folded 0-d constant that is +0.0 (all bits zero)."""
    if isinstance(v, Meta):
        v = v.value if v.ndim == 0 else None
    if v is None or isinstance(v, (tuple, list, str)):
        return False
    v = float(v)
    return v == 0 and math.copysign(1.0, v) > 0


def _bit_select(xp, dt) -> bool:
    """Whether ``_zero_where`` applies: NumPy (its where is slow on CPU) and a 32- or 64-bit float."""
    return xp is np and dt.kind == "f" and dt.itemsize in (4, 8)


def _zero_where(xp, dt, zero_when: bool, same_shape: bool = False):
    """``where(cond, 0, x)`` (or ``where(cond, x, 0)``) for float ``x``, as a bitwise AND with a mask.

    +0.0 has all bits zero, so keeping ``x``'s bits where the mask is all ones and clearing them
    elsewhere gives np.where's result bit for bit, NaNs and -0.0 included, in a third of its time.
    ``same_shape``: cond and x have one shape, so the mask's own buffer can take the result.
    """
    bits = np.dtype(f"i{dt.itemsize}")
    and_, negative = xp.bitwise_and, xp.negative

    def call(c, x):
        # astype, then in place: a ufunc with dtype= casts the bools through a buffer, ~2x slower
        mask = c.astype(bits)
        if zero_when:   # True -> 1 - 1 = 0 (clear), False -> -1 (keep)
            mask -= 1
        else:           # True -> -1 (keep), False -> 0 (clear)
            negative(mask, out=mask)
        return and_(x.view(bits), mask, out=mask if same_shape else None).view(dt)

    return call


@fast_path("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
def _where_fast(xp, cond, a, b):
    dt = result_dtype(a, b)
    if not all_of(dt, a, b):
        return None
    if _bit_select(xp, dt) and isinstance(cond, Meta) and cond.dtype == np.bool_:
        if _is_plus_zero(a) and isinstance(b, Meta) and b.value is None:
            return _with_tensors(_zero_where(xp, dt, True, cond.shape == b.shape), (cond, a, b), keep=(0, 2))
        if _is_plus_zero(b) and isinstance(a, Meta) and a.value is None:
            return _with_tensors(_zero_where(xp, dt, False, cond.shape == a.shape), (cond, a, b), keep=(0, 1))
    a, b = (v if isinstance(v, Meta) else xp.asarray(v, dtype=dt) for v in (a, b))  # constants built once
    if isinstance(cond, Meta) and isinstance(a, Meta) and isinstance(b, Meta):
        return xp.where
    return bind(lambda xp, c, x, y: xp.where(c, x, y), xp, (cond, a, b))


@op("aten.clamp.default", "aten.clamp_min.default", kind="elementwise")
def _clamp(xp, x, lo=None, hi=None):
    x = cast(x, result_dtype(x, lo, hi))
    x = x if lo is None else xp.maximum(x, lo)
    return x if hi is None else xp.minimum(x, hi)


def lerp(xp, a, b, w):
    """torch's lerp (ATen/native/Lerp.h): from ``a`` when |w| < 0.5, else back from ``b``; fmadd-rounded."""
    w = scalar(a.dtype, w)
    diff = b - a
    if abs(w) < 0.5:
        return fma(xp, w, diff, a)
    return fma(xp, -diff, scalar(a.dtype, 1 - w), b)


op("aten.clamp_max.default", kind="elementwise")(lambda xp, x, hi: _clamp(xp, x, None, hi))
op("aten.hardtanh.default", kind="elementwise")(lambda xp, x, lo=-1, hi=1: _clamp(xp, x, lo, hi))
op("aten.masked_fill.Scalar", kind="elementwise")(
    lambda xp, x, mask, value: xp.where(mask, xp.asarray(value, dtype=x.dtype), x))
op("aten.lerp.Scalar", kind="elementwise")(lambda xp, a, b, w: lerp(xp, a, b, w))
op("aten.addcmul.default", kind="elementwise")(
    lambda xp, a, t1, t2, value=1: fma(xp, scalar(a.dtype, value) * t1, t2, a))  # cpu addcmul: fmadd(v*t1, t2, a)
op("aten.addcdiv.default", kind="elementwise")(
    lambda xp, a, t1, t2, value=1: a + (scalar(a.dtype, value) * t1) / t2)


# ---- math and activations ----

_M_SQRT1_2 = math.sqrt(0.5)
_GELU_BETA = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5  # torch's kBeta = M_SQRT2 * M_2_SQRTPI * 0.5
_GELU_KAPPA = 0.044715


def _unary(ufunc: str, to_float: bool):
    """``xp.<ufunc>(x)``; ``to_float``: integer inputs compute in float32, as torch's float ops do."""

    def kernel(xp, x):
        return getattr(xp, ufunc)(floating(x) if to_float else x)

    def specialize(xp, x):
        return getattr(xp, ufunc) if not to_float or category(x) == 2 else None

    kernel.specialize = specialize
    return kernel


for _name, _fn in {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "expm1": "expm1",
                   "log1p": "log1p", "sin": "sin", "cos": "cos"}.items():
    op(f"aten.{_name}.default", kind="elementwise")(_unary(_fn, to_float=True))
for _name, _fn in {"neg": "negative", "abs": "abs", "sign": "sign", "square": "square",
                   "logical_not": "logical_not", "bitwise_not": "invert"}.items():
    op(f"aten.{_name}.default", kind="elementwise")(_unary(_fn, to_float=False))
op("aten.erf.default", kind="elementwise")(lambda xp, x: erf(xp, floating(x)))
op("aten.rsqrt.default", kind="elementwise")(lambda xp, x: 1 / xp.sqrt(floating(x)))  # Vectorized::rsqrt
op("aten.reciprocal.default", kind="elementwise")(lambda xp, x: 1 / floating(x))
op("aten.relu.default", kind="elementwise")(lambda xp, x: xp.maximum(x, xp.zeros((), x.dtype)))
op("aten.sigmoid.default", kind="elementwise")(lambda xp, x: 1 / (1 + xp.exp(-floating(x))))
op("aten.sigmoid_backward.default", kind="elementwise")(lambda xp, g, y: g * (1 - y) * y)
op("aten.tanh_backward.default", kind="elementwise")(lambda xp, g, y: g * fma(xp, -y, y, scalar(y.dtype, 1)))
op("aten.silu.default", kind="elementwise")(lambda xp, x: x / (1 + xp.exp(-x)))
op("aten.threshold_backward.default", kind="elementwise")(
    lambda xp, g, x, threshold: xp.where(x <= threshold, xp.zeros((), g.dtype), g))


_ZEROS: dict = {}
_ZEROS_MAX = 1 << 20    # elements: above this relu is memory-bound anyway, so no big buffer is kept


def _numpy_zeros(x: Meta):
    """A read-only NumPy zero array of ``x``'s shape: a view of one zero buffer per dtype, shared by every op.

    NumPy's SIMD loops only take same-shape operands: ``maximum(x, zeros)`` runs ~3x faster than
    ``maximum(x, 0-d zero)`` and gives the same bits.
    """
    size = math.prod(x.shape)
    buffer = _ZEROS.get(x.dtype)
    if buffer is None or buffer.size < size:
        buffer = _ZEROS[x.dtype] = constant(np.zeros(max(size, 1), dtype=x.dtype), np)
    return buffer[:size].reshape(x.shape)


@fast_path("aten.relu.default")
def _relu_fast(xp, x):
    small = xp is np and math.prod(x.shape) <= _ZEROS_MAX
    zeros, maximum = _numpy_zeros(x) if small else xp.zeros((), x.dtype), xp.maximum
    return lambda t: maximum(t, zeros)


@fast_path("aten.threshold_backward.default")
def _threshold_backward_fast(xp, g, x, threshold):
    if not (isinstance(g, Meta) and isinstance(x, Meta)):
        return None
    if _bit_select(xp, g.dtype):
        select = _zero_where(xp, g.dtype, True, g.shape == x.shape)
        return lambda tg, tx: select(tx <= threshold, tg)
    zero, where = xp.zeros((), g.dtype), xp.where
    return lambda tg, tx: where(tx <= threshold, zero, tg)


@op("aten.silu_backward.default", kind="elementwise")
def _silu_backward(xp, g, x):
    s = 1 / (1 + xp.exp(-x))
    return g * s * (1 + x * (1 - s))


@op("aten.gelu.default", kind="elementwise")
def _gelu(xp, x, approximate="none"):
    """GeluKernelImpl (ATen/native/cpu/Activation.cpp): erf form, or the tanh approximation."""
    f = functools.partial(scalar, x.dtype)
    if approximate == "tanh":
        inner = f(_GELU_BETA) * (x + f(_GELU_KAPPA) * (x * x * x))
        return f(0.5) * x * (1 + xp.tanh(inner))
    return gelu_and_erf(xp, x)[0]


def gelu_and_erf(xp, x):
    """GELU's erf form, ``x * 0.5 * (1 + erf(x * M_SQRT1_2))`` as GeluKernelImpl computes it, and
    the erf in it, which GELU's decomposed backward computes again (`is_gelu_erf_input`). The erf
    and the last product are taken in place: the same operations on the same values, two
    temporaries fewer."""
    f = functools.partial(scalar, x.dtype)
    e = x * f(_M_SQRT1_2)
    # in place only where SciPy/CuPy have the dtype's own loop (float16 would compute in float32)
    own_loop = isinstance(e, xp.ndarray) and e.ndim and e.dtype in (np.float32, np.float64)
    e = erf(xp, e, out=e) if own_loop else erf(xp, e)
    y = x * f(0.5)
    y *= 1 + e
    return y, e


def is_gelu_erf_input(dtype, factor) -> bool:
    """Whether ``erf(x * factor)``, x of ``dtype``, is bit for bit the erf in ``gelu(x)``, as
    torch/_decomp's gelu_backward computes it again: ``0.5 * (1 + erf(self * M_SQRT1_2))``."""
    return isinstance(factor, float) and scalar(dtype, factor) == scalar(dtype, _M_SQRT1_2)


@fast_path("aten.gelu.default")
def _gelu_fast(xp, x, approximate="none"):
    if approximate != "none" or not isinstance(x, Meta) or category(x.dtype) < 2:
        return None
    return lambda t: gelu_and_erf(xp, t)[0]


@op("aten.gelu_backward.default", kind="elementwise")
def _gelu_backward(xp, g, x, approximate="none"):
    """GeluBackwardKernelImpl (ATen/native/cpu/Activation.cpp), same operation order."""
    f = functools.partial(scalar, x.dtype)
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


op("aten.native_dropout_backward.default", kind="elementwise")(
    lambda xp, g, mask, scale: g * mask.astype(g.dtype) * scalar(g.dtype, scale))  # Dropout.cpp: grad * mask * scale


@fast_path("aten.native_dropout_backward.default")
def _dropout_backward_fast(xp, g, mask, scale):
    if not (isinstance(g, Meta) and isinstance(mask, Meta)) or is_array(scale):
        return None
    dt, s = g.dtype, scalar(g.dtype, scale)
    return lambda tg, tm: tg * tm.astype(dt) * s
