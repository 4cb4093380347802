"""compiler.ir: the invariants `verify` enforces, the text form, and the graph's indexes."""
from __future__ import annotations

import pytest

from compiler.ir import Graph, IRError, Op, Ref, TensorType, format_graph, verify


def tiny_graph(**changes) -> Graph:
    """loss = sum(x @ w); grad(w) = x^T @ ones (shapes only matter here)."""
    ops = (
        Op("aten.mm.default", (Ref("x"), Ref("w")), (), ("y",)),
        Op("aten.sum.dim_IntList", (Ref("y"), ()), (), ("loss",)),
        Op("aten.ones_like.default", (Ref("y"),), (), ("ones",)),
        Op("aten.t.default", (Ref("x"),), (), ("xt",)),
        Op("aten.mm.default", (Ref("xt"), Ref("ones")), (), ("gw",)),
    )
    types = (("x", TensorType((2, 3), "float32")), ("w", TensorType((3, 4), "float32")),
             ("y", TensorType((2, 4), "float32")), ("loss", TensorType((), "float32")),
             ("ones", TensorType((2, 4), "float32")), ("xt", TensorType((3, 2), "float32")),
             ("gw", TensorType((3, 4), "float32")))
    fields = dict(inputs=("x",), params=(("w", "lin.weight"),), buffers=(), masks=(), ops=ops,
                  types=types, loss="loss", grads=(("lin.weight", "gw"),))
    fields.update(changes)
    return Graph(**fields)


def test_tiny_graph_verifies_and_is_returned():
    g = tiny_graph()
    assert verify(g) is g


def test_use_before_def():
    g = tiny_graph()
    ops = (g.ops[1], g.ops[0]) + g.ops[2:]   # sum reads y before mm defines it
    with pytest.raises(IRError, match="'y'"):
        verify(g.replace(ops=ops))


def test_read_of_undefined_value_inside_nested_args():
    g = tiny_graph()
    bad = Op("aten.cat.default", ((Ref("x"), Ref("nowhere")),), (), ("cat",))
    types = g.types + (("cat", TensorType((4, 3), "float32")),)
    with pytest.raises(IRError, match="nowhere"):
        verify(g.replace(ops=g.ops + (bad,), types=types))


def test_read_of_undefined_value_in_kwargs():
    g = tiny_graph()
    bad = Op("aten.add.Tensor", (Ref("x"),), (("other", Ref("ghost")),), ("z",))
    types = g.types + (("z", TensorType((2, 3), "float32")),)
    with pytest.raises(IRError, match="ghost"):
        verify(g.replace(ops=g.ops + (bad,), types=types))


def test_double_definition_by_an_op():
    g = tiny_graph()
    again = Op("aten.relu.default", (Ref("y"),), (), ("y",))
    with pytest.raises(IRError, match="'y' is defined twice"):
        verify(g.replace(ops=g.ops + (again,)))


def test_op_redefining_a_placeholder():
    g = tiny_graph()
    clobber = Op("aten.relu.default", (Ref("y"),), (), ("w",))
    with pytest.raises(IRError, match="'w'"):
        verify(g.replace(ops=g.ops + (clobber,)))


def test_placeholder_defined_twice():
    g = tiny_graph(inputs=("x", "w"))
    with pytest.raises(IRError, match="placeholder 'w'"):
        verify(g)


def test_missing_type():
    g = tiny_graph()
    types = tuple((n, t) for n, t in g.types if n != "xt")
    with pytest.raises(IRError, match="xt"):
        verify(g.replace(types=types))


def test_missing_type_of_a_placeholder():
    g = tiny_graph()
    types = tuple((n, t) for n, t in g.types if n != "x")
    with pytest.raises(IRError, match="without a type"):
        verify(g.replace(types=types))


def test_gradient_for_unknown_parameter():
    g = tiny_graph(grads=(("lin.weight", "gw"), ("lin.bias", "gw")))
    with pytest.raises(IRError, match="lin.bias"):
        verify(g)


def test_loss_never_produced():
    with pytest.raises(IRError, match="nothing"):
        verify(tiny_graph(loss="nothing"))


