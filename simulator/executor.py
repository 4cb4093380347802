"""Run an IR graph on an `xp` namespace: the numerics of the whole training step.

The graph is turned once into a flat list of steps, and everything about an op that the IR already
knows is settled then rather than on every run: each op's tensor arguments have a static type
(`TensorType`, from `node.meta['val']`), so kernels that can (`simulator.ops.specialize`) do their
dtype promotion, axis normalisation and constant building at construction and leave a call that
takes just the tensors. The other ops run their general kernel with the argument template filled
in. Either way each result is checked against the dtype torch declared for it and cast if needed,
so both paths give the same arrays.

The step list then becomes one generated Python function, straight-line code with a line per
step, rather than a loop that dispatches on each step's kind: for the MLP's ~90 ops the loop's
own bookkeeping (unpacking a step, building its argument list, the checks) cost about as much as
the small kernels themselves, and the fixed cost per op is what the step's host time is made of.

Given the values its caller reads after a run (`keep`), the generated code drops every other
value from `env` right after its last use, as torch frees activations once the backward has
used them: a step then holds at most its live values, not every intermediate of the graph.
It then also leaves out the steps whose results nobody reads, and (NumPy) lets an elementwise
step write its result over an input that dies there when no other value sees that array, so
a step allocates fewer fresh arrays (on a VM, first-touched memory costs more than the math).
A GELU hands the erf it computes on to its decomposed backward, which would compute it again.
"""
from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

from compiler.ir import Graph, Op, Ref

from .ops import KERNELS, OPS, Meta, UnsupportedOpError, specialize
from .ops.pointwise import gelu_and_erf, is_gelu_erf_input
from .ops.registry import constant

_NOOP_VIEWS = {"aten.alias.default", "aten.detach.default", "aten.clone.default"}

_FAST, _ALIAS, _CONST, _GENERAL = 0, 1, 2, 3    # step kinds


class _Step(NamedTuple):
    """One op, ready to run. ``_FAST``: ``call(*env[names])``. ``_ALIAS``: the output is ``env[names[0]]``.
    ``_CONST``: ``call`` is the output itself, computed at construction. ``_GENERAL``:
    ``call(xp, *args, **kwargs)`` with the ``Ref``s in ``args``/``kwargs`` looked up in ``env``."""
    kind: int
    call: Any
    names: tuple[str, ...]
    outputs: tuple[str, ...]
    dtypes: tuple[Any, ...]
    args: tuple = ()
    kwargs: dict | None = None


def unsupported_ops(graph: Graph) -> list[Op]:
    """Ops of the graph that have no simulator kernel."""
    return [op for op in graph.ops if op.op not in OPS and op.op not in _NOOP_VIEWS]


def _has_refs(value) -> bool:
    return isinstance(value, Ref) or (isinstance(value, tuple) and any(_has_refs(v) for v in value))


def _refs(value):
    """The names of the `Ref`s in an op argument (nested in tuples too)."""
    if isinstance(value, Ref):
        yield value.name
    elif isinstance(value, tuple):
        for v in value:
            yield from _refs(v)


def _reads(step) -> list[str]:
    """The values a step reads from `env`."""
    if step.kind == _GENERAL:
        return [n for v in step.args + tuple((step.kwargs or {}).values()) for n in _refs(v)]
    return list(step.names)


def _gelu_erfs(graph: Graph) -> dict[str, str]:
    """GELU output -> the output of a later ``erf(mul(x, M_SQRT1_2))`` of the GELU's own float
    input ``x`` (its decomposed backward, `is_gelu_erf_input`): the GELU step computes that erf
    anyway (`gelu_and_erf`) and hands it on, so the erf, a costly ufunc, runs once, not twice.
    The erf is then held from the forward to the backward, as the GELU's input already is."""
    types, producer = graph.type_of, graph.producer
    gelus: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        if op.op == "aten.gelu.default" and len(op.args) == 1 and isinstance(op.args[0], Ref) and \
                dict(op.kwargs).get("approximate", "none") == "none":
            gelus.setdefault(op.args[0].name, i)
    shared: dict[str, str] = {}
    for i, op in enumerate(graph.ops):
        mul = producer.get(op.args[0].name) if op.op == "aten.erf.default" and op.args and \
            isinstance(op.args[0], Ref) else None
        if mul is None or mul.op != "aten.mul.Tensor" or mul.kwargs or not isinstance(mul.args[0], Ref):
            continue
        x, gelu = mul.args[0].name, gelus.get(mul.args[0].name)
        if gelu is None or gelu > i:
            continue
        same = {types.get(n) for n in (x, mul.outputs[0], op.outputs[0], graph.ops[gelu].outputs[0])}
        if len(same) != 1 or None in same:
            continue
        dtype = next(iter(same)).dtype
        if dtype in ("float32", "float64") and is_gelu_erf_input(dtype, mul.args[1]):
            shared.setdefault(graph.ops[gelu].outputs[0], op.outputs[0])
    return shared


def _resolve(value, env):
    if isinstance(value, Ref):
        return env[value.name]
    if isinstance(value, tuple):
        return tuple(_resolve(v, env) for v in value)
    return value


