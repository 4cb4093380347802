"""simulator.measure.compiled: the measurement compiled once per plan gives, step after step,
exactly what the general path gives, and stands aside where it does not apply."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler import compile_plan, wafer
from compiler.frontend import capture, optimizer_spec
from compiler.passes import run_pipeline
from simulator.backend import get_backend
from simulator.measure import PlanContext, measure_step
from simulator.training import Trainer
from simulator.weight_sparsity import WeightSparsity

T = wafer("classroom")


class _ResidualMLP(nn.Module):
    """LayerNorm and GELU kernels (element-wise, counted without the data) between matmuls."""

    def __init__(self):
        super().__init__()
        self.embed, self.norm = nn.Linear(9, 16), nn.LayerNorm(16)
        self.up, self.down, self.head = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 4)

    def forward(self, x):
        x = self.embed(x)
        return self.head(x + self.down(nn.functional.gelu(self.up(self.norm(x)))))


MODELS = {"mlp": lambda: wb.models.mlp(9, 20, 4, depth=3, activation="relu"),
          "residual": _ResidualMLP}


def _trainer(model: str, harvest: bool = True, sparsity=None):
    torch.manual_seed(0)
    net = MODELS[model]()
    x, y = wb.data.blobs(12, 9, 4, seed=0)
    graph = run_pipeline(capture(net, nn.CrossEntropyLoss(), (x, y)))
    plan = compile_plan(graph, T, optimizer_spec(torch.optim.SGD(net.parameters(), lr=0.1)))
    params = {k: v.detach().numpy().copy() for k, v in net.named_parameters()}
    ws = WeightSparsity.from_dict({"sparsity": sparsity, "seed": 1}) if sparsity else None
    return Trainer(plan, params, {}, get_backend("numpy"), harvest=harvest,
                   weight_sparsity=ws), x.numpy(), y.numpy()


def _general(trainer) -> PlanContext:
    """A context whose compiled measurement is ruled out: the general path measures."""
    context = PlanContext(trainer.plan)
    context.compiled = {0: None, 1: None}
    return context


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.step_cycles, b.step_cycles)
    assert a.busy_total == b.busy_total
    for ka, kb in zip(a.kernels, b.kernels):
        assert ka.name == kb.name
        np.testing.assert_array_equal(ka.samples, kb.samples)
        np.testing.assert_array_equal(ka.updates, kb.updates)
        np.testing.assert_array_equal(ka.macs, kb.macs)
        np.testing.assert_array_equal(ka.core_busy, kb.core_busy)
        for sa, sb in zip(ka.split(), kb.split()):
            np.testing.assert_array_equal(sa, sb)
        assert ka.busy_total == kb.busy_total


@pytest.mark.parametrize("model, harvest", [("mlp", True), ("mlp", False), ("residual", True)])
def test_compiled_steps_equal_the_general_path(model, harvest):
    """Three steps on different batches: each one's cycles, busy cycles and every kernel's
    timing (per sample, per core, its MACs) are the general path's, bit for bit."""
    trainer, x, y = _trainer(model, harvest)
    general = _general(trainer)
    rng = np.random.default_rng(3)
    for _ in range(3):
        order = rng.permutation(len(x))
        env = trainer.executor.run(trainer._environment(x[order] * rng.uniform(0.5, 2.0), y[order],
                                                        trainer.draw_masks()))
        compiled = measure_step(trainer.context, np, env, harvest)
        _same(compiled, measure_step(general, np, env, harvest))
    own = 0 if harvest else 1
    assert trainer.context.compiled[own] is not None            # the program did measure


def test_the_program_stands_aside_for_masked_weights():
    """With weight sparsity a kernel's weight is masked: the general path measures."""
    trainer, x, y = _trainer("mlp", sparsity=0.5)
    env = trainer.executor.run(trainer._environment(x, y, trainer.draw_masks()))
    found = measure_step(trainer.context, np, env, True, weight_masks=trainer.weight_masks)
    assert trainer.context.compiled == {}
    _same(found, measure_step(_general(trainer), np, env, True, weight_masks=trainer.weight_masks))


def test_a_sequence_model_is_measured_by_the_general_path():
    """Matmuls over several tokens per sample have no table counter: no program, and the
    step is what the general path gives."""
    torch.manual_seed(0)
    net = wb.models.transformer(vocab=16, d_model=16, heads=2, layers=1, ffn=32, max_len=6,
                                classes=3)
    x, y = torch.randint(0, 16, (4, 6)), torch.randint(0, 3, (4,))
    graph = run_pipeline(capture(net, nn.CrossEntropyLoss(), (x, y)))
    plan = compile_plan(graph, T, optimizer_spec(torch.optim.SGD(net.parameters(), lr=0.1)))
    params = {k: v.detach().numpy().copy() for k, v in net.named_parameters()}
    trainer = Trainer(plan, params, {}, get_backend("numpy"))
    env = trainer.executor.run(trainer._environment(x.numpy(), y.numpy(), trainer.draw_masks()))
    found = measure_step(trainer.context, np, env, True)
    assert not any(trainer.context.compiled.values())
    _same(found, measure_step(_general(trainer), np, env, True))
