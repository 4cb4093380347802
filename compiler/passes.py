"""Pure graph passes, run as a straight pipeline (see `PIPELINE`), and `merge_tied`, which
the frontend runs on every capture (it needs the model's tied names).

1. `rewrite_dropout`: `native_dropout(x, p, train)` becomes a multiply by a mask *input*, so the
   host draws masks (and a test can feed the masks torch drew).
2. `assign_kernels`: every op gets a kernel. Ops that touch a parameter, and the ops that produce
   its gradient, belong to the module that owns the parameter, so a layer's forward, backward
   and update share one region of cores (DESIGN.md, "group ops by the weights they touch").
   Attention (a softmax between two activation x activation matmuls) becomes one kernel with
   its backward (`attention_regions`). Element-wise ops fuse into a neighbouring kernel; a
   reduction over a norm's or embedding's output joins it (its backward's row sums); any other
   op starts a generated kernel named after the op. The `running` markers (`compiler.steps`)
   do no work: they join the kernel that feeds them.
   A weight used at several steps (a Universal Transformer's shared block) keeps every use,
   with the adds that accumulate its gradient, in its one kernel, and the attention regions
   of the same projections are one kernel: the block is placed once and the data goes
   through it once per step.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Op, Ref, TensorType, verify
# wsebench's drop-small op (wsebench/drop_op.py) filters, per sample, the values its producer is
# about to send: it runs on the producer's cores, like an element-wise op (SENDER_OPS).
from .op_names import MARKER_OPS, SENDER_OPS

VIEW_OPS = frozenset({
    "aten.view.default", "aten.permute.default", "aten.t.default", "aten.alias.default",
    "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.expand.default",
    "aten.reshape.default", "aten._unsafe_view.default", "aten.clone.default",
    "aten.detach.default", "aten.transpose.int",
})
MATMUL_OPS = frozenset({"aten.mm.default", "aten.addmm.default", "aten.bmm.default"})
# Ops whose outputs are a pure function of one element of each input (or constants).
ELEMENTWISE_PREFIXES = (
    "relu", "gelu", "tanh", "sigmoid", "threshold_backward", "erf", "exp", "log", "sqrt", "rsqrt",
    "neg", "abs", "pow", "add", "sub", "mul", "div", "where", "le", "lt", "gt", "ge", "eq", "ne",
    "logical_not", "_to_copy", "scalar_tensor", "full_like", "zeros_like", "ones_like", "full",
    "clamp", "maximum", "minimum", "native_dropout_backward", "sign", "reciprocal",
    "tanh_backward", "sigmoid_backward", "gelu_backward", "fill",
)


def is_elementwise(op: Op) -> bool:
    return op.op.startswith("aten.") and op.op.split(".")[1] in ELEMENTWISE_PREFIXES


def dropout_scale(p: float) -> float:
    """Eager torch scales kept values by float32(1) / float32(1 - p), which for some p is one
    ulp away from float32(1 / (1 - p)); use eager's rounding."""
    if p >= 1.0:  # ATen drops everything and scales by 0
        return 0.0
    return float(np.float32(1.0) / np.float32(1.0 - p))


def rewrite_dropout(graph: Graph) -> Graph:
    """Replace each native_dropout with `x * float(mask) * scale` over a new mask input, and
    give the backward's scaling of the same mask eager's rounding of the scale too."""
    ops, masks, types = [], list(graph.masks), dict(graph.types)
    mask_p: dict[str, float] = {}          # mask and its float copies -> p
    for op in graph.ops:
        if op.op != "aten.native_dropout.default":
            ops.append(_rescale_backward(op, mask_p))
            continue
        x, p, train = (list(op.args) + [True])[:3]
        out, mask_out = op.outputs
        p = float(p)
        if train is False or p == 0.0:  # ATen reads train=None as training
            ops += [Op("aten.alias.default", (x,), (), (out,)),
                    Op("aten.ones_like.default", (x,), (("dtype", "bool"),), (mask_out,))]
            continue
        masks.append((mask_out, p))
        mask_p[mask_out] = p
        types[mask_out] = TensorType(types[out].shape, "bool")
        as_float, scaled = f"{out}_maskf", f"{out}_scale"
        types[as_float] = types[scaled] = TensorType(types[out].shape, types[out].dtype)
        ops += [Op("aten._to_copy.default", (Ref(mask_out),), (("dtype", types[out].dtype),), (as_float,)),
                Op("aten.mul.Tensor", (Ref(as_float), dropout_scale(p)), (), (scaled,)),
                Op("aten.mul.Tensor", (x, Ref(scaled)), (), (out,))]
    return verify(graph.replace(ops=tuple(ops), masks=tuple(masks), types=tuple(types.items())))


