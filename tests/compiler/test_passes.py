"""compiler.passes: dropout -> mask inputs, and op -> kernel assignment."""
from __future__ import annotations

import json
import math
import warnings

import pytest

import torch
import torch.nn as nn

from compiler.frontend import capture
from compiler.ir import Graph, Op, Ref, TensorType, verify
from compiler.passes import (MATMUL_OPS, VIEW_OPS, assign_kernels, attention_regions,
                             is_activation_matmul, is_elementwise, owner_module, param_root,
                             merge_tied, pipeline_order, rewrite_dropout, run_pipeline,
                             static_values)
from compiler.serialize import graph_from_dict, graph_to_dict

# ---------------------------------------------------------------- rewrite_dropout


def test_dropout_becomes_a_mask_input(graph):
    [drop] = [op for op in graph.ops if op.op == "aten.native_dropout.default"]
    out, mask = drop.outputs
    g = rewrite_dropout(graph)
    assert not any(op.op == "aten.native_dropout.default" for op in g.ops)
    assert g.masks == ((mask, pytest.approx(drop.args[1])),)
    assert g.type_of[mask].dtype == "bool"
    assert g.type_of[mask].shape == graph.type_of[out].shape
    assert mask in g.placeholders and mask not in g.producer
    # the dropout output keeps its name, so every consumer still reads it
    assert g.producer[out].op == "aten.mul.Tensor"
    assert verify(g) is g


def _ancestors(g, name, stop=frozenset()):
    """Ops that `name` depends on, not walking into `stop`."""
    seen, todo = {}, [name]
    while todo:
        op = g.producer.get(todo.pop())
        if op is None or op.name in seen or op.name in stop:
            continue
        seen[op.name] = op
        todo.extend(op.refs())
    return list(seen.values())


def test_dropout_rewrite_scales_by_one_over_keep(graph):
    [drop] = [op for op in graph.ops if op.op == "aten.native_dropout.default"]
    p, x = drop.args[1], drop.args[0].name
    out, mask = drop.outputs
    g = rewrite_dropout(graph)
    assert x in set(g.producer[out].refs())
    # what `out` depends on besides x: the mask, turned to float and scaled by 1/(1-p)
    path = _ancestors(g, out, stop={op.name for op in _ancestors(g, x)} | {x})
    reads = {r for op in path for r in op.refs()}
    assert mask in reads
    scales = [a for op in path if op.op == "aten.mul.Tensor" for a in op.args if isinstance(a, float)]
    assert scales == [pytest.approx(1 / (1 - p))]


def test_forward_and_backward_use_the_same_scale(graph):
    """Every literal that scales the mask (forward and backward) is the same number."""
    g = rewrite_dropout(graph)
    [(mask, p)] = g.masks
    downstream, frontier = {mask}, [mask]
    while frontier:
        for c in g.consumers.get(frontier.pop(), []):
            if c.op in ("aten._to_copy.default", "aten.mul.Tensor") and c.name not in downstream:
                if c.op == "aten._to_copy.default" or any(isinstance(a, float) for a in c.args):
                    downstream.add(c.name)
                    frontier.append(c.name)
    scales = {a for n in downstream if n in g.producer for a in g.producer[n].args
              if isinstance(a, float)}
    assert len(scales) == 1, scales
    assert scales.pop() == pytest.approx(1 / (1 - p))


def test_rewrite_keeps_other_ops_in_order(graph):
    g = rewrite_dropout(graph)
    kept = [(op.op, op.outputs) for op in graph.ops if op.op != "aten.native_dropout.default"]
    remaining = [(op.op, op.outputs) for op in g.ops if (op.op, op.outputs) in kept]
    assert remaining == kept
    # apart from the dropout scale literal, the kept ops read the same values as before
    before = {op.outputs: tuple(op.refs()) for op in graph.ops}
    for op in g.ops:
        if (op.op, op.outputs) in kept:
            assert tuple(op.refs()) == before[op.outputs]


