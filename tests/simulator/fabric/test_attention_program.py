"""The attention kind's fabric program (`simulator.fabric.attention`): real scaled dot-product
attention streamed over a tiny fabric, its cycles next to the kind's analytic model."""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels.attention import attention_kernel
from compiler.target import wafer
from simulator.fabric.check import compare

TARGET = wafer("classroom")                    # simd 4, one activation a wavelet, 2 values a wavelet


def _case(rows, cols, samples=2, heads=2, length=8, dh=4, causal=False, real=None,
          target=TARGET):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((samples, heads, length, dh)).astype(np.float32) for _ in range(3))
    allowed = np.ones((samples, length, length), bool)
    if causal:
        allowed &= np.tril(np.ones((length, length), bool))
    if real is not None:
        allowed[:, real:], allowed[:, :, real:] = False, False
    score = np.where(allowed[:, None], np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(dh), -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.exp(score - score.max(-1, keepdims=True))
        p = np.nan_to_num(p / p.sum(-1, keepdims=True))
    return compare(attention_kernel("attn", samples, heads, length, dh), Mapping(rows, cols), target,
                   {"q": q, "k": k, "v": v, "probs": p})


def test_one_core_agrees_to_the_cycle():
    """L 8, two heads of 4 (D 8): a sample's Q is 32 wavelets and a control one, K and V 64 and
    one (98 activations); 64 pairs x (2 x 8 MACs + 7 x 2 score operations) / 4 = 480 cycles:
    578 of work a sample, then the last sample's 32 output wavelets and a hop: 2 x 578 + 33."""
    c = _case(1, 1)
    assert c.fabric["total"] == c.analytic_total == 2 * 578 + 33
    assert c.fabric["task"] == c.analytic["task"].max() == 2 * 98
    assert c.error < 1e-5


@pytest.mark.parametrize("rows,cols,causal", [(2, 2, False), (2, 2, True), (1, 4, False)])
def test_rows_merge_their_partials_as_the_analytic_model_charges(rows, cols, causal):
    """Every core but a row's east end merges the partials arriving from the east (the online
    softmax), reading them off the fabric: (m, l) of q = 8 / rows queries x 2 heads at 2 cycles
    each, q x 8 / 2 output wavelets at 1, each of the 2 samples."""
    c = _case(rows, cols, causal=causal)
    q = 8 // rows
    assert c.fabric["reduction"] == c.analytic["reduction"].max() == 2 * (2 * q * 2 + q * 8 // 2)
    assert abs(c.ratio - 1) <= 0.02 and c.error < 1e-5


def test_pad_tokens_are_not_sent_and_cost_nothing():
    full, half = _case(4, 2), _case(4, 2, real=4)
    assert half.fabric["total"] < full.fabric["total"] / 2
    assert half.fabric["total"] == half.analytic_total and half.error < 1e-5


def test_fp32_values_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="two values a wavelet"):
        _case(1, 1, target=wafer("classroom", precision="fp32"))


def test_without_q_k_and_v_the_program_says_where_to_get_them():
    with pytest.raises(NotImplementedError, match="got no \\['q', 'k', 'v'\\]"):
        compare(attention_kernel("attn", 2, 2, 8, 4), Mapping(1, 1), TARGET,
                {"probs": np.ones((2, 2, 8, 8), np.float32)})
