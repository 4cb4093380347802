"""The wafer at the talk's scale: BERT-base training on wse2, and what bounds its step.

    PYTHONPATH=. python bench/fidelity.py [--layers 12] [--batch 8] [--seq 128]

BERT-base sizes (12 layers, d 768, 12 heads, FFN 3072, seq 128, batch 8; `wb.models.transformer`,
GELU, no dropout, SGD) compiled onto the wse2 preset and trained one step on the NumPy simulator.
Prints one row: samples/s, dense-MAC utilization of the wafer's peak, the static estimate over
the measurement, compile seconds, step wall seconds and peak resident memory, and what bounds the
step: the bottleneck stage's compute, its own links or route congestion, and the shares of the
step spent filling the pipeline and updating the weights.

Figures are printed, never asserted. The seed's other rows (sparsity on the same plan and after a
sparsity-aware recompile, model- and data-parallel scaling) are not measured here yet.
"""
from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch
import torch.nn as nn

import wsebench as wb
from compiler.estimate import kernel_cycles, update_cycles


def bert(layers: int, seq: int, seed: int = 0):
    torch.manual_seed(seed)
    return wb.models.transformer(vocab=1000, d_model=768, heads=12, layers=layers, ffn=3072,
                                 max_len=seq, classes=2, activation="gelu", dropout=0.0)


def bound(plan) -> dict:
    """What sets the step: the bottleneck stage's limit, and fill and update shares."""
    est = plan.estimate()
    stages = est["per_sample_cycles"]
    name = max(stages, key=stages.get)
    kernel, mapping = plan.kernel[name], plan.mapping[name]
    compute, link = (float(x.max()) for x in kernel_cycles(kernel, mapping.replica, plan.target,
                                                          plan.density_of(name), plan.harvest).split())
    limits = {"compute": compute / mapping.replicas, "link": link / mapping.replicas,
              "congestion": est["congestion_cycles"][name]}
    samples = plan.kernels[0].samples
    steady = samples * stages[name]
    update = max(update_cycles(k, plan.mapping[k.name], plan.target, plan.optimizer)
                 for k in plan.kernels)
    return {"bottleneck": name, "bound": max(limits, key=limits.get),
            "fill_pct": 100.0 * max(est["cycles"] - steady - update, 0.0) / est["cycles"],
            "update_pct": 100.0 * update / est["cycles"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*falling back to NumPy.*")
    model = bert(args.layers, args.seq)
    x = torch.randint(1, 1000, (args.batch, args.seq))
    y = torch.randint(0, 2, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), optimizer=opt, wafer="wse2",
                   backend="numpy")
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    s.step(x, y)
    step_s = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    r = s.report().summary
    b = bound(s.plan)
    print(f"BERT-base-shaped, {args.layers} layers, seq {args.seq}, batch {args.batch}, on wse2:")
    print(f"{'samples/s':>12} {'dense util %':>12} {'est/meas':>9} {'compile s':>10} "
          f"{'step s':>7} {'peak GB':>8}  bound (bottleneck kernel), fill and update shares")
    print(f"{r['samples_per_s']:>12,.0f} {r['compute_utilization_pct']:>12.2f} "
          f"{r['estimate_vs_measured']:>9.3f} {compile_s:>10.1f} {step_s:>7.1f} {peak_gb:>8.2f}  "
          f"{b['bound']} ({b['bottleneck']}), fill {b['fill_pct']:.1f}%, update {b['update_pct']:.1f}%")


if __name__ == "__main__":
    main()
