"""Run an IR graph on an `xp` namespace: the numerics of the whole training step.

The graph is turned once into a flat list of (kernel function, argument template) steps, so a
step costs one Python call per op plus a dict lookup per operand. Every result is cast to the
dtype torch declared for it (`TensorType.dtype`, taken from `node.meta['val']`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from compiler.ir import Graph, Op, Ref

from .ops import OPS, UnsupportedOpError

_NOOP_VIEWS = {"aten.alias.default", "aten.detach.default", "aten.clone.default"}


def unsupported_ops(graph: Graph) -> list[Op]:
    """Ops of the graph that have no simulator kernel."""
    return [op for op in graph.ops if op.op not in OPS and op.op not in _NOOP_VIEWS]


@dataclass(frozen=True)
class _Step:
    fn: Callable | None          # None: the output is the (only) input, unchanged
    args: tuple
    kwargs: dict
    ref_slots: tuple[tuple[int, str], ...]
    nested: bool
    outputs: tuple[str, ...]
    dtypes: tuple[Any, ...]


def _has_nested_refs(args) -> bool:
    return any(isinstance(a, tuple) and any(isinstance(b, Ref) for b in a) for a in args)


def _resolve(value, env):
    if isinstance(value, Ref):
        return env[value.name]
    if isinstance(value, tuple):
        return tuple(_resolve(v, env) for v in value)
    return value


class Executor:
    def __init__(self, graph: Graph, xp):
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpError(missing[0].op)
        self.graph, self.xp = graph, xp
        types = graph.type_of
        self.steps = []
        for op in graph.ops:
            fn = None if op.op in _NOOP_VIEWS else OPS[op.op]
            args = tuple(list(op.args))
            slots = tuple((i, a.name) for i, a in enumerate(args) if isinstance(a, Ref))
            dtypes = tuple(np.dtype(types[o].dtype) if o in types else None for o in op.outputs)
            self.steps.append(_Step(fn, args, dict(op.kwargs), slots, _has_nested_refs(args),
                                    op.outputs, dtypes))

    def run(self, env: dict[str, Any]) -> dict[str, Any]:
        """Execute every op, adding its outputs to `env` (which holds the placeholders)."""
        xp = self.xp
        for st in self.steps:
            if st.nested:
                args = _resolve(st.args, env)
            else:
                args = list(st.args)
                for i, name in st.ref_slots:
                    args[i] = env[name]
            if st.fn is None:
                env[st.outputs[0]] = args[0]
                continue
            result = st.fn(xp, *args, **st.kwargs)
            if len(st.outputs) == 1:
                result = (result,)
            for name, value, dtype in zip(st.outputs, result, st.dtypes):
                if value is None:
                    continue
                if dtype is not None and getattr(value, "dtype", None) != dtype:
                    value = xp.asarray(value, dtype=dtype)
                env[name] = value
        return env
