"""The whole step's pieces (`simulator.fabric.pipeline`): streams that enter no earlier than
their sample has arrived, and a kernel's both-pass stage joined to the next by a route."""
import numpy as np

from compiler import Mapping
from compiler.kernels import generated_kernel, matmul_kernel
from compiler.optim_spec import OptimizerSpec
from compiler.target import wafer
from simulator.fabric.engine import run
from simulator.fabric.pipeline import Stage, _Route, gated_run, stage_program, update_cycles
from simulator.fabric.routes import RouteProgram
from simulator.fabric.trace import Recorder

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


def _stage(seed: int) -> Stage:
    """An 8 x 8 matmul's both-pass stage on 2 x 2 cores, two samples of random tensors."""
    rng = np.random.default_rng(seed)
    kernel = matmul_kernel("fc", 8, 8, samples=2)
    tensors = {"x": rng.standard_normal((2, 8)), "w": rng.standard_normal((8, 8)),
               "dy": rng.standard_normal((2, 8))}
    mapping = Mapping(2, 2)
    return Stage(kernel, mapping, stage_program(kernel, mapping, TARGET, tensors, True))


def test_a_stage_reruns_only_when_its_gates_move():
    stage = _stage(0)
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


def test_a_stage_records_its_runs_frames_only_with_a_factory_and_keeps_its_last():
    """Each run gets a fresh recorder whose frames add up to that run's own stats; a rerun with
    the same gates runs nothing and keeps it; with no factory nothing is recorded."""
    stage = _stage(1)
    gates = {"forward": np.zeros(2, np.int64), "backward": np.array([0, 30])}
    assert stage.rerun(np, TARGET, 4, gates) and stage.recorder is None
    made = []
    factory = lambda: made.append(Recorder(every=1)) or made[-1]
    late = {"forward": np.zeros(2, np.int64), "backward": np.array([0, 40])}
    assert stage.rerun(np, TARGET, 4, late, factory) and stage.recorder is made[-1]
    frames = stage.recorder.frames
    assert [f.cycle for f in frames] == list(range(1, stage.run.cycles + 1))
    np.testing.assert_array_equal(sum(f.busy.astype(np.int64) for f in frames), stage.run.busy)
    np.testing.assert_array_equal(sum(f.links.astype(np.int64) for f in frames), stage.run.sent[:4])
    assert not stage.rerun(np, TARGET, 4, late, factory) and len(made) == 1


def test_a_route_records_its_last_run_on_the_steps_clock():
    route = _Route(RouteProgram(2, 4, 1, 3, 2), 2)
    made = []
    factory = lambda: made.append(Recorder(every=1)) or made[-1]
    assert route.arrivals(np, TARGET, 4, np.array([0, 20]), factory).tolist() == [7, 27]
    frames = route.recorder.frames
    sends = [f.cycle for f in frames if f.links.any()]
    assert sends[0] == 2 and 20 < sends[-1] <= 27 and frames[-1].cycle == 27
    route.arrivals(np, TARGET, 4, np.array([0, 20]), factory)
    assert len(made) == 1                                # same departures: no new run
