"""The generated kind's program: every element enters its core on its column's colour, is
worked on and leaves over the south edge once; on one core the fabric agrees with the analytic
model, and over a wider region the edge links carry the whole row's (or column's) tiles."""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import generated_kernel
from compiler.target import wafer
from simulator.fabric import program_for, run
from simulator.fabric.check import compare
from simulator.fabric.elementwise import Elementwise, filters, row_streams

TARGET = wafer("classroom")


def test_each_row_streams_its_cores_tiles_once_indexed_for_the_filters():
    values = np.arange(1, 2 * 24 + 1, dtype=np.float32).reshape(2, 24)
    w, lengths, per_item = row_streams(values, 2, 3, 2)       # a tile of 4: 2 wavelets a core
    assert lengths.tolist() == [2 * 3 * 2] * 2 and (per_item == 2).all()
    seen = np.concatenate([w.v[r, :lengths[r]].reshape(-1) for r in range(2)])
    assert sorted(seen.tolist()) == values.reshape(-1).tolist()
    # row 1, each item: cores (1, 0), (1, 1), (1, 2) hold elements 12-15, 16-19, 20-23,
    # sent in turn a wavelet each
    assert w.idx[1].tolist() == [12, 16, 20, 14, 18, 22] * 2
    f = filters(2, 3, 4)
    assert f[0, :, 1, 1].tolist() == [16, 20] and f[1, 0, 0, 0] > f[1, 1, 0, 0]


@pytest.mark.parametrize("e,rows,cols,flops", [(16, 1, 1, 4), (30, 2, 2, 1), (13, 2, 3, 2)])
def test_every_element_comes_back_once(e, rows, cols, flops):
    values = np.random.default_rng(e).standard_normal((3, e)).astype(np.float32)
    program = Elementwise(values, rows, cols, flops, TARGET.dense_values_per_wavelet)
    result = run(np, program, TARGET)
    np.testing.assert_array_equal(program.output(result)["out"], values)
    assert not result.sinks["S"][4].any()
    # the filters hand each PE its own wavelets only: one task each
    np.testing.assert_array_equal(result.work[0, 2] // TARGET.task_cycles, program.per_core)


def _case(e, rows, cols, flops=4, samples=3):
    values = np.random.default_rng(0).standard_normal((samples, e)).astype(np.float32)
    return compare(generated_kernel("g", e, samples=samples, flops=flops), Mapping(rows, cols),
                   TARGET, {"out": values})


def test_on_one_core_the_fabric_agrees_with_the_analytic_model():
    """16 elements, 4 operations each: 8 wavelets of 2 values, ceil(2 x 4 / 4) = 2 SIMD
    cycles and an activation each, 3 x 24 = 72, and the run's fill: 1 hop (the fabric's last
    result takes one more, to the edge)."""
    c = _case(16, 1, 1)
    assert c.analytic_total == 72 + 1 and c.error == 0
    assert 73 <= c.fabric["total"] <= 73 + 1
    assert c.fabric["compute"] == c.analytic["compute"].max() == 48


@pytest.mark.parametrize("rows,cols", [(1, 4), (4, 1)])
def test_over_a_wider_region_the_edge_link_carries_every_cores_tile(rows, cols):
    """The tiles of a row enter over its one west link, and those of a column leave over its
    one south link, so the busiest link carries 4 tiles (8 wavelets each) a sample in both
    models, while each core's PE takes its own 8: link-bound, 3 x 32 and 4 hops of fill."""
    c = _case(64, rows, cols)
    assert c.analytic["link"].max() == c.fabric["link"] == 4 * 3 * 8 <= c.fabric["total"]
    assert c.analytic["task"].max() == c.fabric["task"] == 3 * 8
    assert c.analytic_total == 3 * 32 + 4 and c.error == 0
    assert 0 <= c.fabric["total"] - c.analytic_total <= 3


def test_a_value_count_that_is_not_the_kernels_is_refused():
    with pytest.raises(ValueError, match="has 16 elements a sample"):
        program_for(generated_kernel("g", 16, samples=2), Mapping(1, 1), TARGET,
                    {"out": np.zeros((2, 15))})
