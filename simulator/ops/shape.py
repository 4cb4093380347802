"""Shape and data-movement kernels: views, copies, constants, indexing, gather/scatter, slicing, cat/split.

None of these does arithmetic, so matching torch is a matter of shapes, dtypes and index order.
Views return NumPy views where NumPy has one; nothing here writes into its inputs.
"""
from __future__ import annotations

import numpy as np

from compiler.op_names import CONSTANT_OP
from simulator.backend import add_at
from simulator.ops.registry import (
    SCALAR_DEFAULT, Meta, category, constant, dtype_of, fast_path, is_array, op, result_dtype,
)

# ---- views and copies ----


def axes_of(dim, ndim):
    dims = [dim] if isinstance(dim, int) else list(dim)
    return tuple(d % ndim if ndim else 0 for d in dims)


def _expand_shape(shape, size):
    lead = len(size) - len(shape)
    return tuple(shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(size))


def _expand(xp, x, size, implicit=False):
    return xp.broadcast_to(x, _expand_shape(x.shape, size))


def _squeeze_axes(shape, dims):
    axes = range(len(shape)) if dims is None else axes_of(dims, len(shape))
    return tuple(a for a in axes if shape[a] == 1)


def _squeeze(xp, x, dims=None):
    if x.ndim == 0:
        return x
    return xp.squeeze(x, axis=_squeeze_axes(x.shape, dims))


op("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", kind="view")(
    lambda xp, x, size: xp.reshape(x, tuple(size)))
op("aten.permute.default", kind="view")(lambda xp, x, dims: xp.transpose(x, tuple(dims)))
op("aten.t.default", kind="view")(lambda xp, x: x.T)
op("aten.transpose.int", kind="view")(lambda xp, x, d0, d1: xp.swapaxes(x, d0, d1))
op("aten.expand.default", kind="view")(_expand)
op("aten.alias.default", "aten.detach.default", kind="view")(lambda xp, x: x)
op("aten.clone.default", "aten.lift_fresh_copy.default", kind="view")(lambda xp, x, memory_format=None: x.copy())
op("aten.unsqueeze.default", kind="view")(lambda xp, x, dim: xp.expand_dims(x, dim))
op("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default", kind="view")(_squeeze)
op("aten._to_copy.default", kind="elementwise")(
    lambda xp, x, dtype=None, non_blocking=False: x.astype(dtype_of(dtype) or x.dtype, copy=True))


