"""simulator.ops against torch.ops.aten on the same inputs (torch is the oracle; tinygrad's
helper_test_op pattern): one case per op overload, float32 within 1e-6, integers and bools exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.ops import (
    ELEMENTWISE_OPS, KERNELS, MATMUL_OPS, OPS, SPECIALIZERS, VIEW_OPS, Meta, UnsupportedOpError, apply_dropout_mask,
    dropout_scale, run_op, specialize,
)

_DTYPES = {"float32", "float64", "int64", "int32", "bool"}
_UNINITIALIZED = {"aten.empty.memory_format", "aten.empty_like.default", "aten.new_empty.default",
                  "aten.empty_permuted.default"}
# torch's vectorized tanh saturates to exactly +-1 a little earlier than NumPy's; gelu's tanh backward
# multiplies that last-ulp difference by ~x^2, so near |x| = 5 the two differ by a few 1e-6.
_ATOL = {"gelu_backward_tanh": 5e-6}


def _rng():
    return np.random.default_rng(1234)


def _to_torch(v):
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v.copy())
    if isinstance(v, str) and v in _DTYPES:
        return getattr(torch, v)
    if isinstance(v, (list, tuple)):
        return type(v)(_to_torch(i) for i in v)
    return v


def _aten(name):
    _, base, overload = name.split(".")
    return getattr(getattr(torch.ops.aten, base), overload)


def _build_cases():  # noqa: PLR0915 - one flat table reads best
    r = _rng()
    f32 = np.float32
    x = r.standard_normal((4, 5)).astype(f32)
    y = r.standard_normal((4, 5)).astype(f32)
    z = r.standard_normal((4, 5)).astype(f32)
    g = r.standard_normal((4, 5)).astype(f32)
    pos = (np.abs(r.standard_normal((4, 5))) + 0.1).astype(f32)
    x3 = r.standard_normal((2, 3, 4)).astype(f32)
    m = r.random((4, 5)) > 0.5
    m2 = r.random((4, 5)) > 0.5
    ints = r.integers(-9, 10, (4, 5))
    ints_nz = np.where(ints == 0, 3, ints)
    perm = np.stack([r.permutation(5)[:3] for _ in range(4)])
    dup = r.integers(0, 5, (4, 3))
    emb_idx = r.integers(0, 10, (2, 4))
    target = r.integers(0, 5, 4)
    target[1] = -100
    weight = (r.random(5) + 0.5).astype(f32)
    lsm = torch.log_softmax(torch.from_numpy(x), 1).numpy()
    sm = torch.softmax(torch.from_numpy(x), 1).numpy()
    lx = r.standard_normal((2, 3, 8)).astype(f32)
    lw, lb = r.standard_normal(8).astype(f32), r.standard_normal(8).astype(f32)
    _, mean, rstd = (t.numpy() for t in torch.ops.aten.native_layer_norm(
        torch.from_numpy(lx), [8], torch.from_numpy(lw), torch.from_numpy(lb), 1e-5))
    go = np.asarray(0.37, dtype=f32)
    scores = (r.standard_normal((2, 2, 3, 4)) * 3).astype(f32)     # attention [B, H, L, L]
    scores[0, :, :, 2:] = -1e9                                     # sample 0: two pad keys
    probs = torch.softmax(torch.from_numpy(scores), -1).numpy()
    inf_x = x.copy()
    inf_x[0, :2] = -np.inf

    def total_weight(w, reduction):
        return torch.ops.aten.nll_loss_forward(torch.from_numpy(lsm), torch.from_numpy(target),
                                               None if w is None else torch.from_numpy(w), reduction, -100)[1].numpy()

    c = [
        ("aten.view.default", (x, [5, 4])), ("aten._unsafe_view.default", (x, [20])),
        ("aten.reshape.default", (x, [2, -1])), ("aten.permute.default", (x3, [2, 0, 1])),
        ("aten.t.default", (x,)), ("aten.transpose.int", (x3, 0, 2)),
        ("aten.expand.default", (x[:1], [3, -1, 5])), ("aten.alias.default", (x,)), ("aten.detach.default", (x,)),
        ("aten.clone.default", (x,)), ("aten.lift_fresh_copy.default", (x,)), ("aten.unsqueeze.default", (x, -1)),
        ("aten.squeeze.dim", (x[:, None], 1)), ("aten.squeeze.dims", (x[None, :, None], [0, 2])),
        ("aten.squeeze.default", (x[None, :1],)), ("aten._to_copy.default", (x * 10,), {"dtype": "int64"}),
        ("aten._to_copy.default", (m,), {"dtype": "float32"}),
        ("aten.full.default", ([2, 3], 1.5), {"dtype": "float32"}), ("aten.full.default", ([2, 3], 7)),
        ("aten.zeros.default", ([2, 3],)), ("aten.ones.default", ([2, 3],), {"dtype": "int64"}),
        ("aten.empty.memory_format", ([2, 3],)), ("aten.empty_permuted.default", ([2, 3], [1, 0])),
        ("aten.scalar_tensor.default", (0,), {"dtype": "int64"}),
        ("aten.scalar_tensor.default", (2.5,)), ("aten.full_like.default", (x, 3.0)),
        ("aten.full_like.default", (x, 1), {"dtype": "int64"}), ("aten.fill.Scalar", (x, 2.0)),
        ("aten.zeros_like.default", (x,)), ("aten.ones_like.default", (x,)), ("aten.empty_like.default", (x,)),
        ("aten.new_zeros.default", (x, [2])), ("aten.new_ones.default", (x, [2])),
        ("aten.new_full.default", (x, [2, 2], 3.0)), ("aten.new_empty.default", (x, [2])),
        ("aten.copy.default", (x, y[:1])), ("aten.arange.default", (5,)), ("aten.arange.start", (2, 7)),
        ("aten.arange.start_step", (0.0, 1.0, 0.25)),
        ("aten.add.Tensor", (x, y)), ("aten.add.Tensor", (x, y), {"alpha": 0.37}), ("aten.add.Tensor", (x, 2.5)),
        ("aten.add.Tensor", (x, ints)), ("aten.add.Scalar", (x, 2.5, 2)), ("aten.sub.Tensor", (x, y)),
        ("aten.sub.Tensor", (x, y), {"alpha": 0.3}), ("aten.sub.Scalar", (x, 1.5)), ("aten.rsub.Scalar", (x, 1.0)),
        ("aten.rsub.Tensor", (x, y)), ("aten.mul.Tensor", (x, y)), ("aten.mul.Tensor", (x, 0.4)),
        ("aten.mul.Tensor", (x, m)), ("aten.mul.Tensor", (x, np.asarray(0.1, np.float64))),
        ("aten.mul.Scalar", (x, 0.5946035575013605)), ("aten.div.Tensor", (x, pos)),
        ("aten.div.Tensor", (ints, ints_nz)), ("aten.div.Scalar", (x, 3.0)),
        ("aten.div.Tensor_mode", (x, pos), {"rounding_mode": "floor"}),
        ("aten.div.Tensor_mode", (x * 5, pos), {"rounding_mode": "trunc"}),
        ("aten.maximum.default", (x, y)), ("aten.minimum.default", (x, y)),
        ("aten.pow.Tensor_Tensor", (pos, y)), ("aten.pow.Scalar", (2.0, x)),
        *[("aten.pow.Tensor_Scalar", (pos, e)) for e in (2, 3, 0.5, -0.5, -1, -2, 2.5)],
        ("aten.pow.Tensor_Scalar", (ints, 2)),
        *[(f"aten.{op}.{kind}", (x, other)) for op in ("eq", "ne", "lt", "le", "gt", "ge")
          for kind, other in (("Scalar", 0.0), ("Tensor", y))],
        ("aten.eq.Scalar", (inf_x, -np.inf)), ("aten.ne.Scalar", (ints, 3)),
        ("aten.logical_and.default", (m, m2)), ("aten.logical_or.default", (m, m2)),
        ("aten.bitwise_and.Tensor", (m, m2)), ("aten.bitwise_or.Tensor", (m, m2)),
        ("aten.logical_not.default", (m,)), ("aten.bitwise_not.default", (m,)),
        ("aten.where.self", (m, x, y)), ("aten.where.ScalarOther", (m, x, 0.0)),
        ("aten.where.ScalarSelf", (m, 0.0, x)), ("aten.where.Scalar", (m, 1.0, 0.0)),
        ("aten.clamp.default", (x, -0.5, 0.5)), ("aten.clamp.default", (x, None, 0.2)),
        ("aten.clamp.default", (ints, -2, 3)), ("aten.clamp_min.default", (x, 0.1)),
        ("aten.clamp_max.default", (x, 0.1)), ("aten.hardtanh.default", (x * 2,)),
        ("aten.masked_fill.Scalar", (x, m, -1e9)), ("aten.lerp.Scalar", (x, y, 0.1)),
        ("aten.lerp.Scalar", (x, y, 0.7)), ("aten.addcmul.default", (x, y, z), {"value": 0.001}),
        ("aten.addcdiv.default", (x, y, pos), {"value": -0.01}),
        *[(f"aten.{op}.default", (x,)) for op in ("exp", "tanh", "expm1", "sin", "cos", "neg", "abs", "sign",
                                                  "square", "erf", "relu", "sigmoid", "silu")],
        *[(f"aten.{op}.default", (pos,)) for op in ("log", "sqrt", "log1p", "rsqrt", "reciprocal")],
        ("aten.exp.default", (ints,)), ("aten.neg.default", (ints,)),
        ("aten.sigmoid_backward.default", (g, 1 / (1 + np.exp(-x)))), ("aten.tanh_backward.default", (g, np.tanh(x))),
        ("aten.silu_backward.default", (g, x)), ("aten.threshold_backward.default", (g, x, 0)),
        ("aten.gelu.default", (x * 3,)), ("aten.gelu.default", (x * 3,), {"approximate": "tanh"}),
        ("aten.gelu_backward.default", (g, x * 3)),
        ("aten.gelu_backward.default", (g, x * 3), {"approximate": "tanh"}, "gelu_backward_tanh"),
        ("aten.native_dropout_backward.default", (g, m, 1 / (1 - 0.15))),
        ("aten.sum.dim_IntList", (x, [1])), ("aten.sum.dim_IntList", (x, [])), ("aten.sum.dim_IntList", (x, None)),
        ("aten.sum.dim_IntList", (x, [0], True)), ("aten.sum.dim_IntList", (x3, [0, 2])),
        ("aten.sum.dim_IntList", (m, [1])), ("aten.sum.dim_IntList", (x, [1]), {"dtype": "float64"}),
        ("aten.sum.default", (x,)), ("aten.sum.default", (ints,)), ("aten.mean.default", (x,)),
        ("aten.mean.dim", (x, [-1], True)), ("aten.mean.dim", (x3, [])), ("aten.amax.default", (x, [1], True)),
        ("aten.amax.default", (x,)), ("aten.amin.default", (x3, [0, 1])), ("aten.any.dim", (m, -1, True)),
        ("aten.any.dims", (m, [0, 1])), ("aten.any.default", (m,)), ("aten.all.dim", (m, 0)),
        ("aten.all.dims", (m, [1])), ("aten.all.default", (m,)), ("aten.max.dim", (x, 1)),
        ("aten.max.dim", (x, 0, True)), ("aten.argmax.default", (x, 1)), ("aten.argmax.default", (x,)),
        ("aten.var_mean.correction", (x, [1]), {"correction": 0, "keepdim": True}, "var_mean"),
        ("aten.var_mean.correction", (x3,), {}, "var_mean"),
        ("aten._log_softmax.default", (x, 1, False)), ("aten._log_softmax.default", (x3 * 4, -1, False)),
        ("aten._softmax.default", (x, 1, False)), ("aten._softmax.default", (x3 * 4, 0, False)),
        ("aten._log_softmax_backward_data.default", (g, lsm, 1, "float32"), {}, "log_softmax_backward"),
        ("aten._softmax_backward_data.default", (g, sm, 1, "float32"), {}, "softmax_backward"),
        ("aten._softmax.default", (scores, -1, False)),
        ("aten._softmax_backward_data.default", (r.standard_normal(scores.shape).astype(f32), probs, -1,
                                                 "float32"), {}, "softmax_backward"),
        ("aten.addmm.default", (y[0, :4], x, y.T)), ("aten.addmm.default", (y[0, :4], x, y.T), {"beta": 0.5, "alpha": 2}),
        ("aten.mm.default", (x, y.T)), ("aten.bmm.default", (x3, x3.transpose(0, 2, 1))),
        ("aten.matmul.default", (x3, y.T[:4])),
        ("aten.gather.default", (x, 1, dup)), ("aten.gather.default", (x, 0, dup[:2] % 4)),
        ("aten.scatter.value", (x, 1, perm, -1.0)), ("aten.scatter.src", (x, 1, perm, y)),
        ("aten.scatter_add.default", (x, 1, dup, y)), ("aten.index_select.default", (x, 0, np.array([2, 0, 2]))),
        ("aten.embedding.default", (r.standard_normal((10, 3)).astype(f32), emb_idx)),
        ("aten.index.Tensor", (x, [np.array([3, 0, 3])])), ("aten.index.Tensor", (x, [None, np.array([4, 1])])),
        ("aten.select.int", (x, 1, -1)), ("aten.slice.Tensor", (x, 1, 1, 4)),
        ("aten.slice.Tensor", (x, 0, 0, 9223372036854775807, 2)),
        ("aten.index_put.default", (np.zeros((6, 5), f32), [np.array([1, 4, 1, 1])], x, True)),
        ("aten.index_put.default", (x, [np.array([3, 0])], y[:2])),
        ("aten.embedding_dense_backward.default", (r.standard_normal((2, 4, 3)).astype(f32), emb_idx, 10, -1, False)),
        ("aten.embedding_dense_backward.default", (r.standard_normal((2, 4, 3)).astype(f32), emb_idx, 10, 3, True)),
        ("aten.embedding_dense_backward.default", (r.standard_normal((2, 4, 3)).astype(f32), emb_idx, 10, 0, False)),
        ("aten.cat.default", ([x, y],)), ("aten.cat.default", ([x, y[:, :2]], -1)),
        ("aten.cat.default", ([x, np.zeros(0, f32)],)), ("aten.split.Tensor", (x, 2, 1)),
        ("aten.split_with_sizes.default", (x, [1, 3])), ("aten.slice_backward.default", (g[:, :3], [4, 5], 1, 1, 4, 1)),
        ("aten.select_backward.default", (g[:, 0], [4, 5], 1, 2)),
        ("aten.slice_scatter.default", (x, g[:, :3], 1, 1, 4)),
        ("aten.slice_scatter.default", (x, g[:2], 0, 0, 9223372036854775807, 2)),
        ("aten.flip.default", (x, [1])), ("aten.flip.default", (x3, [0, -1])),
        ("aten.cumsum.default", (x, 1)), ("aten.cumsum.default", (ints, -1)),
        ("aten.cumsum.default", (m, 0)), ("aten.cumsum.default", (x, 0), {"dtype": "float64"}),
        *[("aten.nll_loss_forward.default", (lsm, target, w, red, -100)) for w in (None, weight) for red in (0, 1, 2)],
        *[("aten.nll_loss_backward.default",
           (go if red else g[:, 0], lsm, target, w, red, -100, total_weight(w, red)))
          for w in (None, weight) for red in (0, 1, 2)],
        *[("aten.mse_loss.default", (x, y, red)) for red in (0, 1, 2)],
        ("aten.mse_loss_backward.default", (go, x, y, 1)), ("aten.mse_loss_backward.default", (g, x, y, 0)),
        ("aten.native_layer_norm.default", (lx, [8], lw, lb, 1e-5)),
        ("aten.native_layer_norm.default", (lx, [3, 8], None, None, 1e-5), {}, "layer_norm_nw"),
        ("aten.native_layer_norm_backward.default",
         (lx * 0 + r.standard_normal(lx.shape).astype(f32), lx, [8], mean, rstd, lw, lb, [True, True, True])),
        ("aten.native_layer_norm_backward.default",
         (r.standard_normal(lx.shape).astype(f32), lx, [8], mean, rstd, lw, lb, [True, False, True])),
    ]
    out = []
    for case in c:
        name, args, kwargs, tag = (*case, {}, None)[:4]
        tag = tag or name.removeprefix("aten.").split(".")[0].lstrip("_")
        out.append(pytest.param(name, args, kwargs or {}, _ATOL.get(tag, 1e-6), id=f"{name}-{len(out)}"))
    return out


CASES = _build_cases()


def _compare(mine, ref, name, atol):
    if isinstance(ref, (tuple, list)):
        assert isinstance(mine, tuple) and len(mine) == len(ref)
        for a, b in zip(mine, ref):
            if b is not None:
                _compare(a, b, name, atol)
        return
    ref = ref.numpy()
    assert isinstance(mine, np.ndarray), type(mine)
    assert mine.shape == ref.shape
    assert mine.dtype == ref.dtype, (mine.dtype, ref.dtype)
    if name in _UNINITIALIZED:
        return
    if ref.dtype.kind == "f":
        np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=atol)
    else:
        np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize(("name", "args", "kwargs", "atol"), CASES)
def test_op_matches_torch(name, args, kwargs, atol):
    mine = run_op(np, name, args, kwargs)
    ref = _aten(name)(*_to_torch(args), **{k: _to_torch(v) for k, v in kwargs.items()})
    _compare(mine, ref, name, atol)


def test_every_op_has_a_case_and_exists_in_torch():
    # wsebench's own custom ops (``wsebench.*``, in other ops_*.py modules) have no torch.ops.aten
    # oracle: their modules' tests check them against their torch definitions; the CNN ops
    # (simulator/ops/conv.py) have their own cases in test_conv_ops.py, which checks it has one
    # for each of them
    aten = {name for name in OPS if name.startswith("aten.")}
    assert {p.values[0] for p in CASES} == aten - conv_module_ops()
    for name in aten:
        _aten(name)  # raises if the overload name is misspelled


def conv_module_ops() -> set[str]:
    return {name for name, fn in KERNELS.items() if fn.__module__ == "simulator.ops.conv"}


def test_op_classes_are_subsets_of_the_table():
    assert VIEW_OPS | ELEMENTWISE_OPS | MATMUL_OPS <= set(OPS)
    assert MATMUL_OPS == {"aten.mm.default", "aten.addmm.default", "aten.bmm.default", "aten.matmul.default"}
    assert "aten.view.default" in VIEW_OPS and "aten.where.self" in ELEMENTWISE_OPS
    assert "aten.native_dropout.default" not in OPS  # the compiler rewrites it to take mask inputs


def test_python_scalars_do_not_promote_float32():
    x = np.ones((3,), np.float32)
    for name, args in [("aten.mul.Tensor", (x, 0.1)), ("aten.add.Tensor", (x, 1e-8)),
                       ("aten.add.Tensor", (x, x)), ("aten.div.Tensor", (x, 3.0))]:
        assert run_op(np, name, args, {"alpha": 0.3} if name == "aten.add.Tensor" else {}).dtype == np.float32


def test_reductions_return_arrays_not_scalars():
    out = run_op(np, "aten.sum.dim_IntList", (np.ones((2, 2), np.float32), []), {})
    assert isinstance(out, np.ndarray) and out.shape == () and out == 4


@pytest.mark.parametrize("p", [0.1, 0.15, 0.3, 0.5])
def test_dropout_mask_matches_eager(p):
    x = torch.randn(64, 33)
    torch.manual_seed(0)
    xg = x.clone().requires_grad_()
    out = torch.nn.functional.dropout(xg, p, training=True)
    g = torch.randn_like(out)
    out.backward(g)
    mask = (out != 0).numpy()
    mine, mask_out = apply_dropout_mask(np, x.numpy(), mask, p)
    np.testing.assert_array_equal(mine, out.detach().numpy())  # bit-exact
    assert mask_out.dtype == np.bool_
    grad = run_op(np, "aten.native_dropout_backward.default", (g.numpy(), mask, float(dropout_scale(p))))
    np.testing.assert_array_equal(grad, xg.grad.numpy())


def test_unknown_op_raises_naming_it():
    with pytest.raises(UnsupportedOpError) as info:
        run_op(np, "aten.foo.default", (np.ones(2),))
    assert info.value.op == "aten.foo.default"
    assert "aten.foo.default" in str(info.value) and "aten.addmm.default" in str(info.value)
    assert isinstance(info.value, KeyError)


# ---- static specialization: the executor's fast paths must equal the general kernels bit for bit ----

def _bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def _assert_identical(fast, general):
    if isinstance(general, tuple):
        assert isinstance(fast, (tuple, list)) and len(fast) == len(general)
        for f, g in zip(fast, general):
            _assert_identical(f, g)
        return
    fast = np.asarray(fast)
    assert fast.dtype == general.dtype and fast.shape == general.shape
    np.testing.assert_array_equal(_bits(fast), _bits(general))


def _specialized(name, args, kwargs, constants=()):
    """The fast path for ``args`` with every top-level array a ``Meta`` (``constants``: positions whose
    value the executor would know, as for a folded ``scalar_tensor``)."""
    metas = tuple(Meta(a.shape, a.dtype, a if i in constants else None) if isinstance(a, np.ndarray) else a
                  for i, a in enumerate(args))
    call = specialize(np, name, metas, kwargs)
    return call, [a for a in args if isinstance(a, np.ndarray)]


FAST_CASES = [p for p in CASES if p.values[0] in SPECIALIZERS and p.values[0] not in _UNINITIALIZED]


@pytest.mark.parametrize(("name", "args", "kwargs", "atol"), FAST_CASES)
def test_fast_path_equals_general_kernel(name, args, kwargs, atol):
    call, tensors = _specialized(name, args, kwargs)
    if call is not None:  # None: the specializer leaves these arguments (e.g. mixed dtypes) to the general form
        _assert_identical(call(*tensors), run_op(np, name, args, kwargs))


def test_fast_paths_belong_to_registered_ops_and_are_taken():
    assert set(SPECIALIZERS) <= set(OPS)
    taken = sum(_specialized(*p.values[:3])[0] is not None for p in FAST_CASES)
    assert taken >= 0.8 * len(FAST_CASES) and len(FAST_CASES) >= 60


def _special_values(shape=(6, 40), dtype=np.float32):
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[::7], flat[1::11], flat[2::13], flat[3::17], flat[4::19] = -0.0, np.nan, 0.0, np.inf, -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_selects_keep_nans_and_signed_zeros(dtype):
    """relu and the where/threshold_backward bit tricks, on NaN, +-0 and +-inf, with broadcasting."""
    x, g = _special_values(dtype=dtype), _special_values(dtype=dtype)[::-1].copy()
    zero = np.zeros((), dtype)
    cases = [("aten.relu.default", (x,), {}, ()), ("aten.threshold_backward.default", (g, x, 0), {}, ()),
             ("aten.where.self", (x <= 0, zero, g), {}, (1,)), ("aten.where.self", (x > 0, g, zero), {}, (2,)),
             ("aten.where.self", ((x > 0)[:1], zero, g), {}, (1,)), ("aten.where.ScalarSelf", (x < 0, 0.0, g), {}, ()),
             ("aten.where.ScalarOther", (x < 0, g.T.copy().T, 0.0), {}, ()),
             ("aten.where.self", (x <= 0, np.asarray(-0.0, dtype), g), {}, (1,))]
    for name, args, kwargs, constants in cases:
        call, tensors = _specialized(name, args, kwargs, constants)
        assert call is not None, name
        _assert_identical(call(*tensors), run_op(np, name, args, kwargs))


def test_result_dtype_shortcut_agrees_with_the_tiers():
    """result_dtype's same-dtype shortcut gives what torch's three-tier rule gives."""
    import itertools

    from simulator.ops import registry

    def tiers(*vals):
        arrays = [v for v in vals if registry.is_array(v)]
        levels = [[np.dtype(v.dtype) for v in arrays if v.ndim > 0], [np.dtype(v.dtype) for v in arrays if v.ndim == 0],
                  [registry.SCALAR_DEFAULT[registry.category(v)] for v in vals if v is not None
                   and not registry.is_array(v)]]
        result = None
        for dtypes in filter(None, levels):
            tier = registry._promote(dtypes)
            if result is None or registry.category(tier) > registry.category(result):
                result = tier
        return result

    values = [np.zeros(2, d) for d in ("float32", "float64", "int64", "int32", "bool", "float16")]
    values += [np.zeros((), d) for d in ("float32", "float64", "int64", "bool")] + [1, 2.5, True, None]
    for k in (1, 2, 3):
        for combo in itertools.product(values, repeat=k):
            if any(v is not None for v in combo):
                assert registry.result_dtype(*combo) == tiers(*combo), combo


def test_fma_and_subtraction_round_once():
    """fma equals the float64 formula it stands for; alpha = -1 (sub) is plain float32 subtraction."""
    from simulator.ops import add_scaled, fma

    r = np.random.default_rng(9)
    a, b = (r.standard_normal(4096) * 2.0 ** r.integers(-40, 40, 4096)).astype(np.float32), \
        (r.standard_normal(4096) * 2.0 ** r.integers(-40, 40, 4096)).astype(np.float32)
    s = np.float32(-0.0123)
    wide = (a.astype(np.float64) * np.float64(s) + b.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(_bits(fma(np, a, s, b)), _bits(wide))
    broadcast = (a.astype(np.float64) * np.float64(s) + np.float64(b[0])).astype(np.float32)
    np.testing.assert_array_equal(_bits(fma(np, a, s, b[:1])), _bits(broadcast))
    minus = (b.astype(np.float64) * -1.0 + a.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(_bits(add_scaled(np, a, b, -1)), _bits(minus))


def test_masked_attention_softmax_gives_pad_keys_exactly_nothing():
    """Key padding by a finite -1e9 (wsebench.models): pad keys get probability exactly 0 and
    their scores gradient exactly 0, as with torch, so the padding cannot leak into real tokens."""
    r = _rng()
    scores = (r.standard_normal((2, 2, 5, 5)) * 4).astype(np.float32)
    pad = np.zeros((2, 1, 1, 5), bool)
    pad[1, ..., 3:] = True
    masked = run_op(np, "aten.where.self", (pad, np.asarray(-1e9, np.float32), scores))
    probs = run_op(np, "aten._softmax.default", (masked, -1, False))
    torch_probs = torch.softmax(torch.from_numpy(masked), -1).numpy()
    assert not probs[1, ..., 3:].any() and probs[1, ..., :3].all()
    np.testing.assert_allclose(probs, torch_probs, rtol=1e-6, atol=1e-7)
    grad = run_op(np, "aten._softmax_backward_data.default",
                  (r.standard_normal(probs.shape).astype(np.float32), probs, -1, "float32"))
    assert not grad[1, ..., 3:].any()


def test_constant_op_rebuilds_the_captured_tensor():
    """wsebench's constant (compiler/op_names.py) carries a tensor's values, shape and dtype."""
    from compiler.op_names import CONSTANT_OP
    values = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7
    out = run_op(np, CONSTANT_OP, (tuple(values.reshape(-1).tolist()), (2, 3)), {"dtype": "float32"})
    assert out.dtype == np.float32 and np.array_equal(out, values.numpy())
    empty = run_op(np, CONSTANT_OP, ((), (0,)), {"dtype": "int64"})
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_gelu_gives_the_erf_its_decomposed_backward_computes_again():
    """gelu_and_erf: GELU as the general kernel computes it, and, bit for bit, the
    erf(x * M_SQRT1_2) of torch's decomposed gelu_backward (the executor hands it on)."""
    from simulator.ops.pointwise import gelu_and_erf, is_gelu_erf_input

    x = (np.random.default_rng(4).standard_normal((3, 50)) * 3).astype(np.float32)
    y, e = gelu_and_erf(np, x)
    _assert_identical(y, run_op(np, "aten.gelu.default", (x,)))
    again = run_op(np, "aten.erf.default", (run_op(np, "aten.mul.Tensor", (x, 0.7071067811865476)),))
    _assert_identical(e, again)
    assert is_gelu_erf_input("float32", 0.7071067811865476) and not is_gelu_erf_input("float32", 0.5)
    assert not is_gelu_erf_input("float32", 1)      # an int factor: a different kernel path