class Executor:
    def __init__(self, graph: Graph, xp, keep=None):
        """`keep`: the values a run's caller reads from its `env` (the placeholders are always
        kept); every other value is dropped after its last use. None keeps every value."""
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpError(missing[0].op)
        self.graph, self.xp = graph, xp
        self.keep = None if keep is None else frozenset(keep)
        types = graph.type_of
        self._placeholders = tuple((name, np.dtype(types[name].dtype), types[name].shape)
                                   for name in graph.placeholders if name in types)
        self.constants: dict[str, Any] = {}    # values computed once, at construction
        shared = _gelu_erfs(graph)
        handed_on = set(shared.values())
        self.steps = [self._gelu_step(op, shared[op.outputs[0]], types) if op.outputs[0] in shared
                      else self._compile(op, types) for op in graph.ops if op.outputs[0] not in handed_on]
        self._run_steps = self._generate()

    def retain(self, names) -> None:
        """Keep `names` too after a run (when values are dropped at all)."""
        if self.keep is not None and not set(names) <= self.keep:
            self.keep = self.keep | frozenset(names)
            self._run_steps = self._generate()

    def _live(self) -> list[bool]:
        """Per step, whether it runs: some output of it is read by a later step that runs or by
        the caller (`keep`). Steps are pure, so one whose outputs nobody reads is left out (e.g.
        the ``x * M_SQRT1_2`` whose erf a GELU hands on, `_gelu_erfs`). All run when every value
        is kept."""
        if self.keep is None:
            return [True] * len(self.steps)
        needed = set(self.keep) | set(self.graph.placeholders)
        live = [False] * len(self.steps)
        for i in range(len(self.steps) - 1, -1, -1):
            step = self.steps[i]
            if any(name in needed for name in step.outputs):
                live[i] = True
                needed.update(_reads(step))
        return live

    def _dropped_after(self, live: list[bool]) -> list[tuple[str, ...]]:
        """Per step, the values whose last use it is and that no caller reads after the run
        (`live`: the steps that run)."""
        if self.keep is None:
            return [()] * len(self.steps)
        last: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if not live[i]:
                continue
            for name in step.outputs:
                last.setdefault(name, i)
            for name in _reads(step):
                last[name] = i
        kept = self.keep | set(self.graph.placeholders)
        out: list[list[str]] = [[] for _ in self.steps]
        for name, i in last.items():
            if name not in kept:
                out[i].append(name)
        return [tuple(sorted(names)) for names in out]

    def _compile(self, op: Op, types) -> _Step:
        outputs = op.outputs
        dtypes = tuple(np.dtype(types[o].dtype) if o in types else None for o in outputs)
        if op.op in _NOOP_VIEWS:
            return _Step(_ALIAS, None, (op.args[0].name,), outputs, dtypes)
        kwargs = dict(op.kwargs)
        top_refs = all(not isinstance(a, tuple) or not _has_refs(a) for a in op.args)
        if top_refs and not _has_refs(tuple(kwargs.values())):
            names = tuple(a.name for a in op.args if isinstance(a, Ref))
            if all(n in types for n in names):
                metas = tuple(Meta(types[a.name].shape, types[a.name].dtype, self.constants.get(a.name))
                              if isinstance(a, Ref) else a for a in op.args)
                call = specialize(self.xp, op.op, metas, kwargs)
                if call is not None and not names and len(outputs) == 1:
                    # no tensor inputs: a constant (scalar_tensor), computed now and shared by every run
                    value = constant(self._fix(call(), dtypes[0]), self.xp)
                    self.constants[outputs[0]] = value
                    return _Step(_CONST, value, (), outputs, dtypes)
                if call is not None:
                    return _Step(_FAST, call, names, outputs, dtypes)
        return _Step(_GENERAL, KERNELS[op.op], (), outputs, dtypes, op.args, kwargs)

    def _gelu_step(self, op: Op, erf_name: str, types) -> _Step:
        """A GELU that also gives its erf, as the value `erf_name` (`_gelu_erfs`)."""
        outputs = (op.outputs[0], erf_name)
        xp = self.xp
        return _Step(_FAST, lambda x: gelu_and_erf(xp, x), (op.args[0].name,), outputs,
                     tuple(np.dtype(types[o].dtype) for o in outputs))

    @staticmethod
    def _in_place_lines(i: int, step: _Step, reuse: str) -> list[str]:
        """Step `i` writing into its dying input `reuse` when nothing else holds that array: it is
        taken out of ``env`` first, and then only the local ``a`` and getrefcount's argument hold
        it (``r``, which may hold the previous result, is cleared; a view would hold its base).
        An elementwise ufunc writing over its own input gives the same values."""
        args = ", ".join("a" if n == reuse else f"env[{n!r}]" for n in step.names)
        return ["    r = None", f"    a = env.pop({reuse!r})",
                "    if type(a) is ndarray and a.base is None and a.flags.writeable and getrefcount(a) == 2:",
                f"        r = f{i}({args}, out=a)", "    else:", f"        r = f{i}({args})", "    a = None"]

    def _fix(self, value, dtype):
        """``value`` as an ``xp`` array of ``dtype`` (kernels may return scalars or another dtype)."""
        if type(value) is not self.xp.ndarray or (dtype is not None and value.dtype != dtype):
            value = self.xp.asarray(value, dtype=dtype)
        return value

    def _check_placeholders(self, env: dict[str, Any]) -> None:
        """Placeholders must have the shapes the graph was compiled for; other dtypes are cast to its own."""
        xp = self.xp
        for name, dtype, shape in self._placeholders:
            value = env[name]
            if tuple(value.shape) != shape:
                raise ValueError(f"graph input {name!r} has shape {tuple(value.shape)}; the graph was "
                                 f"compiled for {shape}")
            if value.dtype != dtype:
                env[name] = xp.asarray(value, dtype=dtype)

    def run(self, env: dict[str, Any]) -> dict[str, Any]:
        """Execute every op, adding its outputs to `env` (which holds the placeholders)."""
        self._check_placeholders(env)
        return self._run_steps(env)

    def _general(self, step: _Step, env: dict[str, Any]):
        """A ``_GENERAL`` step's kernel on its argument template, with the ``Ref``s looked up."""
        kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()} if step.kwargs else {}
        return step.call(self.xp, *_resolve(step.args, env), **kwargs)

    def _store(self, env: dict[str, Any], result, step: _Step) -> None:
        """Put a kernel's result into `env`: arrays of the declared dtypes, None outputs left out."""
        if len(step.outputs) == 1 and not isinstance(result, (tuple, list)):
            env[step.outputs[0]] = self._fix(result, step.dtypes[0])
            return
        for name, value, dtype in zip(step.outputs, result, step.dtypes):
            if value is not None:
                env[name] = self._fix(value, dtype)

    def _generate(self):
        """``run_steps(env)``: the step list as straight-line code (see the module doc).

        Each step reads its inputs from ``env`` and writes its outputs there, exactly as a loop over
        the steps would. The common case, one output that already is an array of the declared
        dtype, is stored inline; anything else (scalars, tuples, another dtype) goes through
        ``_store``, so both give the same ``env``. The inline test compares dtypes by identity
        (NumPy's built-in dtypes are singletons): an equal dtype that is another object takes the
        ``_store`` path, which keeps the array as it is.
        """
        names = {"ndarray": self.xp.ndarray, "_store": self._store, "_general": self._general,
                 "getrefcount": sys.getrefcount}
        lines = ["def run_steps(env):"]
        live = self._live()
        dropped = self._dropped_after(live)
        for i, step in enumerate(self.steps):
            if live[i]:
                lines.extend(self._step_lines(i, step, names, self._reusable(step, dropped[i])))
            lines.extend(f"    env.pop({name!r}, None)" for name in dropped[i])
        lines.append("    return env")
        exec(compile("\n".join(lines), "<wsebench executor steps>", "exec"), names)  # noqa: S102
        return names["run_steps"]

    def _reusable(self, step: _Step, dropped: tuple[str, ...]) -> str | None:
        """The input whose buffer an elementwise step may write its result into (NumPy): one that
        dies at this step (`dropped`) and has the result's static shape and dtype, every input
        of that dtype, and a call that takes ``out=`` as a ufunc does. Whether the array is
        really free (no view of it, no other holder) is checked when the step runs."""
        call = step.call
        takes_out = getattr(call, "elementwise_out", False) or (
            isinstance(call, np.ufunc) and call.signature is None and call.nout == 1
            and call.nin == len(step.names))
        if self.xp is not np or step.kind != _FAST or len(step.outputs) != 1 or not takes_out:
            return None
        types = self.graph.type_of
        result = types.get(step.outputs[0])
        if result is None or any(n not in types or types[n].dtype != result.dtype for n in step.names):
            return None
        return next((n for n in step.names if n in dropped and types[n] == result), None)

    def _step_lines(self, i: int, step: _Step, names: dict, reuse: str | None = None) -> list[str]:
        """The generated lines of step `i` (see `_generate`), its callables put in `names`.
        `reuse`: the dying input the result may be written into (`_reusable`)."""
        out = repr(step.outputs[0])
        if step.kind == _ALIAS:
            return [f"    env[{out}] = env[{step.names[0]!r}]"]
        if step.kind == _CONST:
            names[f"c{i}"] = step.call
            return [f"    env[{out}] = c{i}"]
        names[f"f{i}"], names[f"s{i}"], names[f"d{i}"] = step.call, step, step.dtypes[0]
        if reuse is not None:
            lines = self._in_place_lines(i, step, reuse)
        elif step.kind == _FAST:
            lines = [f"    r = f{i}({', '.join(f'env[{n!r}]' for n in step.names)})"]
        else:
            lines = [f"    r = _general(s{i}, env)"]
        if len(step.outputs) != 1:
            return lines + [f"    _store(env, r, s{i})"]
        dtype_ok = "" if step.dtypes[0] is None else f" and r.dtype is d{i}"
        return lines + [f"    if type(r) is ndarray{dtype_ok}:", f"        env[{out}] = r",
                        "    else:", f"        _store(env, r, s{i})"]
