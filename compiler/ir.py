"""The compiler's IR: one flat training-step graph of core-ATen ops, as frozen dataclasses.

In the spirit of JAX's jaxpr: values are named, every op lists the names it reads (`Ref`) and
writes, and the graph records which values are user inputs, parameters, dropout masks, the loss
and the gradient of each parameter. Passes are pure functions Graph -> Graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator


class IRError(ValueError):
    """The graph breaks an invariant `verify` checks."""


@dataclass(frozen=True)
class Ref:
    """A use of a named value inside an op's arguments."""
    name: str


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        short = {"float32": "f32", "float64": "f64", "int64": "i64", "bool": "b8"}
        return f"{short.get(self.dtype, self.dtype)}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Op:
    """One ATen call. `outputs` has one name per result (several for tuple-returning ops)."""
    op: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.outputs[0]

    @property
    def short(self) -> str:
        """`aten._log_softmax.default` -> `log_softmax`."""
        return self.op.split(".")[1].lstrip("_") if self.op.startswith("aten.") else self.op

    def refs(self) -> Iterator[str]:
        yield from _refs_in(self.args)
        yield from _refs_in(tuple(v for _, v in self.kwargs))


def _refs_in(items: tuple) -> Iterator[str]:
    for item in items:
        if isinstance(item, Ref):
            yield item.name
        elif isinstance(item, tuple):
            yield from _refs_in(item)


@dataclass(frozen=True)
class Graph:
    """A captured training step: forward, loss and backward (the optimizer is in the Plan)."""
    inputs: tuple[str, ...]
    params: tuple[tuple[str, str], ...]          # (value name, parameter fqn)
    buffers: tuple[tuple[str, str], ...]         # (value name, buffer fqn), read-only
    masks: tuple[tuple[str, float], ...]         # (value name, dropout p), in forward order
    ops: tuple[Op, ...]
    types: tuple[tuple[str, TensorType], ...]
    loss: str
    grads: tuple[tuple[str, str], ...]           # (parameter fqn, value name)
    meta: tuple[tuple[str, Any], ...] = field(default=())

    @cached_property
    def type_of(self) -> dict[str, TensorType]:
        return dict(self.types)

    @cached_property
    def producer(self) -> dict[str, Op]:
        return {out: op for op in self.ops for out in op.outputs}

    @cached_property
    def consumers(self) -> dict[str, list[Op]]:
        users: dict[str, list[Op]] = {}
        for op in self.ops:
            for name in dict.fromkeys(op.refs()):
                users.setdefault(name, []).append(op)
        return users

    @cached_property
    def param_fqn(self) -> dict[str, str]:
        return dict(self.params)

    @cached_property
    def tied(self) -> dict[str, str]:
        """Alias fqn -> the fqn of the parameter it is tied to (`passes.merge_tied`)."""
        return dict(dict(self.meta).get("tied", ()))

    @cached_property
    def buffer_updates(self) -> dict[str, str]:
        """Buffer fqn -> the value the step writes to it (BatchNorm's running statistics and
        batch count, `frontend._to_ir`); the trainer stores it after the step."""
        return dict(dict(self.meta).get("buffer_updates", ()))

    @property
    def placeholders(self) -> tuple[str, ...]:
        return (self.inputs + tuple(n for n, _ in self.params) + tuple(n for n, _ in self.buffers)
                + tuple(n for n, _ in self.masks))

    def replace(self, **changes) -> "Graph":
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields.update(changes)
        return Graph(**fields)


def verify(graph: Graph) -> Graph:
    """Check SSA form, def-before-use, types for every value read, and that outputs exist."""
    defined: set[str] = set()
    for name in graph.placeholders:
        if name in defined:
            raise IRError(f"placeholder {name!r} is defined twice")
        defined.add(name)
    used = {graph.loss, *(g for _, g in graph.grads), *graph.placeholders,
            *graph.buffer_updates.values()}
    for op in graph.ops:
        for ref in op.refs():
            if ref not in defined:
                raise IRError(f"op {op.name} ({op.op}) reads {ref!r} before it is defined")
            used.add(ref)
        for out in op.outputs:
            if out in defined:
                raise IRError(f"value {out!r} is defined twice")
            defined.add(out)
    # an output torch does not compute (None: `convolution_backward` without an input gradient)
    # has no type, and nothing may read it
    missing = [name for name in defined if name not in graph.type_of and name in used]
    if missing:
        raise IRError(f"values without a type: {missing[:5]}")
    for name in [graph.loss] + [g for _, g in graph.grads] + list(graph.buffer_updates.values()):
        if name not in defined:
            raise IRError(f"graph output {name!r} is never produced")
    fqns = set(graph.param_fqn.values())
    for fqn, _ in graph.grads:
        if fqn not in fqns:
            raise IRError(f"gradient for unknown parameter {fqn!r}")
    unknown = set(graph.buffer_updates) - {f for _, f in graph.buffers}
    if unknown:
        raise IRError(f"updates of unknown buffers {sorted(unknown)}")
    return graph


def _fmt(arg: Any) -> str:
    if isinstance(arg, Ref):
        return f"%{arg.name}"
    if isinstance(arg, tuple):
        return "[" + ", ".join(_fmt(a) for a in arg) + "]"
    return repr(arg)


def format_op(op: Op, types: dict[str, TensorType]) -> str:
    args = [_fmt(a) for a in op.args] + [f"{k}={_fmt(v)}" for k, v in op.kwargs]
    outs = ", ".join(f"%{o}: {types.get(o, '?')}" for o in op.outputs)
    return f"  {outs} = {op.op}({', '.join(args)})"


def format_graph(graph: Graph, kernel_of: "dict[str, str] | None" = None) -> str:
    """Text form, one op per line, optionally annotated with the kernel that owns each op."""
    t = graph.type_of
    head = [f"%{n}: {t[n]}" for n in graph.inputs]
    head += [f"%{n}: {t[n]} = param {fqn}" for n, fqn in graph.params]
    head += [f"%{n}: {t[n]} = buffer {fqn}" for n, fqn in graph.buffers]
    head += [f"%{n}: {t[n]} = dropout mask p={p}" for n, p in graph.masks]
    lines = ["graph(", *("  " + h for h in head), ") {"]
    for op in graph.ops:
        line = format_op(op, t)
        if kernel_of and op.name in kernel_of:
            line += f"    # {kernel_of[op.name]}"
        lines.append(line)
    grads = ", ".join(f"{fqn}=%{v}" for fqn, v in graph.grads)
    lines.append(f"  return loss=%{graph.loss}, grads({grads})")
    lines.append("}")
    return "\n".join(lines)
