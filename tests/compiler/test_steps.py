"""compiler.steps: which `running` marker governs each op of a captured Universal Transformer."""
from __future__ import annotations

import pytest
import torch

from compiler.frontend import capture
from compiler.ir import Graph
from compiler.kernels import build_kernels
from compiler.passes import MATMUL_OPS, assign_kernels, run_pipeline
from compiler.op_names import RUNNING_GRAD_OP, RUNNING_OP
from compiler.steps import markers
from wsebench.universal import universal_transformer, ut_loss

STEPS = 3


@pytest.fixture(scope="module")
def ut_graph() -> Graph:
    model = universal_transformer(vocab=5, d_model=8, heads=2, ffn=8, max_steps=STEPS, classes=2,
                                  max_len=6, seed=0)
    x = torch.tensor([[1, 2, 3, 0, 0, 0], [4, 1, 2, 3, 4, 1]])
    return run_pipeline(capture(model, ut_loss(model), (x, torch.tensor([0, 1])), method="aot"))


def test_steps_and_the_end_of_the_recurrence_are_marked(ut_graph):
    found = markers(ut_graph)
    assert len(found.masks) == STEPS + 1
    assert len(set(found.masks[:STEPS])) == STEPS          # each step has its own mask


def test_each_use_of_the_shared_weight_is_governed_by_its_step(ut_graph):
    found, kernel_of = markers(ut_graph), assign_kernels(ut_graph)
    uses = [op for op in ut_graph.ops if op.op in MATMUL_OPS and kernel_of[op.name] == "block.attn.q"]
    forward, backward = uses[:STEPS], uses[STEPS:]
    assert [found.segment[op.name] for op in forward] == list(range(STEPS))
    # backward runs the steps in reverse: its first dX / dW belong to the last step
    assert sorted(found.segment[op.name] for op in backward) == sorted(2 * list(range(STEPS)))
    assert found.segment[backward[0].name] == STEPS - 1 and found.segment[backward[-1].name] == 0
    assert all(found.mask_of[op.name] == found.masks[found.segment[op.name]] for op in uses)


def test_ops_outside_every_step_are_governed_by_the_real_positions(ut_graph):
    found = markers(ut_graph)
    embedding = next(op for op in ut_graph.ops if op.op == "aten.embedding.default")
    norms = [op for op in ut_graph.ops if op.op == "aten.native_layer_norm.default"]
    assert found.segment[embedding.name] == 0               # before the first marker
    assert found.segment[norms[-1].name] == STEPS           # the final norm, after the loop
    embedding_backward = ut_graph.producer[dict(ut_graph.grads)["embed.weight"]]
    assert found.segment[embedding_backward.name] == 0     # after the last running_grad


def test_markers_pair_forward_and_backward(ut_graph):
    forward = [op for op in ut_graph.ops if op.op == RUNNING_OP]
    backward = [op for op in ut_graph.ops if op.op == RUNNING_GRAD_OP]
    found = markers(ut_graph)
    assert [found.segment[op.name] for op in backward] == list(range(STEPS, -1, -1))
    assert [found.segment[op.name] for op in forward] == list(range(STEPS + 1))


def test_a_graph_without_markers_has_none(lowered):
    found = markers(lowered)
    assert not found and found.segment == {}


def test_kernels_carry_one_call_per_step(ut_graph):
    kernels = {k.name: k for k in build_kernels(ut_graph)[0]}
    for name in ("block.attn.q", "block.ffn.fc1", "halt", "block.attn.sdpa"):
        assert kernels[name].steps == STEPS
    assert kernels["head"].steps == 1
    q = kernels["block.attn.q"]
    assert q.nest.extent("t") == STEPS * 6                 # every step's tokens
    assert len({call["x"] for call in q.calls}) == STEPS
    assert all(set(call) == {"x", "dy", "dx"} for call in q.calls)