def test_rewrite_is_idempotent(graph):
    once = rewrite_dropout(graph)
    assert rewrite_dropout(once) == once


def test_pipeline_runs_rewrite(graph):
    assert run_pipeline(graph) == rewrite_dropout(graph)


def dropout_graph(p, train) -> Graph:
    """x -> native_dropout(x, p, train) -> sum -> loss, with a parameter-free gradient stub."""
    f32 = TensorType((2, 3), "float32")
    ops = (Op("aten.relu.default", (Ref("w"),), (), ("x",)),
           Op("aten.native_dropout.default", (Ref("x"), p, train), (), ("d#0", "d#1")),
           Op("aten.sum.dim_IntList", (Ref("d#0"), ()), (), ("loss",)),
           Op("aten.ones_like.default", (Ref("w"),), (), ("gw",)))
    types = (("w", f32), ("x", f32), ("d#0", f32), ("d#1", TensorType((2, 3), "bool")),
             ("loss", TensorType((), "float32")), ("gw", f32))
    return verify(Graph(inputs=(), params=(("w", "lin.weight"),), buffers=(), masks=(), ops=ops,
                        types=types, loss="loss", grads=(("lin.weight", "gw"),)))


@pytest.mark.parametrize("p,train", [(0.0, True), (0.5, False), (0, True)])
def test_inactive_dropout_takes_no_mask(p, train):
    g = rewrite_dropout(dropout_graph(p, train))
    assert g.masks == ()
    assert not any(op.op == "aten.native_dropout.default" for op in g.ops)
    assert g.producer["d#0"].op == "aten.alias.default"
    assert [r for r in g.producer["d#0"].refs()] == ["x"]
    # the mask output still exists (backward may read it), as an all-true bool tensor
    assert g.producer["d#1"].op == "aten.ones_like.default"
    assert dict(g.producer["d#1"].kwargs)["dtype"] == "bool"


def test_active_dropout_takes_a_mask():
    g = rewrite_dropout(dropout_graph(0.25, True))
    assert g.masks == (("d#1", 0.25),)
    assert g.type_of["d#1"] == TensorType((2, 3), "bool")


def test_dropout_p_one_gives_a_finite_scale():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        g = rewrite_dropout(dropout_graph(1.0, True))
    assert not any(op.op == "aten.native_dropout.default" for op in g.ops)
    scalars = [a for op in g.ops for a in op.args if isinstance(a, float)]
    assert all(math.isfinite(a) for a in scalars), scalars


def test_dropout_train_none_means_train():
    g = rewrite_dropout(dropout_graph(0.5, None))
    assert g.masks == (("d#1", 0.5),)


# ---------------------------------------------------------------- assign_kernels


def _matmuls(g):
    return [op for op in g.ops if op.op in MATMUL_OPS]


def test_every_op_gets_a_kernel(lowered):
    kernel_of = assign_kernels(lowered)
    assert set(kernel_of) == {op.name for op in lowered.ops}
    assert "unused" not in kernel_of.values()


def test_assignment_is_deterministic(lowered):
    assert assign_kernels(lowered) == assign_kernels(lowered)
    # a structurally equal copy (fresh caches) gives the same answer
    copy = graph_from_dict(graph_to_dict(lowered))
    assert copy == lowered
    assert assign_kernels(copy) == assign_kernels(lowered)


def test_forward_matmul_belongs_to_its_layer(lowered):
    kernel_of = assign_kernels(lowered)
    roots = param_root(lowered)
    forward = [op for op in _matmuls(lowered) if any(r in roots for r in op.refs())
               and op.op == "aten.addmm.default"]
    assert len(forward) == 2
    for op in forward:
        fqns = {roots[r] for r in op.refs() if r in roots}
        assert {kernel_of[op.name]} == {owner_module(f) for f in fqns}
    assert sorted(kernel_of[op.name] for op in forward) == ["fc1", "fc2"]