@fast_path("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def _reshape_fast(xp, x, size):
    size = tuple(size)
    return lambda t: t.reshape(size)


@fast_path("aten.permute.default")
def _permute_fast(xp, x, dims):
    dims = tuple(d % x.ndim for d in dims) if x.ndim else tuple(dims)
    return (lambda t: t.T) if dims == (1, 0) else (lambda t: t.transpose(dims))


@fast_path("aten.expand.default")
def _expand_fast(xp, x, size, implicit=False):
    shape, broadcast_to = _expand_shape(x.shape, size), xp.broadcast_to
    return lambda t: broadcast_to(t, shape)


@fast_path("aten.unsqueeze.default")
def _unsqueeze_fast(xp, x, dim):
    key = (slice(None),) * (dim % (x.ndim + 1)) + (None,)
    return lambda t: t[key]


@fast_path("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze_fast(xp, x, dims=None):
    if x.ndim == 0:
        return lambda t: t
    axes = _squeeze_axes(x.shape, dims)
    return lambda t: t.squeeze(axis=axes)


@fast_path("aten._to_copy.default")
def _to_copy_fast(xp, x, dtype=None, non_blocking=False):
    dt = dtype_of(dtype) or x.dtype
    return lambda t: t.astype(dt, copy=True)


# ---- constants ----

def _default_dtype(value, dtype):
    return dtype_of(dtype) or SCALAR_DEFAULT[category(value)]


op(CONSTANT_OP, kind="elementwise")(
    lambda xp, values, shape, dtype: xp.asarray(values, dtype=dtype).reshape(shape))
op("aten.full.default", kind="elementwise")(
    lambda xp, size, value, dtype=None: xp.full(tuple(size), value, dtype=_default_dtype(value, dtype)))
op("aten.zeros.default", "aten.empty.memory_format", kind="elementwise")(
    lambda xp, size, dtype=None: xp.zeros(tuple(size), dtype=dtype_of(dtype) or np.float32))
# memory layout means nothing to a NumPy array: an uninitialized tensor of `size` is zeros
op("aten.empty_permuted.default", kind="elementwise")(
    lambda xp, size, physical_layout, dtype=None: xp.zeros(tuple(size), dtype=dtype_of(dtype) or np.float32))
op("aten.ones.default", kind="elementwise")(
    lambda xp, size, dtype=None: xp.ones(tuple(size), dtype=dtype_of(dtype) or np.float32))
op("aten.scalar_tensor.default", kind="elementwise")(
    lambda xp, s, dtype=None: xp.asarray(s, dtype=dtype_of(dtype) or np.float32))
op("aten.full_like.default", kind="elementwise")(
    lambda xp, x, value, dtype=None: xp.full(x.shape, value, dtype=dtype_of(dtype) or x.dtype))
op("aten.fill.Scalar", kind="elementwise")(lambda xp, x, value: xp.full(x.shape, value, dtype=x.dtype))
op("aten.zeros_like.default", "aten.empty_like.default", kind="elementwise")(
    lambda xp, x, dtype=None: xp.zeros(x.shape, dtype=dtype_of(dtype) or x.dtype))
op("aten.ones_like.default", kind="elementwise")(
    lambda xp, x, dtype=None: xp.ones(x.shape, dtype=dtype_of(dtype) or x.dtype))
op("aten.new_zeros.default", "aten.new_empty.default", kind="elementwise")(
    lambda xp, x, size, dtype=None: xp.zeros(tuple(size), dtype=dtype_of(dtype) or x.dtype))
op("aten.new_ones.default", kind="elementwise")(
    lambda xp, x, size, dtype=None: xp.ones(tuple(size), dtype=dtype_of(dtype) or x.dtype))
op("aten.new_full.default", kind="elementwise")(
    lambda xp, x, size, value, dtype=None: xp.full(tuple(size), value, dtype=dtype_of(dtype) or x.dtype))
op("aten.copy.default", kind="elementwise")(
    lambda xp, x, src, non_blocking=False: xp.broadcast_to(src, x.shape).astype(x.dtype, copy=True))


@fast_path("aten.scalar_tensor.default")
def _scalar_tensor_fast(xp, s, dtype=None):
    """A 0-d constant, built once; later ops only read it (nothing here writes into an input)."""
    value = constant(xp.asarray(s, dtype=dtype_of(dtype) or np.float32), xp)
    return lambda: value


@fast_path("aten.full_like.default")
def _full_like_fast(xp, x, value, dtype=None):
    dt = dtype_of(dtype) or x.dtype
    return lambda t: xp.full(t.shape, value, dtype=dt)


@op("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def _arange(xp, start, end=None, step=1, dtype=None):
    start, end = (0, start) if end is None else (start, end)
    return xp.arange(start, end, step, dtype=dtype_of(dtype) or result_dtype(start, end, step))


# ---- indexing, gather/scatter, slicing ----

def _grid_axes(xp, shape, dim):
    """Index arrays addressing every position of an array of ``shape`` (``dim``'s slot left None)."""
    ndim = len(shape)
    idx = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (ndim - i - 1)) for i, n in enumerate(shape)]
    idx[dim % max(ndim, 1)] = None
    return idx


def _grid(xp, index, dim):
    """Index tuple addressing ``index``'s own positions, with axis ``dim`` replaced by its values."""
    idx = _grid_axes(xp, index.shape, dim)
    idx[dim % max(index.ndim, 1)] = index
    return tuple(idx)


def _grid_fast(xp, index: Meta, dim):
    """``_grid`` with the aranges built once: ``key(index)`` fills in the one slot that varies."""
    idx, slot = _grid_axes(xp, index.shape, dim), dim % max(index.ndim, 1)

    def key(t):
        full = list(idx)
        full[slot] = t
        return tuple(full)

    return key


def _scatter_src(xp, x, index, src):
    if not is_array(src) or src.ndim == 0:
        return xp.broadcast_to(xp.asarray(src, dtype=x.dtype), index.shape)
    return src[tuple(slice(0, n) for n in index.shape)]


def _scatter(xp, x, dim, index, src, add=False):
    out = x.copy()
    src = _scatter_src(xp, x, index, src)
    if add:
        add_at(xp, out, _grid(xp, index, dim), src)
    else:
        out[_grid(xp, index, dim)] = src
    return out


op("aten.gather.default")(lambda xp, x, dim, index, sparse_grad=False: x[_grid(xp, index, dim)])
op("aten.scatter.value", "aten.scatter.src")(lambda xp, x, dim, index, src: _scatter(xp, x, dim, index, src))
op("aten.scatter_add.default")(lambda xp, x, dim, index, src: _scatter(xp, x, dim, index, src, add=True))
op("aten.index_select.default")(lambda xp, x, dim, index: xp.take(x, index.reshape(-1), axis=dim))
op("aten.embedding.default")(lambda xp, w, idx, padding_idx=-1, scale_grad_by_freq=False, sparse=False:
                             xp.take(w, idx, axis=0))
op("aten.index.Tensor")(lambda xp, x, indices: x[tuple(slice(None) if i is None else i for i in indices)])
op("aten.select.int", kind="view")(lambda xp, x, dim, index: x[(slice(None),) * (dim % x.ndim) + (index,)])


@fast_path("aten.gather.default")
def _gather_fast(xp, x, dim, index, sparse_grad=False):
    key = _grid_fast(xp, index, dim)
    return lambda t, i: t[key(i)]


@fast_path("aten.scatter.value")
def _scatter_value_fast(xp, x, dim, index, src):
    if is_array(src):
        return None
    key, value = _grid_fast(xp, index, dim), _scatter_src(xp, x, index, src)

    def call(t, i):
        out = t.copy()
        out[key(i)] = value
        return out

    return call


@op("aten.slice.Tensor", kind="view")
def _slice(xp, x, dim=0, start=None, end=None, step=1):
    return x[(slice(None),) * (dim % x.ndim) + (slice(start, end, step),)]


@op("aten.index_put.default")
def _index_put(xp, x, indices, values, accumulate=False):
    out, idx = x.copy(), tuple(slice(None) if i is None else i for i in indices)
    values = xp.asarray(values, dtype=x.dtype)
    if accumulate:
        add_at(xp, out, idx, xp.broadcast_to(values, out[idx].shape))
    else:
        out[idx] = values
    return out


@op("aten.cat.default")
def _cat(xp, tensors, dim=0):
    # torch skips legacy empty 1-D tensors of shape (0,) when concatenating
    keep = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors)
    dt = result_dtype(*keep)
    return xp.concatenate([t.astype(dt, copy=False) for t in keep], axis=dim % keep[0].ndim)


