"""The matmul forward program: the x stream filters zeros into (value, index) wavelets where
fewer, the fabric computes x @ w exactly (up to float32 summation order), and each row's PE
receives its tile of every sample."""
import numpy as np
import pytest

from compiler.target import wafer
from simulator.fabric import run
from simulator.fabric.matmul import MatmulForward, x_stream

TARGET = wafer("classroom")


def _x(samples, k, density, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, k)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0
    return x


def _decode(w, lengths, rows, step):
    """The values each row's stream carries, sample by sample (split at control wavelets)."""
    out = []
    for r in range(rows):
        tiles, tile = [], np.zeros(step, np.float32)
        for n, i, v in zip(w.n[r, :lengths[r]], w.idx[r, :lengths[r]], w.v[r, :lengths[r]]):
            if n == 0:
                tiles.append(tile)
                tile = np.zeros(step, np.float32)
            for k in range(n):
                tile[i + k] = v[k]
        out.append(tiles)
    return np.array(out)                                  # (rows, samples, step)


@pytest.mark.parametrize("density", [1.0, 0.5, 0.1, 0.0])
def test_the_x_stream_sends_min_of_nonzeros_and_dense_wavelets_and_carries_every_value(density):
    x = _x(5, 12, density)
    w, lengths = x_stream(x, rows=3, values=2, harvest=True)
    tiles = x.reshape(5, 3, 4)
    nnz = (tiles != 0).sum(axis=-1)                       # (samples, rows)
    expected = (np.minimum(nnz, 2) + 1).sum(axis=0)       # dense: 4 values in 2 wavelets
    assert lengths.tolist() == expected.tolist()
    np.testing.assert_array_equal(_decode(w, lengths, 3, 4), tiles.transpose(1, 0, 2))
    sparse = (w.n == 1)
    assert (w.v[..., 1][sparse] == 0).all() and (w.v[..., 0][sparse] != 0).all()


def test_without_harvesting_every_tile_goes_dense():
    x = _x(2, 8, 0.1)
    _, lengths = x_stream(x, rows=2, values=2, harvest=False)
    assert lengths.tolist() == [2 * (2 + 1)] * 2


@pytest.mark.parametrize("k,n,rows,cols,density", [(16, 8, 1, 1, 1.0), (10, 7, 3, 2, 0.5),
                                                   (12, 12, 4, 3, 0.2), (5, 9, 4, 4, 1.0)])
def test_the_fabric_computes_x_times_w(k, n, rows, cols, density):
    """Uneven and empty tiles too (5 over 4 rows leaves a row with no x; 9 over 4 columns a
    column with one output)."""
    x = _x(3, k, density, seed=k)
    w = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    program = MatmulForward(x, w, rows, cols, TARGET.dense_values_per_wavelet, True)
    result = run(np, program, TARGET)
    np.testing.assert_allclose(program.output(result), x @ w, rtol=1e-5, atol=1e-5)
    assert not result.sinks["S"][4].any()                 # nothing beyond the outputs left
    # every core's x task ran once per wavelet its row's stream carried
    x_tasks = result.work[0, 2] // TARGET.task_cycles
    lengths = program.streams["W"][1]
    np.testing.assert_array_equal(x_tasks, np.repeat(lengths[:, None], cols, axis=1))


def test_a_weight_and_x_that_disagree_are_refused():
    with pytest.raises(ValueError, match="features"):
        MatmulForward(np.ones((2, 3)), np.ones((4, 2)), 1, 1, 2, True)
