"""A kernel's operands read off a step: x and dY by samples (tokens kept), with errors for what is
missing. (The weight through its view is checked on a compiled session, tests/wsebench.)"""
import numpy as np
import pytest

from compiler.kernels import matmul_kernel
from simulator.fabric.operands import streamed


def test_x_comes_back_by_sample_with_its_tokens():
    kernel = matmul_kernel("fc", 8, 6, samples=4, tokens=2)
    flat = np.arange(4 * 2 * 8, dtype=np.float32).reshape(8, 8)        # (B*T, K) as captured
    x = streamed(kernel, {"fc_x": flat}, "x", 3)
    assert x.shape == (3, 2, 8)
    np.testing.assert_array_equal(x.reshape(6, 8), flat[:6])


def test_a_dy_captured_transposed_comes_back_by_sample():
    kernel = matmul_kernel("fc", 8, 6, samples=4)
    dy = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    got = streamed(kernel, {"fc_dy": dy.T}, "dy", 2)                  # (N, B) as the dW reads it
    np.testing.assert_array_equal(got[:, 0], dy[:2])


def test_missing_tensors_and_bad_sample_counts_are_named():
    kernel = matmul_kernel("fc", 8, 6, samples=4)
    with pytest.raises(KeyError, match="run a training step first"):
        streamed(kernel, {}, "x", 1)
    with pytest.raises(ValueError, match="between 1 and the batch, 4"):
        streamed(kernel, {"fc_x": np.zeros((4, 8))}, "x", 5)
