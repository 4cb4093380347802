"""The matmul kind's fabric programs compute what torch would: y = x @ w forward, and from the
same dY wavelets dX = dY @ w^T (not for a first layer) and dW = x^T dY."""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import matmul_kernel
from compiler.target import wafer
from simulator.fabric import program_for, run
from simulator.fabric.matmul import MatmulBackward
from simulator.fabric.router import E, S

TARGET = wafer("classroom")


def _tensors(samples, k, n, density, tokens=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, tokens, k)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0
    dy = rng.standard_normal((samples, tokens, n)).astype(np.float32)
    dy[rng.random(dy.shape) >= density] = 0
    return {"x": x, "w": rng.standard_normal((k, n)).astype(np.float32), "dy": dy}


@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("k,n,rows,cols,density,tokens", [(16, 8, 1, 1, 1.0, 1), (10, 7, 3, 2, 0.5, 2),
                                                          (12, 12, 4, 3, 0.2, 1)])
def test_the_programs_compute_the_layers_results(pass_, k, n, rows, cols, density, tokens):
    t = _tensors(3, k, n, density, tokens)
    kernel = matmul_kernel("fc", k, n, samples=3, tokens=tokens)
    program = program_for(kernel, Mapping(rows, cols), TARGET, t, pass_=pass_)
    result = run(np, program, TARGET)
    got, want = program.output(result), program.reference()
    x, dy = t["x"].reshape(-1, k), t["dy"].reshape(-1, n)
    expected = {"y": x @ t["w"]} if pass_ == "forward" else {"dx": dy @ t["w"].T, "dw": x.T @ dy}
    assert set(got) == set(want) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(want[name], value, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-4)


def test_a_first_layer_computes_dw_only_and_ends_when_every_core_has_its_dy():
    t = _tensors(2, 8, 6, 0.5)
    kernel = matmul_kernel("fc", 8, 6, samples=2, dx=False)
    program = program_for(kernel, Mapping(2, 2), TARGET, t, pass_="backward")
    result = run(np, program, TARGET)
    assert set(program.output(result)) == {"dw"} and not result.sinks
    assert result.work[1].sum() == 0 and result.sent[E].sum() == 0      # no partial sums
    assert result.sent[S][0].tolist() == list(program.streams["N"][1])   # dY down each column
    streamed = program.streams["N"][1].max()
    assert streamed <= result.cycles <= result.busy.max() + streamed + 2 + 2


def test_dw_skips_the_zeros_of_the_stashed_x():
    """The dW FMAC runs over the tile's non-zeros of x: a zero x makes dY's values cost only
    their dX work."""
    t = _tensors(2, 8, 8, 1.0)
    zero = dict(t, x=np.zeros_like(t["x"]))
    kernel = matmul_kernel("fc", 8, 8, samples=2)
    work = [run(np, program_for(kernel, Mapping(1, 1), TARGET, u, pass_="backward"), TARGET)
            .work[0, 0].sum() for u in (t, zero)]
    assert work[1] == 2 * 8 * (8 // TARGET.simd)                 # dX only: 16 values x 2 cycles
    assert work[0] == 2 * 8 * (8 // TARGET.simd) * 2             # and dW over 8 x values


def test_a_backward_x_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="backward needs"):
        MatmulBackward(np.ones((2, 3)), np.ones((4, 5)), np.ones((2, 5)), 1, 1, 2, True)
