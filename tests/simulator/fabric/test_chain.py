"""The chain program: a tile stream filters zeros into (value, index) wavelets where fewer and
carries every value; a resident matrix times the stream comes out of the far edge whichever
axis the stream runs along."""
import numpy as np
import pytest

from compiler.target import wafer
from simulator.fabric import run
from simulator.fabric.chain import Chain, tile_stream, tiles_of

TARGET = wafer("classroom")


def _a(items, features, density, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((items, features)).astype(np.float32)
    a[rng.random(a.shape) >= density] = 0
    return a


def _decode(w, lengths, parts, step):
    """The values each part's stream carries, item by item (split at control wavelets)."""
    out = []
    for p in range(parts):
        tiles, tile = [], np.zeros(step, np.float32)
        for n, i, v in zip(w.n[p, :lengths[p]], w.idx[p, :lengths[p]], w.v[p, :lengths[p]]):
            if n == 0:
                tiles.append(tile)
                tile = np.zeros(step, np.float32)
            for k in range(n):
                tile[i + k] = v[k]
        out.append(tiles)
    return np.array(out)                                  # (parts, items, step)


@pytest.mark.parametrize("density", [1.0, 0.5, 0.1, 0.0])
def test_a_stream_sends_min_of_nonzeros_and_dense_wavelets_and_carries_every_value(density):
    a = _a(5, 12, density)
    w, lengths = tile_stream(a, parts=3, values=2, harvest=True)
    tiles = a.reshape(5, 3, 4)
    nnz = (tiles != 0).sum(axis=-1)                       # (items, parts)
    expected = (np.minimum(nnz, 2) + 1).sum(axis=0)       # dense: 4 values in 2 wavelets
    assert lengths.tolist() == expected.tolist()
    np.testing.assert_array_equal(_decode(w, lengths, 3, 4), tiles.transpose(1, 0, 2))
    sparse = (w.n == 1)
    assert (w.v[..., 1][sparse] == 0).all() and (w.v[..., 0][sparse] != 0).all()


def test_without_harvesting_every_tile_goes_dense():
    _, lengths = tile_stream(_a(2, 8, 0.1), parts=2, values=2, harvest=False)
    assert lengths.tolist() == [2 * (2 + 1)] * 2


@pytest.mark.parametrize("axis", [0, 1])
def test_each_core_holds_its_tile_of_the_resident_matrix(axis):
    m = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    tiles = tiles_of(m, 2, 3, axis) if axis == 0 else tiles_of(m, 3, 2, axis)
    # axis 0: m's rows over the region's rows; axis 1: over its columns
    first = tiles[0, 1] if axis == 0 else tiles[1, 0]
    np.testing.assert_array_equal(first, m[0:3, 3:6])


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("f_in,f_out,rows,cols,density", [(16, 8, 1, 1, 1.0), (10, 7, 3, 2, 0.5),
                                                         (5, 9, 4, 4, 1.0)])
def test_the_far_edge_gets_a_times_m_along_either_axis(axis, f_in, f_out, rows, cols, density):
    """Uneven and empty tiles too (5 over 4 leaves a part with no values)."""
    a = _a(3, f_in, density, seed=f_in)
    m = np.random.default_rng(1).standard_normal((f_in, f_out)).astype(np.float32)
    program = Chain(a, m, rows, cols, axis, TARGET.dense_values_per_wavelet, True)
    result = run(np, program, TARGET)
    np.testing.assert_allclose(program.product(result), a @ m, rtol=1e-5, atol=1e-5)
    leave = "S" if axis == 0 else "E"
    assert not result.sinks[leave][4].any()              # nothing beyond the outputs left
    # every core's stream task ran once per wavelet its row's (or column's) stream carried
    lengths = program.streams["W" if axis == 0 else "N"][1]
    per_core = lengths[:, None] if axis == 0 else lengths[None, :]
    np.testing.assert_array_equal(result.work[0, 2] // TARGET.task_cycles,
                                  np.broadcast_to(per_core, (rows, cols)))


def test_operands_that_disagree_are_refused():
    with pytest.raises(ValueError, match="features"):
        Chain(np.ones((2, 3)), np.ones((4, 2)), 1, 1, 0, 2, True)
