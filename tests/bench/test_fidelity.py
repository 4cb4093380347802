"""bench/fidelity.py's mechanics at tiny sizes, not its figures: `bound` names the stage that sets
the step and what limits it, sparsity rows carry both speedups, scaling rows compute efficiency
against the quarter wafer, and the table prints one line per row."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from compiler.estimate import kernel_cycles
from compiler.target import sub_wafer
from tests.bench import load_bench
from wsebench import sparsity_experiments as sx


@pytest.fixture(scope="module")
def fidelity():
    return load_bench("fidelity")


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
    assert limits[b["stage_bound"]] == max(limits.values())
    assert 0.0 <= b["fill_pct"] <= 100.0 and 0.0 < b["update_pct"] < 100.0
    # the step's bound is the largest of its parts: steady state (the stage's limit), fill, update
    steady_pct = 100.0 - b["fill_pct"] - b["update_pct"]
    parts = {b["stage_bound"]: steady_pct, "fill": b["fill_pct"], "update": b["update_pct"]}
    assert b["bound"] == max(parts, key=parts.get)
    assert fidelity.bound_text(plan).startswith(b["bound"])
    # the attention, the pooled head and the log-softmax after it wait for whole samples (pos
    # adds its embedding and reads its padding mask token by token); a fill-bound step says
    # how many stages wait
    waiting = [k.name for k, w in zip(plan.kernels, plan.streaming.waits) if w]
    assert waiting == ["layers.0.attn.sdpa", "head", "log_softmax"]
    assert b["waits"] == 3 and b["samples"] == 4
    if b["bound"] == "fill":
        assert "3 stages wait for whole samples, 4 samples a step" in fidelity.bound_text(plan)


def test_bound_says_sram_where_the_ports_are_slower_than_the_lanes(fidelity):
    """FP32 values on the fabric take two SRAM cycles per SIMD cycle (`cost.sram_factor`)."""
    model = wb.models.mlp(64, 256, 4, depth=3, seed=0)
    x, y = torch.randn(64, 64), torch.randint(0, 4, (64,))
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   wafer=wb.wafer("classroom", precision="fp32"))
    b = fidelity.bound(s.plan)
    assert b["stage_bound"] in ("SRAM", "link", "congestion") and b["stage_bound"] != "compute"


def _tiny_experiment():
    mlp = {"family": "mlp", "in_features": 16, "hidden": 128, "out_features": 2, "depth": 4,
           "activation": "tanh"}
    return sx.Experiment("tiny", {"kind": "blobs", "features": 16, "classes": 2}, (
        sx.Variant("tanh", mlp), sx.Variant("ReLU", mlp, {"relu": ["act*"]}, "1.7x")),
        batch=64, steps=1, lr=1e-2, note="tiny", optimizer="sgd")


def test_sparsity_rows_carry_both_speedups_and_let_sessions_go():
    rows = sx.run_experiment(_tiny_experiment(), same_plan=True, accuracy=False,
                             describe=lambda s: {"plan": s.plan})
    base, relu = rows
    assert "same_plan_speedup" not in base and base["speedup"] == 1.0
    assert relu["same_plan_speedup"] > 1.0          # ReLU's zeros, harvested on one plan
    assert relu["speedup"] > 1.0 and relu["accuracy"] is None
    assert all("session" not in r and "plan" in r and r["compile_s"] > 0 for r in rows)
    text = sx.format_table(rows)
    assert "same plan" in text and f"{relu['same_plan_speedup']:.2f}x" in text


def test_scaling_row_is_efficiency_against_the_quarter_wafer(fidelity, monkeypatch):
    """The row's figure is (samples/s ratio) / (cores ratio), from the points `run_point` gave."""
    rates = {64 * 64: 1000.0, 91 * 91: 1800.0, 128 * 128: 3000.0}
    plans = {}

    def fake_run_point(make, batch, wafer, strategy, steps, backend):
        plans.setdefault("plan", _tiny_plan())
        return {"samples_per_s": rates[wafer.cores], "cores": wafer.cores, "plan": plans["plan"]}
    monkeypatch.setattr(fidelity, "run_point", fake_run_point)
    base = wb.wafer("classroom", rows=128, cols=128)
    assert sub_wafer(base, 0.5).cores == 91 * 91
    row = fidelity.scaling_row("mlp", None, 64, base, "data")
    assert row[1] == f"{3000.0 / 1000.0 / 4.0:.2f}"
    assert f"({1800.0 / 1000.0 / (91 * 91 / 4096):.2f})" in row[4]


def _tiny_plan():
    model = wb.models.mlp(8, 16, 2, depth=2, seed=0)
    x, y = torch.randn(8, 8), torch.randint(0, 2, (8,))
    return wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), backend="numpy",
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1)).plan


def test_table_prints_one_line_per_row_with_aligned_columns(fidelity):
    rows = [["BERT-base", "8,700/s", "-", "compute at fc1; fill 1%, update 2%", "detail a"],
            ["fc34: ReLU", "1.50x / 1.60x", "1.7x", "link at fc2; fill 0%, update 1%", "b"]]
    lines = fidelity.format_table(rows).splitlines()
    assert lines[2].startswith("BERT-base") and lines[3].startswith("fc34: ReLU")
    assert lines[2].index("8,700/s") == lines[3].index("1.50x") == lines[0].index("ours")
    assert lines[2].endswith("detail a")


def test_quick_sizes_are_smaller_than_the_talks(fidelity):
    args = fidelity.argparse.Namespace(bert_layers=12, mp_layers=12)
    quick, full = fidelity.sizes(True, args), fidelity.sizes(False, args)
    assert full["bert_layers"] == 12 and full["seq"] == 128
    assert all(quick[k] <= full[k] for k in ("bert_layers", "mp_layers", "seq", "fc_hidden"))
    names = [e.name for e in fidelity.experiments(quick)]
    assert names == ["transformer_d512", "fc34", "bert_induced"]
    assert all(e.steps == 1 for e in fidelity.experiments(quick))
