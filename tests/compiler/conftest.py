"""Shared fixtures for the compiler's unit tests.

The captured MLP graphs are session-scoped: capture costs a few hundred ms (seconds for the first
torch.export call), and every pass is pure, so one capture serves every test.
Hand-built kernels (`make_matmul`, `make_generated`: the kinds' own constructors) let the
cost/mapping tests pick any layer size without a torch capture.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from compiler.frontend import capture
from compiler.kernels import build_kernels, generated_kernel, matmul_kernel
from compiler.passes import run_pipeline

IN, HIDDEN, OUT, BATCH = 8, 16, 4, 4


class MLP(nn.Module):
    """Linear-ReLU-Dropout-Linear, the shape DESIGN.md's op counts refer to."""

    def __init__(self, d_in=IN, hidden=HIDDEN, d_out=OUT, p=0.3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


def mlp_case(d_in=IN, hidden=HIDDEN, d_out=OUT, batch=BATCH, p=0.3, seed=0):
    torch.manual_seed(seed)
    model = MLP(d_in, hidden, d_out, p)
    x = torch.randn(batch, d_in)
    y = torch.randint(0, d_out, (batch,))
    return model, nn.CrossEntropyLoss(), (x, y)


@pytest.fixture(scope="session")
def mlp():
    return mlp_case()


@pytest.fixture(scope="session")
def export_graph(mlp):
    model, loss_fn, example = mlp
    return capture(model, loss_fn, example, method="export")


@pytest.fixture(scope="session")
def aot_graph(mlp):
    model, loss_fn, example = mlp
    return capture(model, loss_fn, example, method="aot")


@pytest.fixture(scope="session", params=["export", "aot"])
def graph(request, export_graph, aot_graph):
    """The MLP joint graph from each capture path."""
    return {"export": export_graph, "aot": aot_graph}[request.param]


@pytest.fixture(scope="session")
def lowered(graph):
    """The MLP graph after the pass pipeline (dropout rewritten to mask inputs)."""
    return run_pipeline(graph)


@pytest.fixture(scope="session")
def built(lowered):
    """(kernels, kernel_of) of the lowered MLP graph."""
    return build_kernels(lowered)


@pytest.fixture(scope="session")
def make_matmul():
    return matmul_kernel


@pytest.fixture(scope="session")
def make_generated():
    return generated_kernel


@pytest.fixture(scope="session")
def make_mlp():
    return mlp_case
