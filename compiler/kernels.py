"""The kernel library: group the graph's ops into kernels, each carrying a loop nest.

Three kinds (Hot Chips 2020, "Cerebras software": a library of hand-optimized kernels, and
kernels generated from loop nests):
- `matmul`: hand-optimized kernels for the matmul family (nn.Linear and friends). Loop nest
  `for b, i, j: out[b, j] += x[b, i] * w[i, j]`; `w` stays resident, `x` streams in along rows,
  partial sums are chained along the unrolled reduction dimension `i`.
- `attention`: hand-optimized scaled dot-product attention, forward and backward of one block
  (`passes.attention_regions`). Loop nest `for b, h, i, j, d: out[b,h,i,d] +=
  softmax_j(q.k)[b,h,i,j] * v[b,h,j,d]`, queries `i` unrolled over rows, keys `j` over
  columns (see `attention.py`).
- `generated`: any other op group, described by an element-wise loop nest `for b, e: ...` that the
  compiler unrolls over the fabric.
A kernel's MACs, memory per core and traffic are all derived from its nest (see `cost.py`).

A kernel whose weights are shared by recurrent steps (a Universal Transformer's block) is
called once per step: its `streams` hold one group per call, its matmul nest's token loop `t`
runs over every call's tokens (so cost, stash and MACs count them all), and an attention nest
gets a step loop `s`. The simulator sums the calls (`simulator.timing`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .ir import Graph, Op
from .passes import (MATMUL_OPS, VIEW_OPS, assign_kernels, attention_regions, is_activation_matmul,
                     is_elementwise, param_root, pipeline_order)
from .steps import markers


@dataclass(frozen=True)
class Access:
    tensor: str
    dims: tuple[str, ...]
    role: str            # "resident" | "stream_in" | "stream_out"


@dataclass(frozen=True)
class LoopNest:
    dims: tuple[tuple[str, int], ...]
    accesses: tuple[Access, ...]
    row_dim: str
    col_dim: str
    reduce_dims: tuple[str, ...] = ()
    flops_per_point: int = 2

    def extent(self, dim: str) -> int:
        return dict(self.dims)[dim]

    def __str__(self) -> str:
        loops = ", ".join(d for d, _ in self.dims)
        reads = [a for a in self.accesses if a.role != "stream_out"]
        out = next(a for a in self.accesses if a.role == "stream_out")
        body = " * ".join(f"{a.tensor}[{','.join(a.dims)}]" for a in reads)
        op = "+=" if self.reduce_dims else "="
        return f"for {loops}: {out.tensor}[{','.join(out.dims)}] {op} {body}"


LEAD_ROLE = {"matmul": "x", "attention": "probs", "generated": "out"}


@dataclass(frozen=True)
class Kernel:
    name: str
    kind: str                              # "matmul" | "attention" (hand-optimized) | "generated"
    ops: tuple[str, ...]
    params: tuple[str, ...]                # parameters updated in place by this kernel
    nest: LoopNest
    # (role, graph value) pairs the simulator measures, one group per call of the kernel, each
    # group opening with the kernel's lead role (LEAD_ROLE): a weight shared by S recurrent
    # steps is called S times, in forward order
    streams: tuple[tuple[str, str], ...]
    samples: int                           # the batch dimension of the step
    param_numel: int

    @property
    def calls(self) -> tuple[dict[str, str], ...]:
        """The streams of each call, in forward order."""
        lead, groups = LEAD_ROLE.get(self.kind), []
        for role, value in self.streams:
            if role == lead or not groups:
                groups.append({})
            groups[-1][role] = value
        return tuple(groups) or ({},)

    @property
    def stream(self) -> dict[str, str]:
        """The streams of the first call."""
        return self.calls[0]

    @property
    def steps(self) -> int:
        """How many times a sample goes through the kernel (1 unless its weights are shared)."""
        return len(self.calls)

    @property
    def computes_dx(self) -> bool:
        """The first layer needs no gradient for its input, so it skips the dX pass."""
        return "dx" in self.stream

    @property
    def dense_macs_per_sample(self) -> int:
        """Forward + backward (dX and dW) MACs for one sample at full density."""
        n = self.nest
        if self.kind == "matmul":
            passes = 3 if self.computes_dx else 2
            return passes * n.extent("t") * n.extent("i") * n.extent("j")
        if self.kind == "attention":   # Q K^T and P V forward, four as large backward
            return 6 * self.steps * n.extent("h") * n.extent("i") * n.extent("j") * n.extent("d")
        return n.extent("e") * n.flops_per_point


def build_kernels(graph: Graph) -> tuple[tuple[Kernel, ...], dict[str, str]]:
    """Kernels in pipeline order (first appearance in the forward pass) and op -> kernel."""
    kernel_of = assign_kernels(graph)
    order = pipeline_order(graph, kernel_of)
    samples = graph.type_of[graph.inputs[0]].shape[0] if graph.type_of[graph.inputs[0]].shape else 1
    attention = set(attention_regions(graph))
    spans = _forward_spans(graph)
    kernels = tuple(_make_kernel(graph, name, [op for op in graph.ops if kernel_of[op.name] == name],
                                 samples, attention, spans) for name in order)
    return kernels, kernel_of


def _forward_spans(graph: Graph) -> dict[str, int]:
    """Forward op -> the marked span it lies in (`compiler.steps`); empty without markers."""
    found = markers(graph)
    if not found:
        return {}
    loss_at = next(i for i, op in enumerate(graph.ops) if graph.loss in op.outputs)
    return {op.name: found.segment[op.name] for op in graph.ops[:loss_at + 1]}


def _make_kernel(graph: Graph, name: str, ops: list[Op], samples: int, attention=(),
                 spans=None) -> Kernel:
    roots = param_root(graph)
    params = tuple(dict.fromkeys(roots[o.name] for o in ops if o.name in graph.param_fqn
                                 or (o.op in VIEW_OPS and o.name in roots)))
    params += tuple(f for v, f in graph.params if f.rsplit(".", 1)[0] == name and f not in params)
    param_numel = sum(graph.type_of[v].numel for v, f in graph.params if f in params)
    matmuls = [o for o in ops if o.op in MATMUL_OPS and any(r in roots for r in o.refs())]
    if matmuls:
        return _matmul_kernel(graph, name, ops, params, matmuls, samples, param_numel)
    if name in attention:
        return _attention_kernel(graph, name, ops, samples)
    return _generated_kernel(graph, name, ops, params, samples, param_numel, spans or {})


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


def _matmul_kernel(graph, name, ops, params, matmuls, samples, param_numel) -> Kernel:
    """One call per use of the weight: its forward matmul, its dX matmul (absent for the first
    layer) and its dW, the matmul on two activations whose operand that is not x is dY. Backward
    runs the uses in reverse, so the last dX belongs to the first forward."""
    roots = param_root(graph)
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
    nest = LoopNest(dims=(("b", samples), ("t", max(1, tokens // max(samples, 1))), ("i", k), ("j", n)),
                    accesses=(Access("x", ("b", "t", "i"), "stream_in"),
                              Access("w", ("i", "j"), "resident"),
                              Access("out", ("b", "t", "j"), "stream_out")),
                    row_dim="i", col_dim="j", reduce_dims=("i",))
    return Kernel(name, "matmul", tuple(o.name for o in ops), params, nest, streams, samples,
                  param_numel)


def _generated_kernel(graph, name, ops, params, samples, param_numel, spans=None) -> Kernel:
    """One call per marked span its forward work lies in (a shared block's layer norm is called
    once per recurrent step), streaming the first full-width output of each; one call without
    markers."""
    work = [o for o in ops if o.op not in VIEW_OPS]
    sizes = [graph.type_of[out].numel for o in work for out in o.outputs if out in graph.type_of]
    widest = max(sizes, default=1)
    per_sample = max(1, math.ceil(widest / max(samples, 1)))
    # scalar bookkeeping (label counts, the mean's divisor) is not per-element work
    full_width = [o for o in work if any(graph.type_of[out].numel == widest
                                         for out in o.outputs if out in graph.type_of)]
    main = next((o for o in work if not is_elementwise(o)), work[0] if work else ops[0])
    per_span = {}
    for o in full_width:
        if o.name in (spans or {}):
            per_span.setdefault(spans[o.name], o.outputs[0])
    streams = tuple(("out", v) for v in per_span.values()) if len(per_span) > 1 else \
        (("out", main.outputs[0]),)
    nest = LoopNest(dims=(("b", samples), ("e", per_sample)),
                    accesses=(Access("in", ("b", "e"), "stream_in"),
                              Access("out", ("b", "e"), "stream_out")),
                    row_dim="e", col_dim="e", flops_per_point=max(1, len(full_width)))
    return Kernel(name, "generated", tuple(o.name for o in ops), params, nest, streams, samples,
                  param_numel)


def _attention_kernel(graph, name, ops, samples) -> Kernel:
    """Each softmax of the block (one per step when the block is shared by recurrent steps)
    gives a call; the first gives the sequence length L (its last two dims) and the heads (the
    rest, per sample); the Q K^T matmul that feeds it gives the head dim. The softmax output P
    is the stream the simulator reads the real tokens from (pad keys get exactly 0)."""
    roots = param_root(graph)
    softmaxes = [o for o in ops if o.op == "aten._softmax.default"]
    softmax = softmaxes[0]
    shape = graph.type_of[softmax.name].shape
    length = shape[-1]
    heads = max(1, math.prod(shape[:-2]) // max(samples, 1))
    at = ops.index(softmax)
    scores = [o for o in ops[:at] if is_activation_matmul(o, roots)
              and graph.type_of[o.name].shape[-2:] == (shape[-2], length)]
    head_dim = graph.type_of[scores[-1].args[0].name].shape[-1]
    return attention_kernel(name, samples, heads, length, head_dim, tuple(o.name for o in ops),
                            tuple(o.name for o in softmaxes))


def attention_kernel(name: str, samples: int, heads: int, length: int, head_dim: int,
                     ops: tuple[str, ...] = (), probs: str | tuple[str, ...] = "probs") -> Kernel:
    """An attention kernel of `heads` x `head_dim` over sequences of `length` (padded) tokens;
    `probs` names the softmax output the simulator reads the real tokens from, one per call
    (a tuple when recurrent steps share the block)."""
    probs = (probs,) if isinstance(probs, str) else tuple(probs)
    steps = (("s", len(probs)),) if len(probs) > 1 else ()
    nest = LoopNest(dims=(("b", samples),) + steps + (("h", heads), ("i", length), ("j", length),
                                                     ("d", head_dim)),
                    accesses=(Access("softmax_j(q.k)", ("b", "h", "i", "j"), "stream_in"),
                              Access("v", ("b", "h", "j", "d"), "stream_in"),
                              Access("out", ("b", "h", "i", "d"), "stream_out")),
                    row_dim="i", col_dim="j", reduce_dims=("j",))
    return Kernel(name, "attention", ops, (), nest, tuple(("probs", p) for p in probs), samples, 0)
