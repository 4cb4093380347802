"""The registry of fabric programs: keyed by kind and pass, with errors that name what exists."""
import dataclasses

import numpy as np
import pytest

from compiler import Mapping
from compiler.kernels import attention_kernel, matmul_kernel
from compiler.target import wafer
from simulator.fabric import PROGRAMS, program_for
from simulator.fabric.matmul import MatmulForward


def test_matmul_forward_is_registered_and_built_from_the_kernel():
    assert "forward" in PROGRAMS["matmul"]
    kernel = matmul_kernel("fc", 8, 6, samples=2, tokens=3)
    x = np.ones((2, 3, 8), np.float32)
    program = program_for(kernel, Mapping(2, 3), wafer("classroom"), {"x": x, "w": np.ones((8, 6))})
    assert isinstance(program, MatmulForward)
    assert program.items == 6 and program.region == (2, 3)      # every token is a row of x


def test_a_kind_or_pass_without_a_program_is_named():
    target = wafer("classroom")
    conv = dataclasses.replace(matmul_kernel(), kind="conv")
    with pytest.raises(NotImplementedError,
                       match="kind 'conv'.*kinds with one: \\['attention', 'generated', 'matmul'\\]"):
        program_for(conv, Mapping(1, 1), target, {})
    with pytest.raises(NotImplementedError, match="for forward only, no 'backward' pass"):
        program_for(attention_kernel("att", 2, 2, 4, 8), Mapping(1, 1), target, {}, pass_="backward")
    with pytest.raises(NotImplementedError, match="no 'dw' pass"):
        program_for(matmul_kernel(), Mapping(1, 1), target, {}, pass_="dw")
