"""The cycle loop: the same program gives the same cycles and outputs on every backend, and a
run ends at the cycle after its last output arrives."""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import matmul_kernel
from compiler.target import wafer
from simulator.backend import cuda_available, get_backend
from simulator.fabric import program_for, run
from simulator.fabric.engine import array_bytes, edge_cores
from simulator.fabric.matmul import MatmulForward

TARGET = wafer("classroom")


def _program(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 24)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    w = rng.standard_normal((24, 12)).astype(np.float32)
    return MatmulForward(x, w, 3, 2, TARGET.dense_values_per_wavelet, True), x @ w


def test_the_run_ends_the_cycle_after_the_last_output_and_looking_less_often_changes_nothing():
    a, b = _program()[0], _program()[0]
    every, sparse = run(np, a, TARGET), run(np, b, TARGET, check_every=16)
    assert every.cycles == int(every.sinks["S"][2].max()) + 1
    assert sparse.cycles == every.cycles
    np.testing.assert_array_equal(sparse.work, every.work)


def test_a_program_with_no_outputs_ends_when_its_cores_are_done_however_often_it_is_seen():
    """A first layer's backward (dW only): 2 dY wavelets of 3 cycles and a control, done at 8
    (test_matmul_program's worked cases), looked at every cycle or every 16."""
    tensors = {"x": np.ones((1, 4), np.float32), "w": np.ones((4, 4), np.float32),
               "dy": np.ones((1, 4), np.float32)}
    kernel = matmul_kernel("fc", 4, 4, samples=1, dx=False)
    cycles = [run(np, program_for(kernel, Mapping(1, 1), TARGET, tensors, pass_="backward"),
                  TARGET, check_every=every).cycles for every in (1, 16)]
    assert cycles == [8, 8]


def test_edge_cores_are_in_order_along_each_side():
    grid = np.arange(12).reshape(3, 4)
    assert grid[edge_cores("N", (3, 4))].tolist() == [0, 1, 2, 3]
    assert grid[edge_cores("S", (3, 4))].tolist() == [8, 9, 10, 11]
    assert grid[edge_cores("W", (3, 4))].tolist() == [0, 4, 8]
    assert grid[edge_cores("E", (3, 4))].tolist() == [3, 7, 11]


def test_the_engine_counts_each_array_once_and_a_view_as_what_it_views():
    a = np.zeros(100, np.float32)
    holder = type("Holder", (), {"__module__": "simulator.x"})()
    holder.a, holder.b, holder.c = a, a[10:], {"x": (a.reshape(10, 10), np.ones(5, np.int8))}
    assert array_bytes(holder) == 400 + 5


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA device")
def test_cupy_runs_the_same_cycles_as_numpy():
    cupy = get_backend("cupy").xp
    (a, expected), (b, _) = _program(), _program()
    on_numpy, on_cupy = run(np, a, TARGET), run(cupy, b, TARGET, check_every=8)
    assert on_cupy.cycles == on_numpy.cycles
    np.testing.assert_array_equal(on_cupy.work, on_numpy.work)
    np.testing.assert_allclose(b.output(on_cupy)["y"], expected, rtol=1e-5, atol=1e-5)