@op("aten.split.Tensor", "aten.split_with_sizes.default", kind="view")
def _split(xp, x, sizes, dim=0):
    dim %= x.ndim
    if isinstance(sizes, int):
        sizes = [min(sizes, x.shape[dim] - s) for s in range(0, x.shape[dim], sizes)] or [0]
    bounds = np.cumsum([0] + list(sizes)).tolist()
    return tuple(_slice(xp, x, dim, a, b) for a, b in zip(bounds[:-1], bounds[1:]))


@op("aten.slice_backward.default")
def _slice_backward(xp, g, input_sizes, dim, start, end, step):
    out = xp.zeros(tuple(input_sizes), dtype=g.dtype)
    out[(slice(None),) * (dim % out.ndim) + (slice(start, end, step),)] = g
    return out


op("aten.flip.default")(lambda xp, x, dims: xp.flip(x, axis=axes_of(dims, x.ndim)))


@op("aten.slice_scatter.default")
def _slice_scatter(xp, x, src, dim=0, start=None, end=None, step=1):
    out = x.copy()
    out[(slice(None),) * (dim % out.ndim) + (slice(start, end, step),)] = src
    return out


@op("aten.select_backward.default")
def _select_backward(xp, g, input_sizes, dim, index):
    out = xp.zeros(tuple(input_sizes), dtype=g.dtype)
    out[(slice(None),) * (dim % out.ndim) + (index,)] = g
    return out
