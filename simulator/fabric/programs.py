"""The fabric programs of the kernel kinds: one registry, keyed by the kind's name and the pass.

A kind adds its fabric program here in one place: a module of `simulator/fabric/` registers a
builder with `@register(kind_name, pass_name)`; `program_for` finds it by the kernel's kind
(`compiler.kernels.Kernel.kind`), so nothing else switches on a kernel's kind. A builder is
called as `builder(kernel, mapping, target, tensors, harvest)` and returns a program: an object
with
  `region` (rows, cols), `colours`, `routes` (colours, 5, rows, cols) route bits, optionally
  `filters` (colours, 2, rows, cols) (`router.Router`),
  `priority` (colours in the order a free PE serves them), `reduction` (the colours whose
  tasks add partial sums), `streams` {side: (Wavelets (edge,
  length), lengths (edge,))} fed in over the edges, `sinks` {side: expected (edge,)},
  `bound` (cycles past which the run is a deadlock), and the methods `start(xp, datapath)`,
  `ready(colour, heads)`, `run(colour, heads, mask) -> pe.Work` (a task starts: its
  numerics and cost), `complete(colour, mask)` (tasks finish: what they made counts), `emit() -> (want, Wavelets)`,
  `emitted(mask)`, `finished()` (a boolean scalar array: all its cores are done),
  `output(run)` and `reference()` (dicts of named results: the fabric's and NumPy's), and
  optionally `state()` (device arrays the run hands back in `Run.extra`).

The parts of a step that are no kernel's pass, the replicas' all-reduce and update
(`allreduce`) and the routes between kernels (`routes`), register with `@register_part(name)`
and are found by `part(name)`, so the whole-step check (`pipeline`) asks for them by name.
"""
from __future__ import annotations

from collections.abc import Callable

PROGRAMS: dict[str, dict[str, Callable]] = {}
PARTS: dict[str, Callable] = {}


def register(kind: str, pass_: str):
    """Register `builder` as the fabric program of `kind`'s `pass_` ("forward", ...)."""
    def decorate(builder: Callable) -> Callable:
        PROGRAMS.setdefault(kind, {})[pass_] = builder
        return builder
    return decorate


def passes_of(kernel) -> dict[str, Callable]:
    """The fabric programs of `kernel`'s kind, by pass; an error naming the kinds that have one."""
    passes = PROGRAMS.get(kernel.kind)
    if passes is None:
        raise NotImplementedError(
            f"kernel {kernel.name!r} is of kind {kernel.kind!r}, which has no fabric program yet; "
            f"kinds with one: {sorted(PROGRAMS)} (register a builder in simulator/fabric/)")
    return passes


def program_for(kernel, mapping, target, tensors: dict, harvest: bool = True, pass_: str = "forward"):
    """The fabric program of `kernel`'s `pass_` on one replica of `mapping`."""
    passes = passes_of(kernel)
    if pass_ not in passes:
        raise NotImplementedError(
            f"kernel {kernel.name!r} (kind {kernel.kind}) has a fabric program for "
            f"{' and '.join(sorted(passes))} only, no {pass_!r} pass yet: check it with "
            f"pass_={sorted(passes)[0]!r}")
    return passes[pass_](kernel, mapping, target, tensors, harvest)


def register_part(name: str):
    """Register `builder` as the fabric program of the step's part `name` ("update", "route")."""
    def decorate(builder: Callable) -> Callable:
        PARTS[name] = builder
        return builder
    return decorate


def part(name: str) -> Callable:
    """The builder of the step's part `name`; an error naming the parts there are."""
    if name not in PARTS:
        raise NotImplementedError(f"no fabric program for the step's {name!r}; parts: {sorted(PARTS)}")
    return PARTS[name]
