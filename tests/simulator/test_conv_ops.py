"""simulator/ops/conv.py against torch's own ATen ops (the oracle), case by case: convolution
and its backward over stride, padding, dilation, groups and 1-D; the pools with ceil mode,
padding and their divisors; adaptive pooling with uneven windows; batch norm's outputs and
running statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.ops import run_op

aten = torch.ops.aten
TOL = dict(rtol=1e-5, atol=1e-5)


def _np(t):
    return None if t is None else t.detach().numpy()


def _check(ours, theirs, **tol):
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, (tuple, list)) else (theirs,)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if b is None:
            assert a is None
            continue
        assert a.shape == tuple(b.shape) and a.dtype == _np(b).dtype
        np.testing.assert_allclose(a, _np(b), **(tol or TOL))


CONVS = {  # x shape, w shape, stride, padding, dilation, groups, bias
    "plain": ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1, True),
    "padded strided": ((2, 3, 9, 8), (4, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    "uneven": ((1, 2, 9, 7), (3, 2, 3, 2), (2, 1), (1, 2), (1, 1), 1, False),
    "dilated": ((2, 2, 9, 9), (4, 2, 3, 3), (1, 2), (2, 1), (2, 3), 1, True),
    "groups": ((2, 4, 6, 6), (6, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2, True),
    "depthwise": ((2, 4, 6, 6), (4, 1, 3, 3), (2, 2), (1, 1), (1, 1), 4, False),
    "1x1 strided": ((2, 4, 7, 7), (8, 4, 1, 1), (2, 2), (0, 0), (1, 1), 1, False),
    "1-d": ((2, 3, 11), (4, 3, 3), (2,), (1,), (1,), 1, True),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_convolution_and_backward_equal_torch(case):
    xs, ws, stride, padding, dilation, groups, bias = CONVS[case]
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
    b = torch.randn(ws[0], generator=g) if bias else None
    args = (list(stride), list(padding), list(dilation), False, [0] * len(stride), groups)
    y = aten.convolution(x, w, b, *args)
    _check(run_op(np, "aten.convolution.default", (_np(x), _np(w), _np(b)) + args), y)
    dy = torch.randn(y.shape, generator=g)
    for mask in ([True, True, bias], [False, True, False]):
        theirs = aten.convolution_backward(dy, x, w, [ws[0]] if bias else None, *args, mask)
        ours = run_op(np, "aten.convolution_backward.default",
                      (_np(dy), _np(x), _np(w), [ws[0]] if bias else None) + args + (mask,))
        _check(ours, tuple(t if m else None for t, m in zip(theirs, mask)))


POOLS = {  # x shape, kernel, stride, padding, ceil_mode
    "2x2": ((2, 3, 8, 8), [2, 2], [2, 2], [0, 0], False),
    "3x3 s2 p1": ((2, 3, 9, 8), [3, 3], [2, 2], [1, 1], False),
    "ceil": ((1, 2, 7, 6), [3, 2], [2, 2], [1, 0], True),
    "overlap": ((1, 2, 6, 7), [3, 3], [1, 2], [1, 1], False),
    "default stride": ((2, 2, 6, 6), [3, 3], [], [0, 0], False),
}


@pytest.mark.parametrize("case", list(POOLS))
def test_max_pool_and_backward_equal_torch(case):
    shape, kernel, stride, padding, ceil = POOLS[case]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g).round(decimals=1)       # ties: torch keeps the first
    out, idx = aten.max_pool2d_with_indices(x, kernel, stride, padding, [1, 1], ceil)
    ours = run_op(np, "aten.max_pool2d_with_indices.default", (_np(x), kernel, stride, padding, [1, 1], ceil))
    _check(ours, (out, idx))
    dy = torch.randn(out.shape, generator=g)
    theirs = aten.max_pool2d_with_indices_backward(dy, x, kernel, stride, padding, [1, 1], ceil, idx)
    _check(run_op(np, "aten.max_pool2d_with_indices_backward.default",
                  (_np(dy), _np(x), kernel, stride, padding, [1, 1], ceil, _np(idx))), theirs)


def test_max_pool_with_dilation_equals_torch():
    x = torch.randn(1, 2, 9, 9, generator=torch.Generator().manual_seed(2))
    theirs = aten.max_pool2d_with_indices(x, [2, 3], [2, 1], [1, 1], [2, 2], False)
    _check(run_op(np, "aten.max_pool2d_with_indices.default", (_np(x), [2, 3], [2, 1], [1, 1], [2, 2])),
           theirs)


@pytest.mark.parametrize("case", list(POOLS))
@pytest.mark.parametrize("include_pad, divisor", [(True, None), (False, None), (True, 5)])
def test_avg_pool_and_backward_equal_torch(case, include_pad, divisor):
    shape, kernel, stride, padding, ceil = POOLS[case]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g)
    args = (kernel, stride, padding, ceil, include_pad, divisor)
    out = aten.avg_pool2d(x, *args)
    _check(run_op(np, "aten.avg_pool2d.default", (_np(x),) + args), out)
    dy = torch.randn(out.shape, generator=g)
    _check(run_op(np, "aten.avg_pool2d_backward.default", (_np(dy), _np(x)) + args),
           aten.avg_pool2d_backward(dy, x, *args))


@pytest.mark.parametrize("shape, size", [((2, 3, 7, 5), [3, 2]), ((1, 2, 8, 8), [4, 4]),
                                          ((2, 2, 5, 6), [1, 1]), ((1, 1, 3, 4), [5, 6])])
def test_adaptive_avg_pool_and_backward_equal_torch(shape, size):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g)
    out = aten._adaptive_avg_pool2d(x, size)
    _check(run_op(np, "aten._adaptive_avg_pool2d.default", (_np(x), size)), out)
    dy = torch.randn(out.shape, generator=g)
    _check(run_op(np, "aten._adaptive_avg_pool2d_backward.default", (_np(dy), _np(x))),
           aten._adaptive_avg_pool2d_backward(dy, x))


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4), (3, 2, 7)])
def test_batch_norm_training_step_equals_torch_running_stats_included(shape):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g) * 3 + 1
    c = shape[1]
    w, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    rm, rv = torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.5
    theirs = aten._native_batch_norm_legit_functional(x, w, b, rm, rv, True, 0.1, 1e-5)
    ours = run_op(np, "aten._native_batch_norm_legit_functional.default",
                  (_np(x), _np(w), _np(b), _np(rm), _np(rv), True, 0.1, 1e-5))
    _check(ours, theirs, rtol=2e-6, atol=2e-6)
    # what nn.BatchNorm updates in place: the unbiased variance goes into running_var
    bn = torch.nn.BatchNorm1d(c) if len(shape) < 4 else torch.nn.BatchNorm2d(c)
    bn.running_mean.copy_(rm)
    bn.running_var.copy_(rv)
    bn.train()(x)
    np.testing.assert_allclose(ours[3], _np(bn.running_mean), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours[4], _np(bn.running_var), rtol=1e-6, atol=1e-7)


def test_batch_norm_without_running_stats_equals_torch():
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(6))
    w, b = torch.ones(3) * 2, torch.zeros(3) + 0.5
    theirs = aten._native_batch_norm_legit.no_stats(x, w, b, True, 0.1, 1e-5)
    _check(run_op(np, "aten._native_batch_norm_legit.no_stats", (_np(x), _np(w), _np(b), True, 0.1, 1e-5)),
           theirs, rtol=2e-6, atol=2e-6)


def test_every_op_of_the_module_has_a_case_here():
    """test_ops.py leaves the module's ops to this file: each is run against torch above."""
    import inspect
    from simulator.ops import KERNELS
    mine = {name for name, fn in KERNELS.items() if fn.__module__ == "simulator.ops.conv"}
    source = inspect.getsource(inspect.getmodule(test_every_op_of_the_module_has_a_case_here))
    assert mine and all(f'run_op(np, "{name}"' in source.replace("\n", "") for name in mine), mine
