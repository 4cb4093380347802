"""compiler.frontend: torch -> IR capture (both paths), optimizer reading, module attribution."""
from __future__ import annotations

import collections
import warnings

import pytest
import torch
import torch.nn as nn

import compiler.frontend as compiler_frontend
from compiler.frontend import CAPTURE_METHODS, CaptureError, capture, module_of_ops, optimizer_spec, \
    optimizer_specs
from compiler.ir import verify
from compiler.passes import owner_module, param_root
from compiler.errors import ConfigError

IMPORTANT = ("addmm", "mm", "relu", "native_dropout", "log_softmax")


def important_ops(graph) -> collections.Counter:
    return collections.Counter(op.short for op in graph.ops if op.short in IMPORTANT)


# ---------------------------------------------------------------- capture


def test_both_paths_give_the_same_parameters(export_graph, aot_graph, mlp):
    model = mlp[0]
    fqns = [name for name, _ in model.named_parameters()]
    for g in (export_graph, aot_graph):
        assert [fqn for _, fqn in g.params] == fqns
        assert not any(f.startswith("model.") for _, f in g.params)
        assert sorted(f for f, _ in g.grads) == sorted(fqns)


def test_capture_metadata(export_graph, aot_graph):
    assert dict(export_graph.meta)["capture"] == "export"
    assert dict(aot_graph.meta)["capture"] == "aot"


def test_grads_have_parameter_shapes(graph):
    shapes = {fqn: graph.type_of[v].shape for v, fqn in graph.params}
    for fqn, g in graph.grads:
        assert graph.type_of[g].shape == shapes[fqn]
        assert graph.type_of[g].dtype == "float32"


def test_param_types_match_model(graph, mlp):
    model = mlp[0]
    want = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert {fqn: graph.type_of[v].shape for v, fqn in graph.params} == want


def test_loss_is_a_float32_scalar(graph):
    t = graph.type_of[graph.loss]
    assert t.dtype == "float32" and t.shape == ()


def test_inputs_are_x_then_y(graph, mlp):
    x, y = mlp[2]
    assert len(graph.inputs) == 2
    assert graph.type_of[graph.inputs[0]].shape == tuple(x.shape)
    assert graph.type_of[graph.inputs[1]].dtype == "int64"
    assert graph.buffers == () and graph.masks == ()


def test_same_important_ops_on_both_paths(export_graph, aot_graph):
    ref = important_ops(export_graph)
    assert ref == important_ops(aot_graph)
    # forward: one addmm per Linear; backward: dW for both, dX for fc2 only
    assert ref["addmm"] == 2 and ref["mm"] == 3
    assert ref["native_dropout"] == 1 and ref["relu"] == 1 and ref["log_softmax"] == 1


def test_op_count_is_sane(graph):
    distinct = {op.op for op in graph.ops}
    assert 15 <= len(distinct) <= 40, sorted(distinct)     # DESIGN.md: 24 distinct for the MLP
    assert len(distinct) <= len(graph.ops) <= 150
    assert all(op.op.startswith("aten.") for op in graph.ops)


def test_no_getitem_nodes_survive(graph):
    assert not any("getitem" in op.op for op in graph.ops)
    [drop] = [op for op in graph.ops if op.short == "native_dropout"]
    assert len(drop.outputs) == 2
    assert graph.type_of[drop.outputs[1]].dtype == "bool"


def test_aot_tangent_seed_follows_the_loss(aot_graph):
    names = [op.name for op in aot_graph.ops]
    seeds = [op for op in aot_graph.ops if op.op == "aten.ones_like.default"
             and op.args and getattr(op.args[0], "name", None) == aot_graph.loss]
    assert len(seeds) == 1
    assert names.index(seeds[0].name) > names.index(aot_graph.loss)


def test_capture_is_deterministic(mlp, export_graph):
    model, loss_fn, example = mlp
    assert capture(model, loss_fn, example, method="aot") == capture(model, loss_fn, example, method="aot")


def test_auto_gives_a_verified_graph(mlp):
    model, loss_fn, example = mlp
    g = capture(model, loss_fn, example)
    assert verify(g) is g
    assert dict(g.meta)["capture"] in ("export", "aot")