def _producer_through_views(g, name):
    op = g.producer.get(name)
    while op is not None and op.op in VIEW_OPS:
        op = g.producer.get(next(op.refs()))
    return op


def test_gradient_ops_belong_to_their_layer(lowered):
    """The matmul producing W's gradient, and the sum producing b's, run on the layer's cores."""
    kernel_of = assign_kernels(lowered)
    for fqn, grad in lowered.grads:
        module = owner_module(fqn)
        op = _producer_through_views(lowered, grad)
        if fqn.endswith("weight"):
            assert op.op in MATMUL_OPS
        else:
            assert op.op.startswith("aten.sum.")
        assert kernel_of[op.name] == module
        # the views between the computing op and the output too
        v = lowered.producer[grad]
        while v is not op:
            assert kernel_of[v.name] == module
            v = lowered.producer[next(v.refs())]


def test_dx_matmul_belongs_to_its_layer(lowered):
    """fc2's dX reads fc2's weight (through views) and so runs on fc2's cores."""
    kernel_of = assign_kernels(lowered)
    roots = param_root(lowered)
    dx = [op for op in lowered.ops if op.op == "aten.mm.default" and any(r in roots for r in op.refs())]
    assert len(dx) == 1
    assert kernel_of[dx[0].name] == "fc2"


def test_relu_fuses_into_fc1(lowered):
    kernel_of = assign_kernels(lowered)
    [relu] = [op for op in lowered.ops if op.op == "aten.relu.default"]
    assert kernel_of[relu.name] == "fc1"
    # ReLU backward feeds fc1's dW matmul and stays on fc1 too
    [dw1] = [op for op in _matmuls(lowered) if kernel_of[op.name] == "fc1"
             and op.op == "aten.mm.default"]
    [dy] = [r for r in dw1.refs() if r not in lowered.inputs]
    assert kernel_of[_producer_through_views(lowered, dy).name] == "fc1"


def test_loss_ops_form_one_generated_kernel(lowered):
    kernel_of = assign_kernels(lowered)
    [lsm] = [op for op in lowered.ops if op.short == "log_softmax"]
    assert kernel_of[lsm.name] == "log_softmax"
    assert kernel_of[lowered.producer[lowered.loss].name] == "log_softmax"
    # the loss is computed from the logits only: everything between them is the loss kernel
    names = [op.name for op in lowered.ops]
    start, end = names.index(lsm.name), names.index(lowered.loss)
    for op in lowered.ops[start:end + 1]:
        assert kernel_of[op.name] == "log_softmax", op
    # the kernel holds no parameter
    roots = param_root(lowered)
    assert not any(r in roots for op in lowered.ops if kernel_of[op.name] == "log_softmax"
                   for r in op.refs())


def test_loss_backward_stays_in_the_loss_kernel(lowered):
    """d(loss)/d(logits) is log-softmax backward: fc2 receives it, it does not compute it."""
    kernel_of = assign_kernels(lowered)
    roots = param_root(lowered)
    [dx2] = [op for op in lowered.ops if op.op == "aten.mm.default"
             and any(r in roots for r in op.refs())]
    dy = next(r for r in dx2.refs() if r not in roots)
    assert kernel_of[_producer_through_views(lowered, dy).name] == "log_softmax"


def test_kernels_are_layers_plus_loss(lowered):
    assert set(assign_kernels(lowered).values()) == {"fc1", "fc2", "log_softmax"}


def test_dropout_mask_ops_join_a_layer(lowered):
    kernel_of = assign_kernels(lowered)
    [(mask, _)] = lowered.masks
    users = {kernel_of[c.name] for c in lowered.consumers[mask]}
    assert users <= {"fc1", "fc2"}


# ---------------------------------------------------------------- attention


def _transformer_graph(attention, layers=2, dropout=0.1):
    import wsebench as wb
    model = wb.models.transformer(vocab=12, d_model=8, heads=2, layers=layers, ffn=16, max_len=5,
                                  dropout=dropout, attention=attention, seed=0)
    x = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    return run_pipeline(capture(model, nn.CrossEntropyLoss(), (x, torch.tensor([0, 1])), method="aot"))


