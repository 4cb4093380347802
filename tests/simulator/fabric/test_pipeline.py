"""The whole step's pieces (`simulator.fabric.pipeline`): streams that enter no earlier than
their sample has arrived, and a kernel's both-pass stage joined to the next by a route."""
import numpy as np

from compiler import Mapping
from compiler.kernels import generated_kernel, matmul_kernel
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer
from simulator.fabric.engine import run
from simulator.fabric.pipeline import Stage, gated_run, stage_program, update_cycles
from simulator.fabric.routes import RouteProgram

TARGET = wafer("classroom")


def test_a_gated_stream_enters_no_earlier_than_its_release():
    """One wavelet over one link takes 2 cycles; released at cycle 10 it arrives at 12. Two
    samples released at 0 and 20: the second arrives 20 + 4 wavelets + 3 links later."""
    one = RouteProgram(1, 1, 1, 1, 2)
    assert run(np, one, TARGET).cycles == 2
    assert gated_run(np, RouteProgram(1, 1, 1, 1, 2), TARGET, 4, {"W": np.array([10])}).cycles == 12
    two = RouteProgram(2, 4, 1, 3, 2)
    result = gated_run(np, two, TARGET, 4, {"W": np.array([0, 20])})
    assert two.arrivals(result).tolist() == [7, 27]


def test_a_stage_reruns_only_when_its_gates_move():
    rng = np.random.default_rng(0)
    kernel = matmul_kernel("fc", 8, 8, samples=2)
    tensors = {"x": rng.standard_normal((2, 8)), "w": rng.standard_normal((8, 8)),
               "dy": rng.standard_normal((2, 8))}
    mapping = Mapping(2, 2)
    stage = Stage(kernel, mapping, stage_program(kernel, mapping, TARGET, tensors, True))
    early = {"forward": np.zeros(2, np.int64), "backward": np.zeros(2, np.int64)}
    assert stage.rerun(np, TARGET, 4, early) and not stage.rerun(np, TARGET, 4, early)
    first = stage.done["backward"].copy()
    late = {"forward": np.zeros(2, np.int64), "backward": np.array([0, 100])}
    assert stage.rerun(np, TARGET, 4, late)
    assert stage.done["backward"][0] == first[0] and stage.done["backward"][1] > 100
    assert (stage.done["forward"] > 0).all()


def test_an_element_wise_stage_turns_its_backward_and_an_update_is_the_datapaths():
    kernel = generated_kernel("g", 16, samples=2)
    program = stage_program(kernel, Mapping(1, 2), TARGET, {}, True)
    assert set(program.streams) == {"W", "N"} and set(program.sinks) == {"S", "E"}
    sgd = OptimizerSpec("sgd", 0.05, momentum=0.9)
    fc = matmul_kernel("fc", 8, 8, samples=2, bias=False)
    assert update_cycles(fc, Mapping(2, 2), TARGET, sgd) == 16 * 5 // 4     # 16 weights a core
    assert update_cycles(kernel, Mapping(1, 2), TARGET, sgd) == 0           # no weights
