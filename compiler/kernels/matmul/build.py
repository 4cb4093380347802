"""Building a matmul kernel from the graph: one call per use of the weight.

A Linear layer's op group holds its forward matmul (`x @ w`), its dX matmul (`dY @ w^T`, absent
for the first layer, whose input needs no gradient) and its dW matmul (`x^T @ dY`). The kernel
streams x and dY for the simulator to count; a weight used at several recurrent steps (a
Universal Transformer's block) has one forward, one dX and one dW per step.
"""
from __future__ import annotations

import math

from ...ir import Graph, Op
from ...passes import MATMUL_OPS, VIEW_OPS, param_root
from ..base import Access, Kernel, LoopNest


def matmul_nest(samples: int, tokens: int, k: int, n: int) -> LoopNest:
    """`for b, t, i, j: out[b,t,j] += x[b,t,i] * w[i,j]`: w resident, x streamed along rows,
    partial sums chained along the unrolled reduction dimension i."""
    return LoopNest(dims=(("b", samples), ("t", tokens), ("i", k), ("j", n)),
                    accesses=(Access("x", ("b", "t", "i"), "stream_in"),
                              Access("w", ("i", "j"), "resident"),
                              Access("out", ("b", "t", "j"), "stream_out")),
                    row_dim="i", col_dim="j", reduce_dims=("i",))


def matmul_kernel(name: str = "fc", k: int = 64, n: int = 64, samples: int = 4, tokens: int = 1,
                  bias: bool = True, dx: bool = True) -> Kernel:
    """A Linear layer's kernel with weight (k in, n out), built by hand (no graph): streams
    named after the kernel, no dX pass when `dx` is False (a first layer)."""
    streams = (("x", f"{name}_x"), ("dy", f"{name}_dy")) + ((("dx", f"{name}_dx"),) if dx else ())
    params = (f"{name}.weight",) + ((f"{name}.bias",) if bias else ())
    return Kernel(name, "matmul", (f"{name}_op",), params, matmul_nest(samples, tokens, k, n),
                  streams, samples, k * n + (n if bias else 0))


def build(graph: Graph, name: str, ops: list[Op], context) -> Kernel | None:
    """The matmul kernel of an op group whose matmuls read a parameter, else None."""
    roots = context.roots
    matmuls = [o for o in ops if o.op in MATMUL_OPS and any(r in roots for r in o.refs())]
    if not matmuls:
        return None
    params = context.params_of(name, ops)
    forwards, rest = _split_at_loss(graph, matmuls)
    dxs = list(reversed(rest)) if len(rest) == len(forwards) else [None] * len(forwards)
    weight_grads = [o for o in ops if o.op in MATMUL_OPS and o not in matmuls]
    weight = _operands(forwards[0], roots)[1]
    k, n = graph.type_of[weight].shape[-2:]
    streams, tokens = (), 0
    for forward, dx in zip(forwards, dxs):
        x = _operands(forward, roots)[0]
        tokens += graph.type_of[x].shape[0] if len(graph.type_of[x].shape) == 2 else \
            math.prod(graph.type_of[x].shape[:-1])
        dy = _weight_gradient_dy(graph, x, weight_grads, len(forwards) == 1)
        if dy is None and dx is not None:
            dy = _operands(dx, roots)[0]
        streams += (("x", x),) + ((("dy", dy),) if dy else ()) + ((("dx", dx.name),) if dx else ())
    samples = context.samples
    nest = matmul_nest(samples, max(1, tokens // max(samples, 1)), k, n)
    return Kernel(name, "matmul", tuple(o.name for o in ops), params, nest, streams, samples,
                  context.param_numel(params))


def _operands(op: Op, roots: dict) -> tuple[str, str]:
    """(activation, weight) operands of a matmul whose weight is a view of a parameter."""
    a, b = [arg.name for arg in op.args[-2:]]
    return (a, b) if b in roots else (b, a)


def _strip_views(graph: Graph, name: str) -> str:
    op = graph.producer.get(name)
    while op is not None and op.op in VIEW_OPS:
        name = next(op.refs())
        op = graph.producer.get(name)
    return name


_ORDER_KEEPING = frozenset({"aten.alias.default", "aten.clone.default", "aten.detach.default"})


def _strip_transposes(graph: Graph, name: str) -> str:
    """The dW operand dY^T back to dY as the layer produced it ([tokens, n] or [B, T, n]): undo
    2-D transposes and copies, but not reshapes, which may hide a reordering (e.g. attention's
    heads, [B, H, T, dh] -> [B, T, H, dh] -> [B*T, d])."""
    op = graph.producer.get(name)
    while op is not None and (op.op in _ORDER_KEEPING or (
            op.op in ("aten.t.default", "aten.permute.default", "aten.transpose.int")
            and len(graph.type_of[op.name].shape) == 2)):
        name = next(op.refs())
        op = graph.producer.get(name)
    return name


def _split_at_loss(graph: Graph, matmuls: list[Op]) -> tuple[list[Op], list[Op]]:
    """(the matmuls on the weight before the loss: one forward per use, in forward order; the
    matmuls after it: one dX per use, in backward order). A weight shared by several steps (a
    Universal Transformer's block) has one forward and one dX matmul per step."""
    at = {op.name: i for i, op in enumerate(graph.ops)}
    loss_at = at[graph.producer[graph.loss].name]
    return ([m for m in matmuls if at[m.name] <= loss_at],
            [m for m in matmuls if at[m.name] > loss_at])


def _weight_gradient_dy(graph, x: str, weight_grads: list[Op], only_use: bool) -> str | None:
    """dY of the use whose input is `x`: the other operand of the dW matmul that reads x (of
    any dW matmul when the weight has one use and no dW reads x as such)."""
    root = _strip_views(graph, x)
    reads_x = [op for op in weight_grads
               if any(_strip_views(graph, a.name) == root for a in op.args[-2:])]
    dy = None
    for op in reads_x or (weight_grads if only_use else []):
        others = [a.name for a in op.args[-2:] if _strip_views(graph, a.name) != root]
        dy = _strip_transposes(graph, others[0]) if others else dy
    return dy


def weight_view(graph: Graph, kernel: Kernel):
    """(the weight's fqn, the view ops from the parameter to the forward matmul's weight
    operand), or None: how a mask on the parameter reaches the kernel's (K, N) weight."""
    roots, values = param_root(graph), dict(graph.params)
    ops = set(kernel.ops)
    forward = next((o for o in graph.ops if o.name in ops and o.op in MATMUL_OPS
                    and any(getattr(a, "name", None) in roots for a in o.args[-2:])), None)
    if forward is None:
        return None
    a, b = (arg.name for arg in forward.args[-2:])
    name, chain = (b if b in roots else a), []
    while name not in values and getattr(graph.producer.get(name), "op", None) in VIEW_OPS:
        chain.append(graph.producer[name])
        name = next(graph.producer[name].refs())
    return (values[name], tuple(reversed(chain))) if name in values else None
