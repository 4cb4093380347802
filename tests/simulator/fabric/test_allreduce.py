"""The ring all-reduce of replicas and the update (`simulator.fabric.allreduce`) against
`compiler.cost.update_cycles`, worked by hand on the smallest rings."""
import numpy as np
import pytest

from compiler import Mapping, cost
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer
from simulator.fabric.allreduce import AllReduce, traffic
from simulator.fabric.engine import run
from simulator.fabric.programs import part

TARGET = wafer("classroom")                       # simd 4, one hop a cycle
SGD = OptimizerSpec("sgd", 0.05, momentum=0.9)    # 5 element operations a weight


def _ring(replicas, rows, cols, tile, seed=0):
    grads = np.random.default_rng(seed).standard_normal((replicas, rows, cols, tile))
    program = AllReduce(grads.astype(np.float32), cost.update_flops(SGD))
    result = run(np, program, TARGET)
    return program, result


def test_two_one_core_replicas_agree_to_the_cycle():
    """Tile 8, two chunks of 4: each core sends its chunk (4 wavelets), adds its twin's, sends
    the sum back (4 more): 8 wavelets on the link, the last arriving after 2 hops, then the
    update ceil(8 x 5 / 4) = 10: 8 + 2 + 10 = 20 = the analytic ring (8) + hops (2 x 1) +
    update (10)."""
    program, result = _ring(2, 1, 1, 8)
    assert result.cycles == 20 == cost.update_cycles(8, Mapping(1, 1, 2), TARGET, SGD)
    assert result.sent[2].max() == result.sent[3].max() == 8         # east and the wrap west
    np.testing.assert_allclose(program.output(result)["sum"], program.reference()["sum"], atol=1e-5)


@pytest.mark.parametrize("replicas,rows,cols,tile", [(2, 2, 2, 16), (3, 2, 2, 30), (4, 1, 1, 64),
                                                     (4, 2, 2, 64), (3, 1, 2, 60), (4, 1, 3, 64),
                                                     (3, 1, 4, 64)])
def test_rings_agree_with_the_analytic_model_within_ten_percent(replicas, rows, cols, tile):
    program, result = _ring(replicas, rows, cols, tile)
    analytic = float(cost.update_cycles(tile, Mapping(rows, cols, replicas), TARGET, SGD))
    assert abs(result.cycles / analytic - 1) <= 0.10
    # the busiest link carries 2 (r - 1) / r of a row's tiles (chunks rounded up)
    assert result.sent[2].max() == cols * traffic(tile, replicas)[0].max()
    np.testing.assert_allclose(program.output(result)["sum"], program.reference()["sum"], atol=1e-4)


def test_every_core_sends_and_receives_2_r_minus_1_chunks():
    sends, receives = traffic(12, 3)
    assert sends.tolist() == receives.tolist() == [16, 16, 16]       # 2 x 2 chunks of 4


def test_one_replica_has_no_ring_and_the_registry_builds_it_by_name():
    with pytest.raises(ValueError, match="at least 2 replicas"):
        AllReduce(np.zeros((1, 1, 1, 4), np.float32), 5)
    program = part("update")(8, Mapping(1, 1, 2), 5)
    assert run(np, program, TARGET).cycles == 20


def test_each_ring_has_its_own_pair_of_colours():
    """Three rings a row (3 columns): 6 colours, so a ring's arrivals at its own core wait in
    its own queues (`router`: colours are virtual channels), never ahead of another ring's
    wavelets passing through."""
    program = AllReduce(np.zeros((2, 1, 3, 4), np.float32), cost.update_flops(SGD))
    assert program.colours == 6 and program.routes.shape == (6, 5, 1, 6)
    program.start(np, None)
    assert program.colour.tolist() == [[0, 2, 4, 1, 3, 5]]   # ring c east 2c, west (wrap) 2c + 1
