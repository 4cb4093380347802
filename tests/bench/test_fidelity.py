"""bench/fidelity.py's `bound`: it names the stage that sets the step and what limits it (the
largest of its compute, its own links and its routes' congestion), on a small transformer."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler.estimate import kernel_cycles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fidelity():
    spec = importlib.util.spec_from_file_location("fidelity_bench", ROOT / "bench" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bound_names_the_bottleneck_stage_and_its_limit(fidelity):
    model = wb.models.transformer(vocab=16, d_model=16, heads=2, layers=1, ffn=32, max_len=8, seed=0)
    x, y = torch.randint(1, 16, (4, 8)), torch.randint(0, 2, (4,))
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y),
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    plan, est = s.plan, s.plan.estimate()
    b = fidelity.bound(plan)
    stages = est["per_sample_cycles"]
    assert stages[b["bottleneck"]] == max(stages.values())
    m = plan.mapping[b["bottleneck"]]
    compute, link = (float(v.max()) / m.replicas for v in
                     kernel_cycles(plan.kernel[b["bottleneck"]], m.replica, plan.target).split())
    limits = {"compute": compute, "link": link, "congestion": est["congestion_cycles"][b["bottleneck"]]}
    assert limits[b["bound"]] == max(limits.values())
    assert 0.0 <= b["fill_pct"] <= 100.0 and 0.0 < b["update_pct"] < 100.0
