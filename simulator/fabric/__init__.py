"""A cycle-level model of the fabric, vectorized over a region with `xp` (NumPy or CuPy): the
reference the analytic cost model (`compiler.cost`) is checked against.

`router` (five ports, colours, static routes, bounded queues, back-pressure, multicast), `pe`
(tasks activated by wavelets, SIMD and SRAM limits, activation cost), `engine` (the cycle loop,
edge streams and sinks), `programs` (the registry of each kernel kind's fabric program),
`chain` (a streamed operand times resident tiles, partial sums chained), `matmul` and
`elementwise` (the matmul and generated kinds' programs), `operands` (a kernel's tensors read off
a step) and `check` (cycles next to the analytic model's).
"""
from . import allreduce, elementwise, matmul, routes  # noqa: F401  (register the programs)
from .engine import Run, run
from .programs import PROGRAMS, program_for, register

__all__ = ["PROGRAMS", "Run", "program_for", "register", "run"]