def test_capture_leaves_model_parameters_untouched(make_mlp):
    model, loss_fn, example = make_mlp(seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    capture(model, loss_fn, example, method="aot")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
        assert model.get_parameter(k).grad is None


def test_frozen_parameter_is_refused(make_mlp):
    model, loss_fn, example = make_mlp()
    model.fc1.bias.requires_grad_(False)
    with pytest.raises(ConfigError, match="fc1.bias"):
        capture(model, loss_fn, example, method="aot")


def test_model_without_parameters_is_refused():
    with pytest.raises(ConfigError, match="no parameters"):
        capture(nn.ReLU(), nn.MSELoss(), (torch.randn(2, 3), torch.randn(2, 3)), method="aot")


@pytest.mark.parametrize("method", ["jit", "", "EXPORT"])
def test_bad_method_is_refused(mlp, method):
    model, loss_fn, example = mlp
    with pytest.raises(ConfigError) as err:
        capture(model, loss_fn, example, method=method)
    msg = str(err.value)
    assert repr(method) in msg
    for allowed in CAPTURE_METHODS:
        assert allowed in msg


@pytest.mark.parametrize("example", [(torch.randn(2, 8),), "xy", None])
def test_bad_example_is_refused(mlp, example):
    model, loss_fn, _ = mlp
    with pytest.raises(ConfigError, match="example"):
        capture(model, loss_fn, example, method="aot")


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.b = nn.Linear(8, 4)   # never called: gets no gradient

    def forward(self, x):
        return self.a(x)


def test_unused_parameter_export_raises_capture_error(mlp):
    with pytest.raises(CaptureError):
        capture(_Unused(), nn.CrossEntropyLoss(), mlp[2], method="export")


@pytest.mark.parametrize("method", ["aot", "auto"])
def test_unused_parameter_raises_capture_error(mlp, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CaptureError, match="b.weight"):
            capture(_Unused(), nn.CrossEntropyLoss(), mlp[2], method=method)


def test_wider_model_changes_shapes_not_structure(make_mlp, export_graph):
    model, loss_fn, example = make_mlp(d_in=12, hidden=24, d_out=6, batch=3)
    g = capture(model, loss_fn, example, method="aot")
    assert important_ops(g) == important_ops(export_graph)
    assert g.type_of[g.inputs[0]].shape == (3, 12)
    assert {fqn: g.type_of[v].shape for v, fqn in g.params}["fc2.weight"] == (6, 24)


# ---------------------------------------------------------------- module_of_ops


@pytest.fixture(scope="module")
def owners(mlp):
    return module_of_ops(*mlp)


def test_module_of_ops_names_modules(owners):
    values = set(owners.values())
    assert {"fc1", "fc2"} <= values
    assert not any(v.startswith("model.") or v.startswith("L[") for v in values)


def test_module_of_ops_agrees_with_parameter_owners(owners, export_graph):
    """Forward ops that read a Linear's weight are attributed to that Linear."""
    roots = param_root(export_graph)
    checked = 0
    for op in export_graph.ops:
        if op.short == "addmm":
            fqns = {roots[r] for r in op.refs() if r in roots}
            assert {owner_module(f) for f in fqns} == {owners[op.name]}
            checked += 1
    assert checked == 2


def test_module_of_ops_relu(owners, export_graph):
    by_short = {op.short: op.name for op in export_graph.ops}
    assert owners[by_short["relu"]] == "act"
    assert owners[by_short["log_softmax"]] == "loss_fn"


def test_module_of_ops_covers_tuple_returning_ops(owners, export_graph):
    [drop] = [op for op in export_graph.ops if op.short == "native_dropout"]
    assert owners.get(drop.name) == "drop"


# ---------------------------------------------------------------- optimizer_spec


@pytest.fixture
def params():
    return [nn.Parameter(torch.zeros(3))]


def test_sgd_hyperparameters(params):
    spec = optimizer_spec(torch.optim.SGD(params, lr=0.05, momentum=0.8, dampening=0.0,
                                          nesterov=True, weight_decay=1e-3))
    assert (spec.kind, spec.lr, spec.momentum, spec.dampening, spec.nesterov, spec.weight_decay) \
        == ("sgd", 0.05, 0.8, 0.0, True, 1e-3)
    assert spec.state_slots == 1


def test_sgd_dampening(params):
    spec = optimizer_spec(torch.optim.SGD(params, lr=0.5, momentum=0.5, dampening=0.25))
    assert (spec.lr, spec.momentum, spec.dampening, spec.nesterov) == (0.5, 0.5, 0.25, False)


def test_plain_sgd_has_no_state(params):
    spec = optimizer_spec(torch.optim.SGD(params, lr=0.1))
    assert spec.kind == "sgd" and spec.momentum == 0 and spec.state_slots == 0


def test_adam_hyperparameters(params):
    spec = optimizer_spec(torch.optim.Adam(params, lr=2e-3, betas=(0.8, 0.95), eps=1e-6,
                                           weight_decay=0.1))
    assert (spec.kind, spec.lr, spec.betas, spec.eps, spec.weight_decay) == \
        ("adam", 2e-3, (0.8, 0.95), 1e-6, 0.1)
    assert spec.state_slots == 2


def test_adamw_hyperparameters(params):
    spec = optimizer_spec(torch.optim.AdamW(params, lr=3e-4, betas=(0.85, 0.9), weight_decay=0.2))
    assert (spec.kind, spec.lr, spec.betas, spec.weight_decay) == ("adamw", 3e-4, (0.85, 0.9), 0.2)


def test_adamw_default_weight_decay_is_torchs(params):
    opt = torch.optim.AdamW(params)
    assert optimizer_spec(opt).weight_decay == opt.defaults["weight_decay"]


def test_adam_with_decoupled_weight_decay_is_adamw(params):
    spec = optimizer_spec(torch.optim.Adam(params, lr=1e-3, weight_decay=0.1,
                                           decoupled_weight_decay=True))
    assert spec.kind == "adamw" and spec.weight_decay == 0.1


def test_tensor_lr_becomes_a_float(params):
    spec = optimizer_spec(torch.optim.SGD(params, lr=torch.tensor(0.25)))
    assert isinstance(spec.lr, float) and spec.lr == 0.25


@pytest.mark.parametrize("make,option", [
    (lambda p: torch.optim.Adam(p, amsgrad=True), "amsgrad"),
    (lambda p: torch.optim.AdamW(p, amsgrad=True), "amsgrad"),
    (lambda p: torch.optim.SGD(p, lr=0.1, maximize=True), "maximize"),
    (lambda p: torch.optim.Adam(p, maximize=True), "maximize"),
    (lambda p: torch.optim.Adam(p, betas=(torch.tensor(0.9), torch.tensor(0.99))), "betas"),
])
def test_unsupported_option_is_named(params, make, option):
    with pytest.raises(ConfigError, match=option):
        optimizer_spec(make(params))


@pytest.mark.parametrize("make,name", [
    (lambda p: torch.optim.RMSprop(p), "RMSprop"),
    (lambda p: torch.optim.Adagrad(p), "Adagrad"),
    (lambda p: [p], "list"),
    (lambda p: "sgd", "str"),
])
def test_unsupported_optimizer_is_named(params, make, name):
    with pytest.raises(ConfigError, match=name):
        optimizer_spec(make(params))


def test_each_param_group_is_read():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    first, second = optimizer_specs(opt)
    assert (first.lr, first.momentum, second.lr, second.momentum) == (0.1, 0.0, 0.5, 0.9)
    assert optimizer_spec(opt) == first          # the group the cost model prices


def test_an_unsupported_option_in_any_group_is_named_with_its_group():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "amsgrad": True}])
    with pytest.raises(ConfigError, match="param group 1: .*amsgrad"):
        optimizer_spec(opt)


