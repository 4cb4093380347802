"""The fabric model against the analytic one on small matmul kernels, worked by hand.

Per sample, on the busiest core (`compiler.kernels.matmul.terms`): work = FMAC cycles (each
streamed value one FMAC over its tile, rounded up to the SIMD width) + an activation per wavelet
received (the tile's wavelets and one control wavelet) + the partial sums a chain adds as they
arrive; a pass takes max(work, link). A run of S samples takes S such passes plus its fill
(`compiler.cost.fill_cycles`): hops across the region (rows + cols - 1) and, where no later core
adds the sums as they come, the last sample's sums sent after its work. On dense data the two
models agree to the cycle.
"""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import matmul_kernel
from compiler.target import wafer
from simulator.fabric.check import compare, pass_terms

TARGET = wafer("classroom")          # simd 4, task_cycles 1, two FP16 values a wavelet


def _case(k, n, rows, cols, density=1.0, samples=4, target=TARGET, harvest=True, seed=0,
          pass_="forward", dx=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, k)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0
    dy = rng.standard_normal((samples, n)).astype(np.float32)
    dy[rng.random(dy.shape) >= density] = 0
    w = rng.standard_normal((k, n)).astype(np.float32)
    return compare(matmul_kernel("fc", k, n, samples=samples, dx=dx), Mapping(rows, cols), target,
                   {"x": x, "w": w, "dy": dy}, pass_=pass_, harvest=harvest, density=density)


def test_a_dense_compute_bound_kernel_agrees_to_the_cycle():
    """K 32, N 16 on one core: a sample is 16 dense wavelets and a control one (17
    activations), 32 values x ceil(16 / 4) = 128 FMAC cycles: 145 of work, 16 sums out.
    4 x 145 + the last sample's 16 sums + 1 hop = 597."""
    c = _case(32, 16, 1, 1)
    assert c.analytic_total == 4 * 145 + 16 + 1 == c.fabric["total"]
    assert c.fabric["compute"] == c.analytic["compute"].max() == 512
    assert c.fabric["task"] == c.analytic["task"].max() == 4 * 17
    assert c.error < 1e-4


def test_columns_multicast_x_and_agree_as_one_core_does():
    """N 64 over 4 columns: each core is the one-core case above; x crosses 3 more hops."""
    c = _case(32, 64, 1, 4)
    assert c.analytic_total == 4 * 145 + 16 + 4 == c.fabric["total"]


def test_a_link_bound_mapping_is_link_bound_in_both():
    """K 2, N 64 on one core: one x wavelet and a control one (2 activations), 2 x 16 = 32
    FMAC cycles: 34 of work, but 64 partial sums out a sample: the link sets the pace, 4 x 64,
    and the last sample's sends wait for its work (34) + 1 hop."""
    c = _case(2, 64, 1, 1)
    assert c.analytic_total == 4 * 64 + 34 + 1 == c.fabric["total"]
    assert c.analytic["link"].max() > c.analytic["compute"].max() + c.analytic["task"].max()
    busy = c.fabric["compute"] + c.fabric["SRAM"] + c.fabric["task"]
    assert c.fabric["link"] == 256 > busy


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 2)])
def test_more_zeros_take_fewer_cycles_in_both(rows, cols):
    cases = [_case(32, 16, rows, cols, density) for density in (1.0, 0.5, 0.1)]
    fabric = [c.fabric["total"] for c in cases]
    analytic = [c.analytic_total for c in cases]
    assert fabric[0] > fabric[1] > fabric[2] and analytic[0] > analytic[1] > analytic[2]
    assert all(c.error < 1e-4 for c in cases)


def test_without_harvesting_zeros_cost_as_much_as_values():
    dense, sparse = _case(32, 16, 1, 1, 1.0, harvest=False), _case(32, 16, 1, 1, 0.1, harvest=False)
    assert dense.fabric["total"] == sparse.fabric["total"]
    assert dense.analytic_total == sparse.analytic_total


def test_fp32_values_are_sram_bound_in_both():
    c = _case(32, 16, 1, 1, target=wafer("classroom", precision="fp32"))
    assert c.fabric["SRAM"] == c.analytic["SRAM"].max() == c.fabric["compute"] > 0
    assert c.ratio <= 1.05


def test_the_partial_sum_chain_adds_each_sum_off_the_fabric_in_both():
    """K 64, N 32 on 2 x 2: the lower row adds 16 arriving partial sums a sample, one cycle
    each and no activation (an add with a fabric-input operand); its sums leave as they are
    added, so the run has no drain: 4 x (145 + 16) + 3 hops."""
    c = _case(64, 32, 2, 2)
    assert c.fabric["reduction"] == c.analytic["reduction"].max() == 4 * 16
    assert c.analytic_total == 4 * (145 + 16) + 3 == c.fabric["total"]
    assert "reduction" in c.table() and "fabric / analytic" in c.table()


def test_a_dense_backward_agrees_to_the_cycle():
    """K 16, N 32 on one core: a sample's dY is 16 dense wavelets and a control one; each of
    its 32 values costs a dX FMAC over 16 and a dW FMAC over 16 x values, 4 + 4 cycles: 256 +
    17 activations = 273 of work a sample, 16 dX sums out: 4 x 273 + 16 + 1 = 1109."""
    c = _case(16, 32, 1, 1, pass_="backward")
    assert c.analytic_total == 4 * 273 + 16 + 1 == c.fabric["total"] and c.error < 1e-4


def test_a_first_layers_backward_is_dw_only_in_both():
    c = _case(16, 32, 1, 1, pass_="backward", dx=False)
    assert c.analytic_total == 4 * (32 * 16 // 4 + 17) + 1 == c.fabric["total"]
    assert c.fabric["compute"] == c.analytic["compute"].max() == 4 * 128


def test_dw_rounds_each_values_fmac_to_the_simd_width_in_both():
    """The FMAC per dY value over the tile's non-zeros of x rounds up each time: 5 non-zeros
    of x cost 2 cycles a dY value, nnz(dY) ceil(nnz(x) / simd), not ceil(5 x 8 / 4)."""
    rng = np.random.default_rng(3)
    x = np.zeros((1, 16), np.float32)
    x[0, :5] = rng.standard_normal(5)
    dy = rng.standard_normal((1, 8)).astype(np.float32)
    c = compare(matmul_kernel("fc", 16, 8, samples=1, dx=False), Mapping(1, 1), TARGET,
                {"x": x, "w": rng.standard_normal((16, 8)).astype(np.float32), "dy": dy},
                pass_="backward")
    assert c.fabric["compute"] == c.analytic["compute"].max() == 8 * np.ceil(5 / 4) == 16


def test_an_unknown_pass_is_named():
    with pytest.raises(ValueError, match="unknown pass 'sideways'"):
        pass_terms(None, None, None, TARGET, pass_="sideways")


def test_tokens_stream_one_after_another_and_count_as_the_analytic_model_counts_them():
    """Two samples of three tokens: each token's row of x is a tile of its own; the forward's
    FMAC cycles are the analytic model's, summed over the tokens."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    tensors = {"x": x, "w": rng.standard_normal((16, 8)).astype(np.float32),
               "dy": rng.standard_normal((2, 3, 8)).astype(np.float32)}
    c = compare(matmul_kernel("fc", 16, 8, samples=2, tokens=3), Mapping(1, 1), TARGET, tensors)
    assert c.samples == 2 and c.error < 1e-4
    assert c.fabric["compute"] == c.analytic["compute"].max() == (x != 0).sum() * 8 / 4
    assert 0.9 <= c.ratio <= 1.1
