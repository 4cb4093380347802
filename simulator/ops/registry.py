"""The op table's machinery: registration, lookup, static specialization and torch's dtype promotion.

Kernels live in the themed modules ``shape`` (views, copies, constants, indexing),
``pointwise`` (arithmetic, math, activations, dropout), ``reduce`` (reductions, softmax,
losses) and ``nn`` (matmuls, layer norm, embedding backward); ``simulator.ops`` imports them
all and is the one import point.

Two ways to run a kernel:

- ``OPS[name](xp, *args, **kwargs)``: the general form. Tensors arrive as ``xp`` arrays, everything
  else as plain Python values, dtypes as NumPy dtype names ("float32"); 0-d results come back as
  arrays. ``KERNELS[name]`` is the same function without that wrapping.
- ``specialize(xp, name, args, kwargs)``: for a graph whose types are known before it runs. Tensor
  arguments are given as ``Meta`` (shape and dtype from the IR's ``TensorType``), the rest as the
  constants they are. Kernels that register a specializer do their dtype promotion, axis
  normalisation and constant building once, here, and return ``call(*tensors)`` taking just the
  tensors, in argument order; the result must equal the general form's, bit for bit and dtype for
  dtype (tests/simulator/test_ops.py checks every case). ``None`` means "use the general form".
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

OPS: dict[str, Callable[..., Any]] = {}
KERNELS: dict[str, Callable[..., Any]] = {}
SPECIALIZERS: dict[str, Callable[..., Callable | None]] = {}
KINDS: dict[str, set[str]] = {"view": set(), "elementwise": set(), "matmul": set()}


class UnsupportedOpError(KeyError):
    """An ATen op with no simulator kernel; ``.op`` names it."""

    def __init__(self, op: str):
        self.op = op
        super().__init__(op)

    def __str__(self) -> str:
        return f"ATen op {self.op!r} has no simulator kernel; supported ops: {', '.join(sorted(OPS))}"


class Meta:
    """A tensor argument known by its static type: what a specializer may read.

    ``value`` is the array itself when it is a constant of the graph (e.g. a ``scalar_tensor``
    the executor folded), else None.
    """

    __slots__ = ("shape", "dtype", "ndim", "value")

    def __init__(self, shape, dtype, value=None):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.value = value

    def __repr__(self) -> str:
        return f"Meta({self.shape}, {self.dtype})"


def _as_arrays(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a kernel so 0-d results are arrays: NumPy reductions return scalars, callers want arrays."""

    @functools.wraps(fn)
    def kernel(xp, *args, **kwargs):
        out = fn(xp, *args, **kwargs)
        if isinstance(out, (tuple, list)):
            return tuple(o if o is None else xp.asarray(o) for o in out)
        return xp.asarray(out)

    return kernel


def op(*names: str, kind: str | None = None, fast: Callable | None = None):
    """Register a kernel under one or more ATen names; ``kind`` feeds the exported op classes.

    ``fast`` (or a ``specialize`` attribute of the kernel) is its specializer:
    ``fast(xp, *args, **kwargs)`` with ``Meta`` for tensors, returning ``call(*tensors)`` or None.
    """

    def register(fn):
        spec = fast or getattr(fn, "specialize", None)
        for name in names:
            OPS[name] = _as_arrays(fn)
            KERNELS[name] = fn
            if spec is not None:
                SPECIALIZERS[name] = spec
            if kind:
                KINDS[kind].add(name)
        return fn

    return register


def fast_path(*names: str):
    """Attach a specializer to kernels registered under ``names`` (decorator)."""

    def register(spec):
        for name in names:
            SPECIALIZERS[name] = spec
        return spec

    return register


def run_op(xp, name: str, args, kwargs=None):
    """Run ATen op ``name``; raise ``UnsupportedOpError`` when it has no kernel."""
    try:
        fn = OPS[name]
    except KeyError:
        raise UnsupportedOpError(name) from None
    return fn(xp, *args, **(kwargs or {}))