def test_optimizer_spec_reads_the_current_group(params):
    """A scheduler or the user may change lr after construction; the spec reads what is there."""
    opt = torch.optim.SGD(params, lr=0.1)
    opt.param_groups[0]["lr"] = 0.01
    assert optimizer_spec(opt).lr == 0.01


# ---------------------------------------------------------------- attention


class _Sdpa(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in self.qkv(x).split(8, -1))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


@pytest.mark.parametrize("method", ["export", "aot"])
def test_sdpa_at_dropout_0_captures_its_math_decomposition(method):
    """CPU flash attention's backward is one opaque op; the capture traces the math path."""
    graph = capture(_Sdpa(), lambda out, y: (out - y).pow(2).mean(),
                    (torch.randn(2, 5, 8), torch.randn(2, 2, 5, 4)), method=method)
    ops = {op.short for op in graph.ops}
    assert not any("scaled_dot_product" in name for name in ops)
    assert {"softmax", "bmm"} <= ops


def test_math_attention_restores_the_backends():
    from torch.backends.cuda import flash_sdp_enabled, math_sdp_enabled
    from compiler.frontend import math_attention
    before = flash_sdp_enabled(), math_sdp_enabled()
    with math_attention():
        assert not flash_sdp_enabled() and math_sdp_enabled()
    assert (flash_sdp_enabled(), math_sdp_enabled()) == before


# ---------------------------------------------------------------- tied parameters