def test_gradient_never_produced():
    with pytest.raises(IRError, match="missing_grad"):
        verify(tiny_graph(grads=(("lin.weight", "missing_grad"),)))


def test_indexes():
    g = tiny_graph()
    assert g.producer["gw"].op == "aten.mm.default"
    assert "x" not in g.producer          # placeholders have no producer
    assert [op.name for op in g.consumers["y"]] == ["loss", "ones"]
    assert [op.name for op in g.consumers["x"]] == ["y", "xt"]
    assert g.param_fqn == {"w": "lin.weight"}
    assert g.placeholders == ("x", "w")


def test_consumers_list_an_op_once_even_if_it_reads_twice():
    g = tiny_graph()
    sq = Op("aten.mul.Tensor", (Ref("y"), Ref("y")), (), ("sq",))
    g2 = g.replace(ops=g.ops + (sq,), types=g.types + (("sq", TensorType((2, 4), "float32")),))
    assert [op.name for op in g2.consumers["y"]].count("sq") == 1


def test_tuple_outputs_and_refs():
    op = Op("aten.native_dropout.default", (Ref("x"), 0.5, True), (), ("d#0", "d#1"))
    assert op.name == "d#0"
    assert list(op.refs()) == ["x"]
    nested = Op("aten.cat.default", ((Ref("a"), (Ref("b"),)), 0), (("out", Ref("c")),), ("o",))
    assert list(nested.refs()) == ["a", "b", "c"]


@pytest.mark.parametrize("op,short", [
    ("aten._log_softmax.default", "log_softmax"),
    ("aten.mm.default", "mm"),
    ("aten.sum.dim_IntList", "sum"),
    ("custom_thing", "custom_thing"),
])
def test_short_name(op, short):
    assert Op(op, (), (), ("o",)).short == short


def test_tensor_type():
    t = TensorType((2, 3, 4), "float32")
    assert t.numel == 24
    assert str(t) == "f32[2,3,4]"
    assert TensorType((), "float32").numel == 1
    assert str(TensorType((5,), "bool")) == "b8[5]"
    assert str(TensorType((5,), "float16")) == "float16[5]"


def test_replace_returns_new_graph_and_keeps_original():
    g = tiny_graph()
    g2 = g.replace(loss="y")
    assert g2.loss == "y" and g.loss == "loss"
    assert g2.ops == g.ops


def test_format_graph_prints_every_op_and_annotations():
    g = tiny_graph()
    kernel_of = {"y": "lin", "loss": "sum", "ones": "sum", "xt": "lin", "gw": "lin"}
    text = format_graph(g, kernel_of)
    lines = text.splitlines()
    for op in g.ops:
        [line] = [ln for ln in lines if ln.strip().startswith(f"%{op.name}:")]
        assert op.op in line
        assert line.rstrip().endswith(f"# {kernel_of[op.name]}")
    assert "param lin.weight" in text
    assert "return loss=%loss" in text and "lin.weight=%gw" in text


def test_format_graph_without_kernels_has_no_annotations():
    text = format_graph(tiny_graph())
    assert "#" not in text
    assert text.count("aten.") == len(tiny_graph().ops)


def test_format_graph_shows_masks_and_types():
    g = tiny_graph()
    g = g.replace(masks=(("m", 0.25),), types=g.types + (("m", TensorType((2, 3), "bool")),))
    text = format_graph(verify(g))
    assert "%m: b8[2,3] = dropout mask p=0.25" in text
    assert "%y: f32[2,4] = aten.mm.default(%x, %w)" in text


def test_captured_mlp_verifies(graph):
    assert verify(graph) is graph
    text = format_graph(graph)
    for op in graph.ops:
        assert f"%{op.name}:" in text
    assert graph.type_of[graph.loss].shape == ()


def test_captured_mlp_annotated_with_every_kernel(lowered, built):
    kernels, kernel_of = built
    text = format_graph(lowered, kernel_of)
    annotated = [ln for ln in text.splitlines() if "    # " in ln]
    assert len(annotated) == len(lowered.ops)
    for k in kernels:
        assert f"# {k.name}" in text
