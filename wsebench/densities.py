"""What a plan is sized for: the densities `wb.compile` assumes for each kernel's streamed
operands (the fraction of non-zeros in a matmul's x and dY, DESIGN.md "Sparsity").

    densities="auto"       (the default) "calibrate" when sparsity is configured, else "dense"
    densities="calibrate"  run the step's numerics once on the example batch and measure them
    densities="dense"      every kernel assumes `density` (1.0: dense); None means the same
    densities={name: (x, dY)}  given per kernel; the others assume `density`

Sparsity is configured when harvesting is on and something in the model makes zeros the wafer
can skip (`sources`): a ReLU, dropout, a drop rule or weight sparsity. A plan sized for its
real densities gives the kernels that stream zeros fewer cores, so the step is not paced by
kernels sized for work they never do; with harvesting off, zeros cost like any value, so the
plan is sized dense whatever the densities. An explicit `density` other than 1.0 is the user's
own assumption, which "auto" keeps.

"auto" keeps the calibrated plan only if it is not slower than the dense-sized one on the
example batch, both timed by the measurement (`calibrated`): the estimate sizes a kernel for
the mean density, while the wafer waits for each sample's busiest core, so on small kernels
(or unevenly spread zeros) the calibrated plan can measure slower. "calibrate" keeps it always.

The plan records what it assumed (`record`): its meta holds the densities' source and the
kernels it covers, which the compile report prints per kernel (calibrated, given or assumed),
and, where "auto" kept the dense-sized plan, both plans' measured cycles.
"""
from __future__ import annotations

import dataclasses

from compiler import ConfigError
from compiler.compile_report import DENSITY_CHECK, DENSITY_KERNELS, DENSITY_SOURCE

from .drop_op import OP_NAME
from .sparsity_report import RELU_OPS

POLICIES = ("auto", "calibrate", "dense")
SOURCE_WORDS = {"calibrate": "calibrated", "given": "given", "dense": "assumed"}


def sources(graph, sparsity) -> list[str]:
    """What in the captured model makes zeros the wafer harvests (empty: nothing does)."""
    ops = {op.op for op in graph.ops}
    found = [("ReLU", bool(ops & set(RELU_OPS))), ("dropout", bool(graph.masks)),
             ("drop rules", OP_NAME in ops), ("weight sparsity", bool(sparsity.weights))]
    return [name for name, present in found if present]


def resolve(densities, density: float, graph, sparsity) -> "str | dict":
    """`densities` as `compile` takes it -> "calibrate", "dense" or a dict of kernel name ->
    (x density, dY density); "auto" calibrates when sparsity is configured (module docstring)."""
    if densities is None:
        return "dense"
    if isinstance(densities, dict):
        return densities
    if not isinstance(densities, str) or densities not in POLICIES:
        raise ConfigError(f"densities must be one of {', '.join(map(repr, POLICIES))}, None or a "
                          f"dict of kernel name -> (x density, dY density), got {densities!r}")
    if densities != "auto":
        return densities
    configured = sparsity.harvest and density == 1.0 and sources(graph, sparsity)
    return "calibrate" if configured else "dense"


def calibrated(dense_plan, trainer, sized, x, y, keep_faster: bool):
    """The plan sized for the densities measured on batch (x, y) by `trainer` (which runs
    `dense_plan`); `sized(densities) -> Plan` compiles it. With `keep_faster`, the dense-sized
    plan stays where the calibrated one measures slower on that batch (module docstring)."""
    env = trainer.example_env(x, y)
    measured = trainer.context.densities(trainer.xp, env)
    plan = sized(measured)
    if keep_faster:
        cycles = trainer.example_cycles(plan, env), trainer.example_cycles(dense_plan, env)
        if cycles[0] > cycles[1]:
            check = (f"sized for the calibrated densities it measured {cycles[0]:,.0f} cycles on "
                     f"the example batch, sized dense {cycles[1]:,.0f}: kept dense")
            return record(dense_plan, "dense", (), check)
    return record(plan, "calibrate", measured)


def record(plan, how: str, kernels, check: str | None = None):
    """`plan` with its meta saying where its densities came from ("calibrate", "given" or
    "dense"), which kernels that covers (the rest assume `plan.density`) and, given `check`,
    why "auto" kept a dense-sized plan."""
    keys = (DENSITY_SOURCE, DENSITY_KERNELS, DENSITY_CHECK)
    meta = tuple(m for m in plan.meta if m[0] not in keys)
    meta += ((DENSITY_SOURCE, SOURCE_WORDS[how]), (DENSITY_KERNELS, tuple(sorted(kernels))))
    return dataclasses.replace(plan, meta=meta + (((DENSITY_CHECK, check),) if check else ()))
