"""Programs of programs (`simulator.fabric.combine`): a pass turned by 90 degrees takes the
same cycles on the turned region, and both passes of a kernel share its cores."""
import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import generated_kernel, matmul_kernel
from compiler.target import wafer
from simulator.fabric.combine import Both, Transposed
from simulator.fabric.engine import run
from simulator.fabric.programs import program_for

TARGET = wafer("classroom")


def _generated(rows, cols, samples=3, e=24):
    values = np.random.default_rng(0).standard_normal((samples, e)).astype(np.float32)
    return program_for(generated_kernel("g", e, samples=samples), Mapping(rows, cols), TARGET,
                       {"out": values})


def test_a_transposed_program_runs_as_the_original_on_the_turned_region():
    plain, turned = _generated(2, 3), Transposed(_generated(2, 3))
    assert turned.region == (3, 2) and set(turned.streams) == {"N"} and set(turned.sinks) == {"E"}
    a, b = run(np, plain, TARGET), run(np, turned, TARGET)
    assert a.cycles == b.cycles
    np.testing.assert_array_equal(b.busy, a.busy.T)
    np.testing.assert_array_equal(turned.output(b)["out"], plain.reference()["out"])
    np.testing.assert_array_equal(turned.item_done(b), plain.item_done(a))


def _matmul(rows, cols, samples=3, k=16, n=12):
    rng = np.random.default_rng(1)
    kernel = matmul_kernel("fc", k, n, samples=samples)
    tensors = {"x": rng.standard_normal((samples, k)), "w": rng.standard_normal((k, n)),
               "dy": rng.standard_normal((samples, n))}
    return [program_for(kernel, Mapping(rows, cols), TARGET, tensors, pass_=p)
            for p in ("forward", "backward")]


def test_both_passes_share_the_cores_and_compute_both_results():
    alone = [run(np, p, TARGET) for p in _matmul(2, 2)]
    both = Both(dict(zip(("forward", "backward"), _matmul(2, 2))))
    assert both.colours == 4 and set(both.streams) == {"W", "N"} and set(both.sinks) == {"S", "E"}
    result = run(np, both, TARGET)
    got, want = both.output(result), both.reference()
    assert set(got) == {"forward y", "backward dx", "backward dw"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4)
    # one PE does both passes' work: the busiest core's is the sum, and the run no shorter
    np.testing.assert_array_equal(result.busy, alone[0].busy + alone[1].busy)
    assert max(a.cycles for a in alone) <= result.cycles <= sum(a.cycles for a in alone)


def test_parts_on_the_same_side_are_refused():
    with pytest.raises(ValueError, match="Transposed"):
        Both({"forward": _generated(2, 2), "backward": _generated(2, 2)})