def _rescale_backward(op: Op, mask_p: dict[str, float]) -> Op:
    """Backward multiplies by the mask times the literal 1/(1-p): swap in eager's scale."""
    refs = [r for r in op.refs() if r in mask_p]
    if not refs:
        return op
    p = mask_p[refs[0]]
    if op.op == "aten._to_copy.default":
        mask_p[op.name] = p
        return op
    if op.op not in ("aten.mul.Tensor", "aten.native_dropout_backward.default"):
        return op
    exact = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    args = tuple(dropout_scale(p) if isinstance(a, float) and abs(a - exact) < 1e-12 else a
                 for a in op.args)
    return Op(op.op, args, op.kwargs, op.outputs)


def merge_tied(graph: Graph, tied: dict[str, str]) -> Graph:
    """One parameter input per Parameter, and one gradient: the sum over its uses.

    The capture gives each name of a tied Parameter its own input and its own partial gradient.
    Each alias input becomes an `alias` view of the canonical input (so the alias's uses still
    read one value, and `param_root` still finds the parameter), and the canonical gradient
    becomes the sum of every name's gradient, as torch's autograd accumulates them."""
    if not tied:
        return graph
    value_of = {fqn: name for name, fqn in graph.params}
    grads = dict(graph.grads)
    types = dict(graph.types)
    views, sums = [], []
    for alias, canonical in tied.items():
        if alias not in value_of:      # captured as one input already: nothing to merge
            continue
        views.append(Op("aten.alias.default", (Ref(value_of[canonical]),), (), (value_of[alias],)))
        total = f"{grads[canonical]}_tied_{len(sums)}"
        sums.append(Op("aten.add.Tensor", (Ref(grads[canonical]), Ref(grads.pop(alias))), (), (total,)))
        types[total] = types[grads[canonical]]
        grads[canonical] = total
    return verify(graph.replace(
        params=tuple((n, f) for n, f in graph.params if f not in tied),
        ops=tuple(views) + graph.ops + tuple(sums), types=tuple(types.items()),
        grads=tuple(grads.items()), meta=graph.meta + (("tied", tuple(sorted(tied.items()))),)))


def param_root(graph: Graph) -> dict[str, str]:
    """Value -> parameter fqn, for parameters and views of them (no arithmetic in between)."""
    root = {name: fqn for name, fqn in graph.params}
    for op in graph.ops:
        if op.op in VIEW_OPS:
            src = next(iter(op.refs()), None)
            if src in root:
                root[op.name] = root[src]
    return root


def owner_module(fqn: str) -> str:
    return fqn.rsplit(".", 1)[0] if "." in fqn else fqn


def static_values(graph: Graph) -> set[str]:
    """Values computed from the graph's inputs, dropout masks and constants alone (a padding
    mask `x == pad_id`, a dropout mask as floats): no parameter and no activation feeds them."""
    static = set(graph.inputs) | {name for name, _ in graph.masks}
    for op in graph.ops:
        if all(r in static for r in op.refs()):
            static.update(op.outputs)
    return static


def _param_claims(graph: Graph) -> dict[str, str]:
    """Ops that touch a parameter, and the ops that compute its gradient, -> the owning module."""
    kernel: dict[str, str] = {}
    roots = param_root(graph)
    for op in graph.ops:
        touched = [roots[r] for r in op.refs() if r in roots]
        if op.name in roots or touched:
            kernel[op.name] = owner_module(roots.get(op.name) or touched[0])
    for fqn, grad in graph.grads:
        _claim_gradient_chain(graph, grad, owner_module(fqn), kernel)
    # a buffer the step updates on its own (BatchNorm's batch count) stays with its module
    owners, buffers = set(kernel.values()), dict(graph.buffers)
    for op in graph.ops:
        modules = [owner_module(buffers[r]) for r in op.refs() if r in buffers]
        if op.name not in kernel and modules and modules[0] in owners:
            kernel[op.name] = modules[0]
    return kernel


