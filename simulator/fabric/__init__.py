"""A cycle-level model of the fabric, vectorized over a region with `xp` (NumPy or CuPy): the
reference the analytic cost model (`compiler.cost`) is checked against.

`router` (five ports, colours, static routes, bounded queues, back-pressure, multicast), `pe`
(tasks activated by wavelets, SIMD and SRAM limits, activation cost), `engine` (the cycle loop,
edge streams and sinks), `programs` (the registry of each kernel kind's fabric program),
`chain` (a streamed operand times resident tiles, partial sums chained), `matmul`,
`elementwise` and `attention` (the matmul, generated and attention kinds' programs),
`allreduce` (the replicas' ring all-reduce and update), `routes` (a route between kernels),
`combine` (both passes on one region, a pass turned), `pipeline` (the whole step, the runs
joined by time), `operands` (a kernel's tensors read off a step) and `check` (cycles next to
the analytic model's).
"""
from . import allreduce, attention, elementwise, matmul, routes  # noqa: F401  (register them)
from .engine import Run, run
from .programs import PROGRAMS, program_for, register

__all__ = ["PROGRAMS", "Run", "program_for", "register", "run"]
