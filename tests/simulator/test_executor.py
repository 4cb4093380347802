"""simulator.executor: the specialized, constant-folded step list computes exactly what the general
kernels compute, op by op, on graphs captured from torch (the general kernels are checked against
torch in test_ops.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.frontend import capture
from compiler.ir import Graph, Op, Ref, TensorType
from compiler.passes import run_pipeline
from simulator.executor import _ALIAS, _CONST, _FAST, _GENERAL, Executor
from simulator.ops import run_op

_NOOP = {"aten.alias.default", "aten.detach.default", "aten.clone.default"}


class _Mixer(nn.Module):
    """Embedding, layer norm, attention-style softmax, GELU, tanh, dropout, mean: many ops in one graph."""

    def __init__(self):
        super().__init__()
        self.emb, self.ln = nn.Embedding(20, 16), nn.LayerNorm(16)
        self.fc, self.out, self.drop = nn.Linear(16, 16), nn.Linear(16, 5), nn.Dropout(0.2)

    def forward(self, idx):
        h = self.ln(self.emb(idx))
        h = h + torch.softmax(h @ h.transpose(1, 2) / 4, dim=-1) @ h
        h = self.drop(torch.tanh(F.gelu(self.fc(h))))
        return self.out(h.mean(1))


def _mlp():
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5))


def _graph_and_env(model, x, y, loss_fn=None):
    graph = run_pipeline(capture(model, loss_fn or nn.CrossEntropyLoss(), (x, y)))
    values = dict(model.named_parameters())
    rng = np.random.default_rng(0)
    env = {graph.inputs[0]: x.numpy(), graph.inputs[1]: y.numpy()}
    env.update({name: values[fqn].detach().numpy().copy() for name, fqn in graph.params})
    env.update({name: rng.random(graph.type_of[name].shape) >= p for name, p in graph.masks})
    return graph, env


def _reference_run(graph, env):
    """The general kernels, one `run_op` per op, results cast to the declared dtype."""
    def resolve(v):
        return env[v.name] if isinstance(v, Ref) else tuple(resolve(i) for i in v) if isinstance(v, tuple) else v

    for op in graph.ops:
        if op.op in _NOOP:
            env[op.outputs[0]] = env[op.args[0].name]
            continue
        result = run_op(np, op.op, resolve(op.args), {k: resolve(v) for k, v in op.kwargs})
        for name, value in zip(op.outputs, result if isinstance(result, tuple) else (result,)):
            if value is not None:
                env[name] = np.asarray(value, dtype=graph.type_of[name].dtype)
    return env


def _assert_same_env(ours, reference):
    assert ours.keys() == reference.keys()
    for name, ref in reference.items():
        mine = ours[name]
        assert isinstance(mine, np.ndarray) and mine.dtype == ref.dtype and mine.shape == ref.shape, name
        np.testing.assert_array_equal(mine, ref, err_msg=name)


@pytest.mark.parametrize("which", ["mlp", "mixer"])
def test_every_value_equals_the_general_kernels(which):
    if which == "mlp":
        model, x, y = _mlp(), torch.randn(16, 12), torch.randint(0, 5, (16,))
    else:
        model, x, y = _Mixer(), torch.randint(0, 20, (4, 6)), torch.randint(0, 5, (4,))
    graph, env = _graph_and_env(model, x, y)
    executor = Executor(graph, np)
    kinds = [step.kind for step in executor.steps]
    assert kinds.count(_FAST) > len(kinds) // 2       # most ops take a fast path
    ours = executor.run(dict(env))
    _assert_same_env(ours, _reference_run(graph, dict(env)))
    again = executor.run(dict(env))                   # a second run reuses the folded constants
    _assert_same_env(again, ours)


def test_constants_are_folded_once_and_read_only():
    graph, env = _graph_and_env(_mlp(), torch.randn(8, 12), torch.randint(0, 5, (8,)))
    executor = Executor(graph, np)
    folded = [step for step in executor.steps if step.kind == _CONST]
    assert folded and all(step.outputs[0] in executor.constants for step in folded)
    for value in executor.constants.values():
        assert not value.flags.writeable
    assert any(step.kind == _ALIAS for step in executor.steps)


def test_placeholders_are_checked_and_cast():
    graph, env = _graph_and_env(_mlp(), torch.randn(8, 12), torch.randint(0, 5, (8,)))
    executor = Executor(graph, np)
    expected = executor.run(dict(env))
    x = graph.inputs[0]
    wide = executor.run({**env, x: env[x].astype(np.float64)})   # cast to the declared float32
    np.testing.assert_array_equal(wide[graph.loss], expected[graph.loss])
    with pytest.raises(ValueError, match="compiled for"):
        executor.run({**env, x: np.zeros((4, 12), np.float32)})


def test_generated_steps_handle_scalars_tuples_casts_and_general_kernels():
    """The generated code's slow paths: a tuple argument (general kernel), two outputs, a NumPy
    scalar result, a result of another dtype than declared, an alias and a folded constant."""
    f32 = TensorType((4, 3), "float32")
    ops = (Op("aten.cat.default", ((Ref("x"), Ref("y")),), (), ("c",)),
           Op("aten.var_mean.correction", (Ref("c"),), (("dim", (0,)), ("correction", 1)), ("v", "m")),
           Op("aten.sum.default", (Ref("v"),), (), ("s",)),
           Op("aten.mul.Tensor", (Ref("s"), 2.0), (), ("s64",)),
           Op("aten.alias.default", (Ref("m"),), (), ("al",)),
           Op("aten.scalar_tensor.default", (0,), (("dtype", "float32"),), ("z",)))
    types = {"x": f32, "y": f32, "c": TensorType((8, 3), "float32"), "v": TensorType((3,), "float32"),
             "m": TensorType((3,), "float32"), "s": TensorType((), "float32"), "s64": TensorType((), "float64"),
             "al": TensorType((3,), "float32"), "z": TensorType((), "float32")}
    graph = Graph(inputs=("x", "y"), params=(), buffers=(), masks=(), ops=ops, types=tuple(types.items()),
                  loss="s", grads=())
    rng = np.random.default_rng(2)
    env = {"x": rng.standard_normal((4, 3)).astype(np.float32), "y": rng.standard_normal((4, 3)).astype(np.float32)}
    executor = Executor(graph, np)
    assert [step.kind for step in executor.steps] == [_GENERAL, _GENERAL, _FAST, _FAST, _ALIAS, _CONST]
    ours = executor.run(dict(env))
    _assert_same_env(ours, _reference_run(graph, dict(env)))
    assert ours["s64"].dtype == np.float64 and ours["al"] is ours["m"]


class _Watch(dict):
    """An env that records the most values it ever held at once."""

    def __init__(self, *args):
        super().__init__(*args)
        self.most = len(self)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.most = max(self.most, len(self))


@pytest.mark.parametrize("which", ["mlp", "mixer"])
def test_values_no_caller_reads_are_dropped_after_their_last_use(which):
    if which == "mlp":
        model, x, y = _mlp(), torch.randn(16, 12), torch.randint(0, 5, (16,))
    else:
        model, x, y = _Mixer(), torch.randint(0, 20, (4, 6)), torch.randint(0, 5, (4,))
    graph, env = _graph_and_env(model, x, y)
    keep = {graph.loss, *(g for _, g in graph.grads)}
    everything = Executor(graph, np).run(_Watch(env))
    lean = Executor(graph, np, keep=keep).run(_Watch(env))
    for name in keep:                                       # what the caller reads is the same
        np.testing.assert_array_equal(lean[name], everything[name])
    dropped = set(everything) - set(lean)
    assert dropped and not dropped & (keep | set(graph.placeholders))
    assert lean.most < everything.most                      # fewer values held at once
    retained = next(iter(dropped))
    executor = Executor(graph, np, keep=keep)
    executor.retain([retained])
    np.testing.assert_array_equal(executor.run(dict(env))[retained], everything[retained])


def test_a_gelus_erf_is_handed_on_to_its_decomposed_backward():
    """GELU's decomposed backward computes erf(x * M_SQRT1_2) again: the GELU step gives that erf,
    the erf step is left out, and x * M_SQRT1_2 is not computed unless a caller reads it. Every
    value equals the general kernels'; an erf of another factor is no GELU's and runs as it is."""
    f32 = TensorType((4, 3), "float32")
    ops = (Op("aten.gelu.default", (Ref("x"),), (), ("g",)),
           Op("aten.mul.Tensor", (Ref("x"), 0.7071067811865476), (), ("m",)),
           Op("aten.erf.default", (Ref("m"),), (), ("e",)),
           Op("aten.mul.Tensor", (Ref("x"), 0.5), (), ("h",)),
           Op("aten.erf.default", (Ref("h"),), (), ("e2",)),
           Op("aten.add.Tensor", (Ref("e"), Ref("e2")), (), ("s",)),
           Op("aten.add.Tensor", (Ref("s"), Ref("g")), (), ("out",)))
    graph = Graph(inputs=("x",), params=(), buffers=(), masks=(), ops=ops, loss="out", grads=(),
                  types=tuple((n, f32) for n in ("x", "g", "m", "e", "h", "e2", "s", "out")))
    env = {"x": np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32) * 3}
    reference = _reference_run(graph, dict(env))
    executor = Executor(graph, np)
    outputs = [step.outputs for step in executor.steps]
    assert outputs[0] == ("g", "e") and ("e",) not in outputs and ("e2",) in outputs
    _assert_same_env(executor.run(dict(env)), reference)     # every value kept: m is computed
    lean = Executor(graph, np, keep={"out"})
    assert [s.outputs for s, live in zip(lean.steps, lean._live()) if not live] == [("m",)]
    assert set(lean.run(dict(env))) == {"x", "out"}
    np.testing.assert_array_equal(lean.run(dict(env))["out"], reference["out"])
    lean.retain(["m"])                                         # asked for: computed again
    np.testing.assert_array_equal(lean.run(dict(env))["m"], reference["m"])


def test_elementwise_steps_write_into_dying_inputs_that_nothing_else_holds():
    """An elementwise step may write its result over an input that dies there, unless another
    value still sees that array (a view of it, an alias): the values stay the general kernels'."""
    f32 = TensorType((3, 4), "float32")
    ops = (Op("aten.exp.default", (Ref("x"),), (), ("e",)),
           Op("aten.mul.Tensor", (Ref("e"), 2.0), (), ("m",)),            # e dies here: reused
           Op("aten.exp.default", (Ref("m"),), (), ("f",)),
           Op("aten.view.default", (Ref("f"), [12]), (), ("v",)),
           Op("aten.alias.default", (Ref("f"),), (), ("al",)),
           Op("aten.neg.default", (Ref("f"),), (), ("n",)),                 # f dies, but v and al see it
           Op("aten.view.default", (Ref("n"), [12]), (), ("nv",)),
           Op("aten.add.Tensor", (Ref("nv"), Ref("v")), (), ("s",)),
           Op("aten.view.default", (Ref("al"), [12]), (), ("av",)),
           Op("aten.sub.Tensor", (Ref("s"), Ref("av")), (), ("out",)))
    types = {n: f32 for n in ("x", "e", "m", "f", "al", "n")}
    types.update({n: TensorType((12,), "float32") for n in ("v", "nv", "s", "av", "out")})
    graph = Graph(inputs=("x",), params=(), buffers=(), masks=(), ops=ops, types=tuple(types.items()),
                  loss="out", grads=())
    env = {"x": np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)}
    reference = _reference_run(graph, dict(env))
    executor = Executor(graph, np, keep={"out"})
    written = {}

    def recorded(step):
        def call(*tensors, out=None):
            written[step.outputs[0]] = out is not None and any(out is t for t in tensors)
            return step.call(*tensors, out=out)
        call.elementwise_out = True
        return step._replace(call=call)

    executor.steps = [recorded(s) if s.outputs[0] in ("m", "n") else s for s in executor.steps]
    executor._run_steps = executor._generate()
    ours = executor.run(dict(env))
    np.testing.assert_array_equal(ours["out"], reference["out"])
    assert written == {"m": True, "n": False}