def specialize(xp, name: str, args: tuple, kwargs: dict) -> Callable | None:
    """``call(*tensors)`` for op ``name`` with ``Meta`` tensor arguments, or None (see the module doc)."""
    spec = SPECIALIZERS.get(name)
    return None if spec is None else spec(xp, *args, **kwargs)


def bind(fn: Callable, xp, args: tuple, kwargs: dict | None = None) -> Callable:
    """``call(*tensors)`` that runs ``fn(xp, *args, **kwargs)`` with the ``Meta`` slots filled in order."""
    slots = [i for i, a in enumerate(args) if isinstance(a, Meta)]
    kwargs = kwargs or {}
    if slots == list(range(len(args))):
        return functools.partial(fn, xp, **kwargs) if kwargs else functools.partial(fn, xp)
    if len(slots) == 1 and slots[0] == 0:
        rest = args[1:]
        return lambda t: fn(xp, t, *rest, **kwargs)

    def call(*tensors):
        full = list(args)
        for i, t in zip(slots, tensors):
            full[i] = t
        return fn(xp, *full, **kwargs)

    return call


def constant(value, xp) -> Any:
    """``value`` made read-only where the array module allows it: a constant shared by every run."""
    flags = getattr(value, "flags", None)
    if isinstance(value, xp.ndarray) and hasattr(flags, "writeable"):
        flags.writeable = False
    return value


# ---- dtypes: torch's type promotion, so Python scalars and 0-d tensors never widen float32 ----

SCALAR_DEFAULT = {0: np.dtype("bool"), 1: np.dtype("int64"), 2: np.dtype("float32")}


def is_array(v) -> bool:
    return hasattr(v, "dtype") and hasattr(v, "ndim")


def category(v) -> int:
    """bool 0 < integer 1 < floating 2, the categories torch.result_type compares."""
    kind = v.kind if isinstance(v, np.dtype) else None
    if kind is None:
        if is_array(v):
            kind = v.dtype.kind
        else:
            return 0 if isinstance(v, bool) else 1 if isinstance(v, int) else 2
    return {"b": 0, "i": 1, "u": 1}.get(kind, 2)


def _promote(dtypes) -> np.dtype:
    """Within one tier: the higher category wins outright (float32 + int64 is float32, unlike NumPy)."""
    top = max(category(d) for d in dtypes)
    return functools.reduce(np.promote_types, [d for d in dtypes if category(d) == top])


def result_dtype(*vals) -> np.dtype:
    """torch.result_type: dimensioned tensors > 0-dim tensors > Python scalars (c10 ResultTypeState)."""
    same, scalars = None, False
    for v in vals:  # the common case first: every tensor has one dtype, and scalars cannot outrank it
        if is_array(v):
            if same is None:
                same = v.dtype
            elif v.dtype != same:
                break
        elif v is not None:
            scalars = True
    else:
        if same is not None and (not scalars or same.kind == "f"):
            return np.dtype(same)
    tiers = [
        [np.dtype(v.dtype) for v in vals if is_array(v) and v.ndim > 0],
        [np.dtype(v.dtype) for v in vals if is_array(v) and v.ndim == 0],
        [SCALAR_DEFAULT[category(v)] for v in vals if v is not None and not is_array(v)],
    ]
    result = None
    for dtypes in filter(None, tiers):
        tier = _promote(dtypes)
        if result is None or category(tier) > category(result):
            result = tier
    return result


def dtype_of(name) -> np.dtype | None:
    return None if name is None else np.dtype(name)


def cast(v, dt):
    """Cast arrays to ``dt``; Python scalars stay Python (weak) so they adopt the array's dtype."""
    return v.astype(dt, copy=False) if is_array(v) else v


def floating(x):
    """Integer inputs to float ops compute in torch's default float32, not NumPy's float64."""
    return x if category(x) == 2 else x.astype(np.float32)


