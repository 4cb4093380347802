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


def _cycles(k, n, rows, cols, x, dy=None, pass_="forward", dx=True):
    x = np.asarray(x, np.float32)[None]
    dy = np.ones((1, n), np.float32) if dy is None else np.asarray(dy, np.float32)[None]
    program = program_for(matmul_kernel("fc", k, n, samples=1, dx=dx), Mapping(rows, cols),
                          TARGET, {"x": x, "w": np.ones((k, n), np.float32), "dy": dy},
                          pass_=pass_)
    return run(np, program, TARGET).cycles


# Worked by hand from the model's rules (classroom: simd 4, task_cycles 1, two FP16 values a
# dense wavelet). A wavelet fed at cycle t reaches the ramp at t + 1 and its task starts then;
# a task costs its activation plus an FMAC cycle per value; the control wavelet's task (1
# cycle) ends the sample; a sum can be sent the cycle its task ends and leaves the region's
# edge the next cycle, one a cycle.
EXACT = [
    # K 4, N 4, x dense: 2 wavelets of 3 cycles (cycles 1-6), control (7), 4 sums out (8-11)
    ("forward", 4, 4, 1, 1, [1, 2, 3, 4], None, True, 12),
    # one non-zero: 1 sparse wavelet (1-2), control (3), sums out (4-7)
    ("forward", 4, 4, 1, 1, [1, 0, 0, 0], None, True, 8),
    # N 8 over two columns: x reaches column 1 one hop later
    ("forward", 4, 8, 1, 2, [1, 2, 3, 4], None, True, 13),
    # K 8 over two rows: row 0 as above sends its sums at 7-10; each reaches row 1's ramp 2
    # cycles later; row 1 adds each in 1 cycle, read off the fabric with no activation
    # (9, 10, 11, 12), sends each as it ends, the last reaches the edge at 13
    ("forward", 8, 4, 2, 1, [1] * 8, None, True, 14),
    # a first layer's backward: dY's 2 wavelets, each value a dW FMAC over 4 x (1-6), control
    # (7); no sums: done at 8
    ("backward", 4, 4, 1, 1, [1, 2, 3, 4], None, False, 8),
    # with dX: each value a dX FMAC over 4 and a dW one: 5 cycles a wavelet (1-10), control
    # (11), 4 dX sums out (12-15)
    ("backward", 4, 4, 1, 1, [1, 2, 3, 4], None, True, 16),
    # one non-zero of x still rounds each dW FMAC up to one cycle: as dense
    ("backward", 4, 4, 1, 1, [1, 0, 0, 0], None, False, 8),
    # one non-zero of dY: 1 sparse wavelet (1-3), control (4), sums out (5-8)
    ("backward", 4, 4, 1, 1, [1, 2, 3, 4], [0, 0, 5, 0], True, 9),
]


@pytest.mark.parametrize("pass_,k,n,rows,cols,x,dy,dx,cycles", EXACT)
def test_tiny_fabrics_take_the_cycles_worked_out_by_hand(pass_, k, n, rows, cols, x, dy, dx, cycles):
    assert _cycles(k, n, rows, cols, x, dy, pass_, dx) == cycles