class _Tied(nn.Module):
    """An embedding whose weight is also the output layer's (nanoGPT's wte / lm_head)."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(6, 4)
        self.lm_head = nn.Linear(4, 6, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x):
        return self.lm_head(self.wte(x))


def _tied_case():
    x = torch.randint(0, 6, (3,))
    return _Tied(), lambda out, y: nn.functional.cross_entropy(out, y), (x, x)


def test_tied_parameters_name_each_alias():
    assert compiler_frontend.tied_parameters(_Tied()) == {"lm_head.weight": "wte.weight"}
    assert compiler_frontend.tied_parameters(nn.Linear(2, 2)) == {}


@pytest.mark.parametrize("method", ["auto", "aot"])
def test_tied_weight_is_one_input_with_the_summed_gradient(method):
    model, loss_fn, example = _tied_case()
    graph = capture(model, loss_fn, example, method=method)
    assert [f for _, f in graph.params] == ["wte.weight"]
    assert [f for f, _ in graph.grads] == ["wte.weight"]
    total = graph.producer[dict(graph.grads)["wte.weight"]]
    assert total.op == "aten.add.Tensor" and len(set(total.refs())) == 2
    # the lm_head's use reads the same input, through a view
    (weight,) = [n for n, _ in graph.params]
    readers = [op for op in graph.ops if weight in op.refs()]
    assert any(op.op == "aten.alias.default" for op in readers)
    roots = param_root(graph)
    assert {roots[op.name] for op in readers if op.name in roots} == {"wte.weight"}


def test_tied_weight_refused_on_the_export_path_with_the_fix():
    model, loss_fn, example = _tied_case()
    with pytest.raises(CaptureError, match="capture_method='aot'"):
        capture(model, loss_fn, example, method="export")


# ---------------------------------------------------------------- tensor constants


class _WithConstant(nn.Module):
    """Builds tensors from Python data in forward, as HuggingFace's empty KV cache does."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        cache = torch.tensor([])
        return torch.cat([cache, self.fc(x).reshape(-1)]) * torch.tensor([0.5, 2.0, -1.0]).repeat(2)


@pytest.mark.parametrize("method", ["export", "aot"])
def test_tensor_constants_are_carried_in_the_graph(method):
    from compiler.op_names import CONSTANT_OP
    graph = capture(_WithConstant(), lambda out, y: (out - y).pow(2).sum(),
                    (torch.randn(2, 3), torch.randn(6)), method=method)
    constants = {op.args[0] for op in graph.ops if op.op == CONSTANT_OP}
    assert (0.5, 2.0, -1.0) in constants and () in constants
    assert all(graph.type_of[op.name].dtype == "float32" for op in graph.ops if op.op == CONSTANT_OP)


def test_a_large_tensor_constant_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(compiler_frontend, "MAX_CONSTANT_NUMEL", 2)
    with pytest.raises(CaptureError, match="register_buffer"):
        capture(_WithConstant(), lambda out, y: (out - y).pow(2).sum(),
                (torch.randn(2, 3), torch.randn(6)), method="aot")


# ---------------------------------------------------------------- what the loss is given


class _Output:
    def __init__(self, logits):
        self.logits = logits


@pytest.mark.parametrize("wrap", [lambda t: t, _Output, lambda t: {"logits": t},
                                  lambda t: (t, None)])
def test_a_loss_module_gets_the_logits_of_any_output(wrap):
    logits = torch.randn(2, 3)
    assert compiler_frontend.loss_input(wrap(logits), nn.CrossEntropyLoss()) is logits


def test_a_loss_function_gets_the_output_object_itself():
    out = _Output(torch.randn(2, 3))
    assert compiler_frontend.loss_input(out, lambda o, y: o.logits.sum()) is out


def test_an_output_without_logits_is_refused_for_a_loss_module():
    with pytest.raises(ConfigError, match="no logits"):
        compiler_frontend.loss_input({"hidden": torch.randn(2)}, nn.MSELoss())


# ---------------------------------------------------------------- outputs torch does not compute


def test_an_output_torch_leaves_out_has_no_type_and_nothing_reads_it():
    """The first convolution's backward computes no input gradient (None): the capture names
    that output without a type, and `verify` only requires types of values that are read."""
    from compiler.ir import IRError, Op, Ref
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    graph = capture(model, nn.CrossEntropyLoss(), (torch.randn(2, 1, 4, 4), torch.tensor([0, 1])),
                    method="aot")
    untyped = [out for op in graph.ops for out in op.outputs if out not in graph.type_of]
    assert untyped and not any(name in graph.consumers for name in untyped)
    reader = Op("aten.neg.default", (Ref(untyped[0]),), (), ("reads_it",))
    types = graph.types + (("reads_it", graph.type_of[graph.loss]),)
    with pytest.raises(IRError, match="without a type"):
        verify(graph.replace(ops=graph.ops + (reader,), types=types))


class _ChecksUnlessTraced(nn.Module):
    """HuggingFace's `warn_if_padding_and_no_attention_mask`: a data-dependent check that the
    model skips when `torch.compiler.is_compiling()` says it is being traced."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        if not torch.compiler.is_compiling() and (x == 0).any():
            warnings.warn("padding without an attention mask")
        return self.fc(x)


@pytest.mark.parametrize("method", ["export", "aot"])
def test_model_code_sees_it_is_traced_on_both_paths(method):
    graph = capture(_ChecksUnlessTraced(), nn.CrossEntropyLoss(),
                    (torch.randn(4, 3), torch.tensor([0, 1, 1, 0])), method=method)
    assert {f for _, f in graph.params} == {"fc.weight", "fc.bias"}
