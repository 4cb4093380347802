"""compiler.kernels (the registry and `build_kernels`): kernels in pipeline order, each of a
registered kind, with a loop nest and the streams it measures."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from compiler.frontend import capture
from compiler.kernels import KINDS, build_kernels, kind_of
from compiler.kernels.matmul import computes_dx
from compiler.passes import run_pipeline


@pytest.fixture(scope="module")
def dims(mlp):
    model, _, (x, _) = mlp
    return x.shape[0], model.fc1.in_features, model.fc1.out_features, model.fc2.out_features


def by_name(kernels):
    return {k.name: k for k in kernels}


def dense_macs(kernel) -> int:
    return kind_of(kernel).dense_macs(kernel)


def test_pipeline_order(built):
    kernels, _ = built
    assert [k.name for k in kernels] == ["fc1", "fc2", "log_softmax"]


def test_kernel_of_matches_kernel_ops(built, lowered):
    kernels, kernel_of = built
    for k in kernels:
        assert set(k.ops) == {op for op, name in kernel_of.items() if name == k.name}
    all_ops = [op for k in kernels for op in k.ops]
    assert sorted(all_ops) == sorted(op.name for op in lowered.ops)   # a partition


def test_kernel_ops_keep_graph_order(built, lowered):
    kernels, _ = built
    position = {op.name: i for i, op in enumerate(lowered.ops)}
    for k in kernels:
        assert [position[o] for o in k.ops] == sorted(position[o] for o in k.ops)


def test_matmul_kernels(built, dims):
    BATCH, IN, HIDDEN, OUT = dims
    k = by_name(built[0])
    for name, (fan_in, fan_out) in {"fc1": (IN, HIDDEN), "fc2": (HIDDEN, OUT)}.items():
        kern = k[name]
        assert kern.kind == "matmul"
        assert kern.nest.extent("i") == fan_in and kern.nest.extent("j") == fan_out
        assert kern.nest.extent("b") == BATCH and kern.nest.extent("t") == 1
        assert kern.samples == BATCH
        assert kern.params == (f"{name}.weight", f"{name}.bias")
        assert kern.param_numel == fan_in * fan_out + fan_out
        assert (kern.nest.row_dim, kern.nest.col_dim, kern.nest.reduce_dims) == ("i", "j", ("i",))


def test_matmul_nest_roles(built):
    nest = by_name(built[0])["fc1"].nest
    roles = {a.tensor: a.role for a in nest.accesses}
    assert roles == {"x": "stream_in", "w": "resident", "out": "stream_out"}
    assert str(nest) == "for b, t, i, j: out[b,t,j] += x[b,t,i] * w[i,j]"


def test_streams(built, lowered, graph, dims):
    BATCH, IN, HIDDEN, OUT = dims
    k = by_name(built[0])
    fc1, fc2 = k["fc1"], k["fc2"]
    assert set(fc1.stream) == {"x", "dy"}            # first layer: no dX
    assert set(fc2.stream) == {"x", "dy", "dx"}
    assert not computes_dx(fc1) and computes_dx(fc2)
    # fc1 reads the user input; fc2 reads the dropout output
    assert fc1.stream["x"] == lowered.inputs[0]
    [drop] = [op for op in graph.ops if op.short == "native_dropout"]
    assert fc2.stream["x"] == drop.outputs[0]
    # every stream names a value of the graph, with the shape its role implies
    t = lowered.type_of
    assert t[fc1.stream["dy"]].shape == (BATCH, HIDDEN)
    assert t[fc2.stream["dy"]].shape == (BATCH, OUT)
    assert t[fc2.stream["dx"]].shape == (BATCH, HIDDEN)
    assert t[fc2.stream["x"]].shape == (BATCH, HIDDEN)


def test_dx_stream_is_fc2_dx_matmul(built, lowered):
    fc2 = by_name(built[0])["fc2"]
    assert lowered.producer[fc2.stream["dx"]].op == "aten.mm.default"
    assert fc2.stream["dx"] in fc2.ops


def test_generated_kernel(built, lowered, dims):
    BATCH, IN, HIDDEN, OUT = dims
    ls = by_name(built[0])["log_softmax"]
    assert ls.kind == "generated"
    assert ls.params == () and ls.param_numel == 0
    assert [d for d, _ in ls.nest.dims] == ["b", "e"]
    assert ls.nest.extent("b") == BATCH
    assert ls.nest.extent("e") == OUT               # one row of logits per sample
    assert ls.nest.flops_per_point >= 1
    assert lowered.producer[ls.stream["out"]].short == "log_softmax"


def test_dense_macs(built, dims):
    BATCH, IN, HIDDEN, OUT = dims
    k = by_name(built[0])
    # first layer: forward + dW; others: forward + dX + dW
    assert dense_macs(k["fc1"]) == 2 * IN * HIDDEN
    assert dense_macs(k["fc2"]) == 3 * HIDDEN * OUT
    assert dense_macs(k["log_softmax"]) == 0        # element work, not multiply-accumulates


def test_dense_macs_grow_with_layer_size(make_mlp):
    small = by_name(build_kernels(run_pipeline(capture(*make_mlp(hidden=8), method="aot")))[0])
    big = by_name(build_kernels(run_pipeline(capture(*make_mlp(hidden=32), method="aot")))[0])
    assert dense_macs(big["fc1"]) == 4 * dense_macs(small["fc1"])
    assert dense_macs(big["fc2"]) == 4 * dense_macs(small["fc2"])


class _Tokens(nn.Module):
    """Linear layers over (batch, tokens, features): the token dim becomes the nest's `t`."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))).mean(1)