def scalar(dt, v):
    """A Python scalar rounded to ``dt``, as torch casts Scalar arguments to the kernel's scalar_t."""
    return np.asarray(v, dtype=dt)[()]


def all_of(dt, *vals) -> bool:
    """True when every tensor (array or ``Meta``) among ``vals`` already has dtype ``dt``: casts are no-ops."""
    return all(v.dtype == dt for v in vals if is_array(v))


def fma(xp, a, b, c):
    """a*b + c rounded once, as torch's AVX2/AVX512 ``vec::fmadd``; float64 holds a float32 product exactly."""
    dt = result_dtype(a, b, c)
    a, b, c = (v if is_array(v) else scalar(dt, v) for v in (a, b, c))  # torch rounds Scalars to scalar_t first
    if dt != np.float32:
        return a * b + c
    f64 = np.float64
    if xp is not np:
        return (xp.asarray(a, dtype=f64) * xp.asarray(b, dtype=f64) + xp.asarray(c, dtype=f64)).astype(np.float32)
    big = a if a.ndim else b
    if big.ndim and all(v.ndim == 0 or v.shape == big.shape for v in (a, b, c)):
        return fma_wide(big, b if big is a else a, c)
    wide = np.multiply(a, b, dtype=f64)          # exact; casts as it goes, no float64 copies of a and b
    if isinstance(wide, np.ndarray) and wide.shape == np.shape(c):
        wide = np.add(wide, c, out=wide, dtype=f64)
    else:
        wide = np.add(wide, c, dtype=f64)
    return wide.astype(np.float32)


def fma_wide(a, b, c):
    """``fma`` on NumPy for a float32 result, where ``a`` is an array of the result's shape and ``b``
    and ``c`` are the same shape or 0-d: the same float64 arithmetic as the general form.

    ``a * scalar + c`` with ``c`` an array (the SGD update ``param - lr * grad``) is BLAS's saxpy
    where that rounds once, as torch's ``vec::fmadd`` does (`_saxpy_fused`, checked once): about
    3x faster than the float64 round trip. Otherwise one plain cast of ``a``, then in-place ops:
    a mixed-dtype ufunc casts through small buffers and costs ~20% more than ``astype`` plus
    same-dtype ops.
    """
    if np.ndim(b) == 0 and _axpy_case(a, c) and _saxpy_fused():
        return _saxpy(a, b, c)
    wide = a.astype(np.float64)
    wide *= b
    wide += c
    return wide.astype(np.float32)


def _axpy_case(a, c) -> bool:
    return type(c) is np.ndarray and c.shape == a.shape and a.dtype == c.dtype == np.float32 and \
        a.flags.c_contiguous and c.flags.c_contiguous and 0 < a.size < 2**31


def _saxpy(a, b, c):
    """``a * b + c`` as a new array: saxpy into a copy of ``c``."""
    from scipy.linalg.blas import saxpy  # noqa: PLC0415  (loads SciPy's BLAS only when used)
    out = c.copy()
    return saxpy(a.reshape(-1), out.reshape(-1), a=b).reshape(c.shape)


@functools.cache
def _saxpy_fused() -> bool:
    """Whether this machine's saxpy rounds ``a * x + y`` once, as a fused multiply-add, on every
    element (the vector body and the scalar tail): probed once on lengths 1-67 and 1000 of values
    whose separately rounded result differs from the fused one. OpenBLAS's x86-64 kernels use
    FMA instructions; a BLAS that does not (or no SciPy) keeps the float64 form."""
    try:
        rng = np.random.default_rng(0)
        for n in (*range(1, 68), 1000):
            x, y = rng.standard_normal((2, n), dtype=np.float32) * np.float32(37)
            alpha = np.float32(-0.0123)
            fused = (x.astype(np.float64) * alpha + y).astype(np.float32)
            if not np.array_equal(_saxpy(x, alpha, y), fused):
                return False
        unfused = x * alpha + y
        return not np.array_equal(unfused, fused)      # the probe can tell the two apart
    except ImportError:
        return False