@pytest.fixture(scope="module", params=["manual", "torch"])
def transformer_graph(request):
    return request.param, _transformer_graph(request.param)


def test_each_attention_block_is_one_kernel_with_its_backward(transformer_graph):
    attention, g = transformer_graph
    kernel_of = assign_kernels(g)
    roots = param_root(g)
    for layer in (0, 1):
        name = f"layers.{layer}.attn.sdpa"
        ops = [op for op in g.ops if kernel_of[op.name] == name]
        kinds = [op.op for op in ops]
        # Q K^T and P V forward; dP, dV, dQ, dK backward
        assert sum(is_activation_matmul(op, roots) for op in ops) == 6
        assert kinds.count("aten._softmax.default") == 1
        assert not any(r in roots for op in ops for r in op.refs())       # holds no parameter
    # every other activation x activation matmul is a layer's dW = dY^T x
    layers = {owner_module(fqn) for _, fqn in g.params}
    every = [kernel_of[op.name] for op in g.ops if is_activation_matmul(op, roots)]
    assert all(k.endswith(".sdpa") or k in layers for k in every)
    assert sum(k.endswith(".sdpa") for k in every) == 12


def test_attention_sits_between_the_projections(transformer_graph):
    attention, g = transformer_graph
    kernel_of = assign_kernels(g)
    order = pipeline_order(g, kernel_of)
    before = [f"layers.0.attn.{p}" for p in "qkv"] if attention == "manual" else ["layers.0.attn"]
    after = "layers.0.attn.o" if attention == "manual" else "layers.0.attn.out_proj"
    assert order[order.index("layers.0.attn.sdpa") - len(before):order.index(after) + 1] == \
        before + ["layers.0.attn.sdpa", after]
    assert order[0] == "embed"          # the padding mask, computed first, joins a later kernel


def test_layer_norm_backward_sums_stay_with_the_norm(transformer_graph):
    _, g = transformer_graph
    names = set(assign_kernels(g).values())
    assert not any(n.startswith(("sum", "mean", "bmm")) for n in names), sorted(names)


def _receivers_of_first_kernel(layers: int) -> set[str]:
    g = _transformer_graph("manual", layers=layers, dropout=0.0)
    kernel_of = assign_kernels(g)
    first = pipeline_order(g, kernel_of)[0]
    return {kernel_of[c.name] for op in g.ops if kernel_of[op.name] == first
            for out in op.outputs for c in g.consumers.get(out, []) if kernel_of[c.name] != first}


def test_residual_stream_passes_from_layer_to_layer():
    """A residual add joins the kernel of its newest input, so the embedding's kernel feeds the
    first layer and no more: the residual stream is not a hub every layer fans into."""
    two, four = _receivers_of_first_kernel(2), _receivers_of_first_kernel(4)
    assert len(four) == len(two)
    assert not any(name.startswith(("layers.1.", "layers.2.", "layers.3.")) for name in four)


def test_padding_mask_is_static_and_shared():
    g = _transformer_graph("manual", layers=2, dropout=0.0)
    static = static_values(g)
    [pad] = [op for op in g.ops if op.op == "aten.eq.Scalar" and op.args[0] == Ref(g.inputs[0])]
    assert pad.name in static
    regions = attention_regions(g)
    assert sorted(regions) == ["layers.0.attn.sdpa", "layers.1.attn.sdpa"]
    assert not any(pad.name in ops for ops in regions.values())


class _Mixer(nn.Module):
    """Attention without projections (h @ h^T, softmax, @ h), then a Linear."""

    def __init__(self, softmax=True):
        super().__init__()
        self.ln, self.fc, self.softmax = nn.LayerNorm(6), nn.Linear(6, 3), softmax

    def forward(self, x):
        h = self.ln(x)
        scores = h @ h.transpose(1, 2)
        mix = torch.softmax(scores, dim=-1) if self.softmax else torch.tanh(scores)
        return self.fc((mix @ h).mean(1))


