"""The PE's datapath: an FMAC over n elements takes ceil(n / simd) SIMD cycles, more where the
SRAM ports are slower (two operands read, one written per element), plus the activation."""
import numpy as np

from compiler.cost import sram_factor
from compiler.target import wafer
from simulator.fabric.pe import Datapath


def test_fp16_lanes_exactly_use_the_sram_ports():
    """Hot Chips 2019: two 64-bit reads and one 64-bit write a cycle feed four FP16 lanes."""
    dp = Datapath(np, wafer("classroom"))
    work = dp.fmac(np, np.array([1, 4, 5, 16]))
    assert work.simd.tolist() == [1, 1, 2, 4]
    assert work.sram.tolist() == [0, 0, 0, 0]


def test_fp32_values_take_twice_the_sram_cycles_as_the_analytic_factor_says():
    target = wafer("classroom", precision="fp32")
    dp = Datapath(np, target)
    n = np.array([4, 8, 16])
    work = dp.fmac(np, n)
    assert ((work.simd + work.sram) == work.simd * sram_factor(target)).all()
    assert work.sram.tolist() == [1, 2, 4]


def test_a_task_costs_its_activation_only_where_it_runs():
    dp = Datapath(np, wafer("classroom", task_cycles=3))
    work = dp.task(np, dp.fmac(np, np.array([8, 8])), np.array([True, False]))
    assert work.simd.tolist() == [2, 0] and work.task.tolist() == [3, 0]


def test_an_operand_read_off_the_fabric_activates_no_task():
    """An add whose operand is a fabric-input DSD (a partial sum chain's `@fadds`, csl-examples
    gemv-06) runs its datapath cycles and no activation, where it runs."""
    dp = Datapath(np, wafer("classroom", task_cycles=3))
    work = dp.streamed(np, dp.fmac(np, np.array([1, 1])), np.array([True, False]))
    assert work.simd.tolist() == [1, 0] and work.task.tolist() == [0, 0]
