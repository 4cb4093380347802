"""`wb.fabric.check`: one pass of one kernel of a compiled session run on the cycle-level fabric model
(`simulator.fabric`), its cycles next to the analytic model's on the same tensors (the
measurement's formulas), the static estimate's (the plan's assumed densities) and the step's
measured time, with where they disagree: compute, SRAM, task activation, partial-sum reduction,
link, queueing and fill.

    s = wb.compile(...); s.step(x, y)
    wb.fabric.check(s, kernel="fc1", samples=2)
    wb.fabric.check(s, samples=4)        # the whole step: every kernel, routes and update
"""
from __future__ import annotations

from compiler import ConfigError
from simulator.fabric import PROGRAMS
from simulator.fabric.check import Comparison, StepComparison, compare, compare_step
from simulator.fabric.operands import operands
from simulator.fabric.programs import passes_of


def check(session, kernel: str | None = None, samples: int = 2, pass_: str = "forward",
          depth: int = 4, show: bool = True) -> Comparison | StepComparison:
    """Run `kernel`'s `pass_` ("forward" or "backward": dX and dW) for the first `samples`
    samples of the session's last step on the cycle-level model, on the session's backend, and
    print the comparison (`show`); with no kernel, the whole step (every kernel forward and
    backward, the routes between them and the update, `simulator.fabric.pipeline`) next to the
    analytic step on the same samples, the static estimate and the measured step.
    `depth`: wavelets per queue. The weights are the session's current ones (after the step's
    update); the streamed values, whose zeros set the timing, are the step's."""
    plan, trainer = session.plan, session._trainer
    if kernel is None:
        return _check_step(session, samples, depth, show)
    name = kernel
    if name not in plan.kernel:
        raise ConfigError(f"no kernel {name!r} in this plan; kernels: {[k.name for k in plan.kernels]}")
    k = plan.kernel[name]
    passes_of(k)
    tensors = step_operands(session, [k], samples)[name]
    result = compare(k, plan.mapping[name], plan.target, tensors, samples, pass_, plan.harvest,
                     plan.density_of(name), trainer.xp, depth)
    timing = next((t for t in trainer.last_timing.kernels if t.name == name), None)
    if show:
        print(result.table())
        if timing is not None:
            measured = float(timing.sample_cycles[:samples].sum())
            print(f"  measured this step (forward + backward, {samples} sample(s)): "
                  f"{measured:.0f} cycles")
    return result


def step_operands(session, kernels, samples: int) -> dict:
    """{kernel name: its operands by role} for the first `samples` samples of the session's
    last step (`simulator.fabric.operands`): what the fabric model streams."""
    trainer = session._trainer
    kept = getattr(trainer.executor, "values", None) or {}
    if trainer.last_timing is None or not kept:
        raise ConfigError("the fabric model streams the tensors of the session's last step: run "
                          "session.step(x, y) (or train) first")
    return {k.name: operands(trainer.xp, session.plan.graph, k, kept, trainer.params, samples)
            for k in kernels}


def _check_step(session, samples: int, depth: int, show: bool) -> StepComparison:
    plan, trainer = session.plan, session._trainer
    missing = [k.name for k in plan.kernels
               if not {"forward", "backward"} <= set(PROGRAMS.get(k.kind, ()))]
    if missing:
        raise ConfigError(f"kernels {missing} have no forward and backward fabric programs, so the "
                          "whole step cannot run; kinds with both: "
                          f"{sorted(k for k, p in PROGRAMS.items() if {'forward', 'backward'} <= set(p))}"
                          " (check a kernel alone with kernel=...)")
    tensors = step_operands(session, plan.kernels, samples)
    result = compare_step(plan, tensors, samples, trainer.xp, depth, trainer.last_timing.cycles)
    if show:
        print(result.table())
    return result