def assign_kernels(graph: Graph) -> dict[str, str]:
    """Op name -> kernel name. Pure: the same graph always gives the same assignment."""
    kernel = _param_claims(graph)
    param_kernels = set(kernel.values())
    for name, ops in attention_regions(graph, kernel).items():
        kernel.update(dict.fromkeys(ops, name))
    _fuse_forward(graph, kernel, param_kernels, _matmul_kernels(graph, kernel))
    _fuse_backward(graph, kernel)
    return kernel


def _matmul_kernels(graph: Graph, kernel: dict) -> set[str]:
    roots = param_root(graph)
    return {kernel[op.name] for op in graph.ops
            if op.op in MATMUL_OPS and op.name in kernel and any(r in roots for r in op.refs())}


def is_activation_matmul(op: Op, roots: dict) -> bool:
    """A matmul of two activations, no operand a parameter: attention's Q K^T and P V and their
    backward, and also a layer's dW = dY^T x (which its parameter's gradient claims first)."""
    return op.op in MATMUL_OPS and not any(r in roots for r in op.refs())


def attention_regions(graph: Graph, claimed: dict | None = None) -> dict[str, list[str]]:
    """Kernel name -> op names of each attention block, forward and backward together.

    A region grows from an activation x activation matmul along producer and consumer edges,
    through ops no parameter claimed (`claimed`: op -> kernel, by default the parameter
    claims) and that are not static (`static_values`: the padding mask is shared by every
    layer). The q/k/v and output projections bound it, so each block's region holds its
    Q K^T, mask, softmax, dropout and P V, their backward, and the head reshapes in between.
    Regions without a softmax are not attention and are left to the generic rules. Each is
    named after the module its projections share (`layers.0.attn` -> `layers.0.attn.sdpa`),
    else `attention`, `attention_1`, ...
    """
    claimed = _param_claims(graph) if claimed is None else claimed
    roots, static = param_root(graph), static_values(graph)
    free = {op.name for op in graph.ops if op.name not in claimed
            and not all(o in static for o in op.outputs)}
    order = {op.name: i for i, op in enumerate(graph.ops)}
    regions, seen = [], set()
    for op in graph.ops:
        if op.name in seen or op.name not in free or not is_activation_matmul(op, roots):
            continue
        region = _grow(graph, op.name, free)
        seen |= region
        if any(graph.producer[o].op == "aten._softmax.default" for o in region):
            regions.append(sorted(region, key=order.__getitem__))
    # A block applied at several steps with the same weights (a Universal Transformer) has one
    # region per step, all bounded by the same projections: they are one kernel, placed once,
    # that the data goes through once per step.
    shared: dict[frozenset, list[str]] = {}
    for region in regions:
        shared.setdefault(frozenset(_neighbours(graph, region, claimed)), []).extend(region)
    named, taken = {}, set(claimed.values())
    for region in shared.values():
        region = sorted(region, key=order.__getitem__)
        name = _region_name(graph, region, claimed, taken)
        taken.add(name)
        named[name] = region
    return named


def _grow(graph: Graph, start: str, free: set[str]) -> set[str]:
    region, todo = {start}, [start]
    while todo:
        op = graph.producer[todo.pop()]
        near = [graph.producer[r].name for r in op.refs() if r in graph.producer]
        near += [c.name for out in op.outputs for c in graph.consumers.get(out, [])]
        for name in near:
            if name in free and name not in region:
                region.add(name)
                todo.append(name)
    return region


def _neighbours(graph: Graph, region: list[str], claimed: dict) -> set[str]:
    """The claimed kernels that feed a region or read from it."""
    ops = set(region)
    neighbours = set()
    for name in region:
        op = graph.producer[name]
        neighbours |= {claimed[graph.producer[r].name] for r in op.refs()
                       if r in graph.producer and graph.producer[r].name in claimed}
        neighbours |= {claimed[c.name] for out in op.outputs for c in graph.consumers.get(out, [])
                       if c.name in claimed and c.name not in ops}
    return neighbours


def _region_name(graph: Graph, region: list[str], claimed: dict, taken: set) -> str:
    parts = [n.split(".") for n in sorted(_neighbours(graph, region, claimed))]
    common = []
    for level in zip(*parts) if parts else ():
        if len(set(level)) != 1:
            break
        common.append(level[0])
    base = ".".join(common) + ".sdpa" if common else "attention"
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