@pytest.mark.parametrize("softmax, expected", [(True, "attention"), (False, "bmm")])
def test_only_a_softmax_between_activation_matmuls_is_attention(softmax, expected):
    g = run_pipeline(capture(_Mixer(softmax), nn.CrossEntropyLoss(),
                             (torch.randn(2, 4, 6), torch.tensor([0, 2])), method="aot"))
    kernel_of = assign_kernels(g)
    roots = param_root(g)
    kernels = {kernel_of[op.name] for op in g.ops if is_activation_matmul(op, roots)}
    assert expected in kernels
    assert (set(attention_regions(g)) == {"attention"}) is softmax


# ---------------------------------------------------------------- helpers


def test_param_root_follows_views_only(lowered):
    roots = param_root(lowered)
    for name, fqn in lowered.params:
        assert roots[name] == fqn
    for op in lowered.ops:
        if op.name in roots and op.name not in lowered.param_fqn:
            assert op.op in VIEW_OPS
            assert roots[op.name] == roots[next(op.refs())]


@pytest.mark.parametrize("fqn,module", [("fc1.weight", "fc1"), ("layers.3.bias", "layers.3"),
                                        ("scale", "scale")])
def test_owner_module(fqn, module):
    assert owner_module(fqn) == module


@pytest.mark.parametrize("op,expected", [
    ("aten.relu.default", True), ("aten.mul.Tensor", True), ("aten.threshold_backward.default", True),
    ("aten.mm.default", False), ("aten._log_softmax.default", False), ("aten.sum.dim_IntList", False),
    ("prims.mul.default", False),
])
def test_is_elementwise(op, expected):
    assert is_elementwise(Op(op, (), (), ("o",))) is expected


# ---------------------------------------------------------------- merge_tied


def _two_names_of_one_weight() -> Graph:
    """x @ W, then @ W again under a second name (the capture's view of a tied weight)."""
    square = TensorType((2, 2), "float32")
    ops = (Op("aten.mm.default", (Ref("x"), Ref("w1")), (), ("h",)),
           Op("aten.mm.default", (Ref("h"), Ref("w2")), (), ("o",)),
           Op("aten.sum.default", (Ref("o"),), (), ("loss",)),
           Op("aten.ones_like.default", (Ref("w1"),), (), ("g1",)),
           Op("aten.ones_like.default", (Ref("w2"),), (), ("g2",)))
    types = tuple((n, square) for n in ("x", "y", "w1", "w2", "h", "o", "g1", "g2"))
    return verify(Graph(inputs=("x", "y"), params=(("w1", "emb.weight"), ("w2", "head.weight")),
                        buffers=(), masks=(), ops=ops,
                        types=types + (("loss", TensorType((), "float32")),), loss="loss",
                        grads=(("emb.weight", "g1"), ("head.weight", "g2"))))


def test_merge_tied_gives_one_input_and_the_summed_gradient():
    graph = merge_tied(_two_names_of_one_weight(), {"head.weight": "emb.weight"})
    assert graph.params == (("w1", "emb.weight"),)
    assert graph.producer["w2"].op == "aten.alias.default"
    assert [r for r in graph.producer["w2"].refs()] == ["w1"]
    (fqn, total), = graph.grads
    assert fqn == "emb.weight" and graph.producer[total].op == "aten.add.Tensor"
    assert sorted(graph.producer[total].refs()) == ["g1", "g2"]
    assert graph.tied == {"head.weight": "emb.weight"}
    assert param_root(graph)["w2"] == "emb.weight"
    saved = json.loads(json.dumps(graph_to_dict(graph)))                # as a plan's JSON holds it
    assert graph_from_dict(saved).tied == graph.tied


def test_merge_tied_without_aliases_is_the_identity():
    graph = _two_names_of_one_weight()
    assert merge_tied(graph, {}) is graph and graph.tied == {}