def test_tokens_dimension():
    batch, tokens = 3, 5
    g = capture(_Tokens(), nn.CrossEntropyLoss(),
                (torch.randn(batch, tokens, 8), torch.randint(0, 4, (batch,))), method="aot")
    k = by_name(build_kernels(run_pipeline(g))[0])
    for name, (fi, fo) in {"fc1": (8, 12), "fc2": (12, 4)}.items():
        nest = k[name].nest
        assert (nest.extent("b"), nest.extent("t"), nest.extent("i"), nest.extent("j")) == \
            (batch, tokens, fi, fo)
    assert dense_macs(k["fc2"]) == 3 * tokens * 12 * 4


@pytest.mark.parametrize("depth", [3])
def test_deeper_mlp_orders_layers(depth):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(6, 6), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    g = capture(model, nn.CrossEntropyLoss(), (torch.randn(2, 6), torch.randint(0, 6, (2,))),
                method="aot")
    kernels, _ = build_kernels(run_pipeline(g))
    matmuls = [k.name for k in kernels if k.kind == "matmul"]
    assert matmuls == [str(2 * i) for i in range(depth)]     # Sequential names "0", "2", "4"
    assert [computes_dx(k) for k in kernels if k.kind == "matmul"] == [False] + [True] * (depth - 1)


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_attention_kernel_from_a_transformer(attention):
    """Each block's attention is one hand-optimized kernel; its nest has the heads, the padded
    length over queries and keys, and the head dim; the real tokens are read from the softmax."""
    import wsebench as wb
    batch, length, d_model, heads = 3, 5, 8, 2
    model = wb.models.transformer(vocab=12, d_model=d_model, heads=heads, layers=2, ffn=16,
                                  max_len=length, attention=attention, seed=0)
    x = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [6, 7, 0, 0, 0]])
    g = run_pipeline(capture(model, nn.CrossEntropyLoss(), (x, torch.tensor([0, 1, 0])), method="aot"))
    kernels, kernel_of = build_kernels(g)
    found = [k for k in kernels if k.kind == "attention"]
    assert [k.name for k in found] == ["layers.0.attn.sdpa", "layers.1.attn.sdpa"]
    for k in found:
        n = k.nest
        assert [(d, n.extent(d)) for d, _ in n.dims] == \
            [("b", batch), ("h", heads), ("i", length), ("j", length), ("d", d_model // heads)]
        assert (n.row_dim, n.col_dim) == ("i", "j")
        assert k.params == () and k.param_numel == 0
        assert g.producer[k.stream["probs"]].op == "aten._softmax.default"
        assert kernel_of[k.stream["probs"]] == k.name
        assert dense_macs(k) == 6 * length * length * d_model


def test_registry_maps_each_kind_name_to_its_model():
    assert list(KINDS) == ["matmul", "conv", "attention", "generated"]
    for name, kind in KINDS.items():
        assert kind.name == name
        for method in ("build", "weights_per_core", "memory_per_core", "dense_macs",
                       "assumed_counts", "measured_counts", "components", "governed", "streamed",
                       "weight_view"):
            assert callable(getattr(kind, method)), (name, method)


def test_every_built_kernel_is_of_a_registered_kind(built):
    assert {k.kind for k in built[0]} <= set(KINDS)