_ACCUMULATE = frozenset({"aten.add.Tensor"})


def _claim_gradient_chain(graph: Graph, value: str, module: str, kernel: dict) -> None:
    """Walk back from a gradient output through views to the ops that compute it (the dW
    matmul, or the bias gradient's sum), and claim them; their inputs belong to other kernels.
    A weight used several times (a Universal Transformer's shared block, once per step) has
    its gradient accumulated by adds of the per-use gradients: walk through those too, so
    every use's dW stays with the weight."""
    todo = [value]
    while todo:
        op = graph.producer.get(todo.pop())
        if op is None or kernel.get(op.name, module) != module:
            continue
        kernel[op.name] = module
        if op.op in VIEW_OPS:
            todo.append(next(iter(op.refs()), None))
        elif op.op in _ACCUMULATE:
            todo.extend(op.refs())


def _newest(graph: Graph, op: Op, kernel: dict, position: dict) -> str:
    """The kernel of the most recently computed of `op`'s inputs, where a residual add
    (`h + f(h)`) goes: to f's kernel, not the kernel where `h` began; otherwise every layer's
    residual stream stays with the first kernel (the embedding), a hub that every layer's
    routes fan into. Other element-wise ops join their first input's kernel."""
    inputs = [graph.producer[r].name for r in op.refs()
              if r in graph.producer and graph.producer[r].name in kernel]
    return kernel[max(inputs, key=position.__getitem__)]


def _fuse_forward(graph: Graph, kernel: dict, param_kernels: set, matmul_kernels: set) -> None:
    names: dict[str, int] = {}
    position = {op.name: i for i, op in enumerate(graph.ops)}
    for op in graph.ops:
        if op.name in kernel:
            continue
        producers = [kernel[graph.producer[r].name] for r in op.refs()
                     if r in graph.producer and graph.producer[r].name in kernel]
        if is_elementwise(op) or op.op in VIEW_OPS or op.op in MARKER_OPS or op.op in SENDER_OPS:
            if producers:
                kernel[op.name] = _newest(graph, op, kernel, position) if op.op in _ACCUMULATE \
                    else producers[0]
            continue
        # a reduction over a norm's or embedding's values (the row sums of a decomposed layer
        # norm backward) stays with that layer; after a matmul layer, or a matmul itself, it
        # starts a new kernel (a loss, a product of activations)
        generated = [k for k in producers if k not in param_kernels]
        elementwise_layers = [k for k in producers if k in param_kernels and k not in matmul_kernels
                              and op.op not in MATMUL_OPS]
        if generated or elementwise_layers:
            kernel[op.name] = (generated or elementwise_layers)[0]
        elif producers:
            kernel[op.name] = _new_kernel_name(op, names)
        # else: it reads only graph inputs or constants, so it joins its consumer later


def _new_kernel_name(op: Op, names: dict) -> str:
    base = op.short
    names[base] = names.get(base, -1) + 1
    return base if names[base] == 0 else f"{base}_{names[base]}"


def pipeline_order(graph: Graph, kernel_of: dict[str, str]) -> list[str]:
    """Kernels by the first op of theirs that does real work. Views do none (attention's head
    reshapes of q follow q's matmul, before k and v run), nor do static ops (the padding mask,
    built from the input ids before anything else, joins its consumer)."""
    static = static_values(graph)
    working = [kernel_of[op.name] for op in graph.ops if op.op not in VIEW_OPS
               and op.op not in MARKER_OPS and not all(o in static for o in op.outputs)]
    return list(dict.fromkeys(working + [kernel_of[op.name] for op in graph.ops]))


def _fuse_backward(graph: Graph, kernel: dict) -> None:
    """Ops with no assigned producer (constants, label preprocessing) join their consumer."""
    for op in reversed(graph.ops):
        if op.name in kernel:
            continue
        users = [kernel[c.name] for out in op.outputs for c in graph.consumers.get(out, [])
                 if c.name in kernel]
        kernel[op.name] = users[0] if users else "unused"


PIPELINE = (rewrite_dropout,)


def run_pipeline(graph: Graph) -> Graph:
    for graph_pass in PIPELINE:
        graph = graph_pass(graph)
    return graph
