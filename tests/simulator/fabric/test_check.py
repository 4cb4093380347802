"""The fabric model against the analytic one on small matmul kernels (forward pass).

Tolerance, from the mechanism: samples follow one another through two stages on the busiest
core, its work (x wavelets: activations and FMACs) and its sends (|J_c| partial sums). The
analytic model charges each sample max(work, link) (`compiler.cost`); a two-stage pipeline of S
samples takes S max(a, b) + min(a, b) (the first sample's other stage cannot overlap). The
fabric adds one control wavelet per sample (its activation ends the sample's tile) and the
hops across the region. So, with one row of cores (no partial-sum chain):

    analytic <= fabric <= analytic + S * task_cycles + min(work, link) + rows + cols + 4

(the 4: the ramp and edge hops of the first wavelet and of the last partial sum). With several
rows, the fabric also adds the partial sums arriving from above (an activation and an add
each), which the analytic model does not charge: a known disagreement the check reports.
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


def _within(c, rows, cols, work, link, samples=4):
    """The bound above, with `work` and `link` one sample's, worked out by hand."""
    slack = samples * TARGET.task_cycles + min(work, link) + rows + cols + 4
    return c.analytic_total <= c.fabric["total"] <= c.analytic_total + slack


def test_a_dense_compute_bound_kernel_agrees_within_the_pipeline_fill():
    """K 32, N 16 on one core: a sample is 16 dense wavelets, 32 x 16 / 4 = 128 FMAC cycles +
    16 activations = 144 cycles of work, 16 partial sums out: 4 x 144 = 576 analytic."""
    c = _case(32, 16, 1, 1)
    assert c.analytic_total == 576
    assert _within(c, 1, 1, work=144, link=16)
    assert c.fabric["compute"] == c.analytic["compute"].max() == 512
    assert c.ratio <= 1.05 and c.error < 1e-4


def test_columns_multicast_x_and_agree_as_one_core_does():
    """N 64 over 4 columns: each core is the one-core case above; x crosses 4 columns."""
    c = _case(32, 64, 1, 4)
    assert c.analytic_total == 576 and _within(c, 1, 4, work=144, link=16)


def test_a_link_bound_mapping_is_link_bound_in_both():
    """K 2, N 64 on one core: one x wavelet (32 FMAC cycles + 1 activation = 33 of work) but
    64 partial sums out a sample: the link sets the pace, 4 x 64 = 256."""
    c = _case(2, 64, 1, 1)
    assert c.analytic_total == 256
    assert c.analytic["link"].max() > c.analytic["compute"].max() + c.analytic["task"].max()
    busy = c.fabric["compute"] + c.fabric["SRAM"] + c.fabric["task"]
    assert c.fabric["link"] == 256 > busy
    assert _within(c, 1, 1, work=33, link=64)


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


def test_the_partial_sum_chain_is_the_known_disagreement():
    """K 64, N 32 on 2 x 2: the lower row adds 16 arriving partial sums a sample (an activation
    and an add, 2 cycles each) that the analytic model does not charge; the rest agrees as for
    one row."""
    c = _case(64, 32, 2, 2)
    reduction = 4 * 16 * (TARGET.task_cycles + 1)
    assert c.fabric["reduction"] == reduction and c.analytic["reduction"].max() == 0
    excess = c.fabric["total"] - c.analytic_total
    assert reduction <= excess <= reduction + 4 * TARGET.task_cycles + 16 + 2 + 2 + 4
    assert "reduction" in c.table() and "fabric / analytic" in c.table()


def test_a_dense_backward_agrees_within_the_pipeline_fill():
    """K 16, N 32 on one core: a sample's dY is 16 dense wavelets of 32 values; each value
    costs a dX FMAC over 16 and a dW FMAC over 16 x values, 4 + 4 cycles: 256 + 16 activations
    = 272 of work a sample, 16 dX partial sums out: 4 x 272 = 1088."""
    c = _case(16, 32, 1, 1, pass_="backward")
    assert c.analytic_total == 1088 and c.error < 1e-4
    assert _within(c, 1, 1, work=272, link=16)


def test_a_first_layers_backward_is_dw_only_in_both():
    c = _case(16, 32, 1, 1, pass_="backward", dx=False)
    assert c.analytic_total == 4 * (32 * 16 // 4 + 16)
    assert c.fabric["compute"] == c.analytic["compute"].max() == 4 * 128
    assert _within(c, 1, 1, work=144, link=0)


def test_dw_rounds_each_values_fmac_to_the_simd_width():
    """A known disagreement: the analytic model charges dW ceil(nnz(x) nnz(dY) / simd), as if
    the lanes packed products across dY values; the fabric's FMAC per dY value over the
    tile's non-zeros of x rounds up each time: nnz(dY) ceil(nnz(x) / simd)."""
    rng = np.random.default_rng(3)
    x = np.zeros((1, 16), np.float32)
    x[0, :5] = rng.standard_normal(5)                      # 5 non-zeros: 2 cycles, not 1.25
    dy = rng.standard_normal((1, 8)).astype(np.float32)
    c = compare(matmul_kernel("fc", 16, 8, samples=1, dx=False), Mapping(1, 1), TARGET,
                {"x": x, "w": rng.standard_normal((16, 8)).astype(np.float32), "dy": dy},
                pass_="backward")
    assert c.analytic["compute"].max() == np.ceil(5 * 8 / 4) == 10
    assert c.fabric["compute"] == 8 * np.ceil(5 / 4) == 16


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
    assert c.analytic_total <= c.fabric["total"]
