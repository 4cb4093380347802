"""The wafer at the talk's scale: one table, ours beside the seed's (Cerebras, Hot Chips 2019/2020),
each row with what bounds its step.

    PYTHONPATH=. python bench/fidelity.py [--quick] [--only bert sparsity scaling kernels]
                                          [--bert-layers 12] [--mp-layers 4]

Rows (wse2 unless a row says otherwise; one simulated training step per run, NumPy backend):
- BERT-base training (12 layers, d 768, 12 heads, FFN 3072, seq 128, batch 8, GELU, no dropout,
  SGD): samples/s, dense-MAC utilization of the wafer's peak, estimate over measurement,
  compile seconds, step wall seconds, peak resident memory;
- the seed's sparsity figures (`wsebench.sparsity_experiments` at the talk's sizes): a
  Transformer with d 512, ReLU FFN + dropout 0.3 against GELU without dropout (seed 1.2x); a
  34-layer fully connected net with ReLU (1.7x) and ReLU + 50% induced sparsity (2.4x); BERT-base
  with 50% induced sparsity forward and backward at the inputs of most matmuls (up to 1.5x). Each
  gives the harvest speedup on the same plan (sized dense, as its baseline's: zero-skipping on
  against off) and the speedup after a sparsity-aware recompile (sized for the densities
  calibrated on the first batch, against the dense baseline);
- model-parallel scaling: BERT-base-shaped with 4 layers (12 do not fit a quarter of wse2) at
  batch 8, mapping "model", on a quarter, a half and the whole wse2
  (`compiler.target.sub_wafer`); data-parallel scaling: a 4-layer MLP of width 256
  at batch 64 and 256, mapping "data", on the same areas of a 128 x 128 classroom-core wafer (a
  small model replicates past any batch on wse2, where one sample per replica is the ceiling).
  Efficiency: speedup over the quarter wafer divided by the ratio of cores (1.0: linear);
- the kernel-size table (Hot Chips 2020, notebooks/01_mapping section 1): a 784 -> 256 Linear
  pinned to 3 x 3, 6 x 6 and 12 x 12 cores; area x time stays about 1 while compute-bound.

Ceiling (`compiler.ceiling`): the highest utilization and samples/s any plan of the row's model
could reach on its wafer at its batch under the same cost model and schedule (the BERT row, and
each area of the scaling rows with the efficiency the ceilings themselves scale at), so a
figure below the seed's reads as this compiler's shortfall or as the wafer's limit.

Bound: the largest share of the step among the steady state (named by what limits the slowest
stage: compute, SRAM, link or congestion), pipeline fill and the weight update (`bound`). Figures
are printed, never asserted; nothing is tuned to the seed's. `--quick` shrinks every model
(a few minutes); the full run takes a quarter of an hour or more on two cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))     # bench/parallelism.py

import wsebench as wb                                            # noqa: E402
from compiler.ceiling import ceiling                             # noqa: E402
from compiler.cost import sent_share, sram_factor                # noqa: E402
from compiler.estimate import kernel_cycles, update_cycles       # noqa: E402
from compiler.kernels import kind_of                             # noqa: E402
from compiler.target import sub_wafer                            # noqa: E402
from parallelism import efficiency, run_point                    # noqa: E402
from wsebench import sparsity_experiments as sx                  # noqa: E402

SECTIONS = ("bert", "sparsity", "scaling", "kernels")
AREAS = (0.25, 0.5, 1.0)


def bert(layers: int, seq: int, seed: int = 0, activation: str = "gelu", dropout: float = 0.0):
    torch.manual_seed(seed)
    return wb.models.transformer(vocab=1000, d_model=768, heads=12, layers=layers, ffn=3072,
                                 max_len=seq, classes=2, activation=activation, dropout=dropout)


def bound(plan) -> dict:
    """What sets the step: the slowest stage and its limit (compute, or SRAM where the ports are
    slower than the SIMD lanes; its own links; route congestion), and the step's shares of
    steady state, pipeline fill and weight update; `bound` is the largest of the three."""
    est = plan.estimate()
    stages = est["per_sample_cycles"]
    name = max(stages, key=stages.get)
    kernel, mapping = plan.kernel[name], plan.mapping[name]
    compute, link = (float(x.max()) for x in kernel_cycles(kernel, mapping.replica, plan.target,
                                                          plan.density_of(name), plan.harvest).split())
    work = "SRAM" if sram_factor(plan.target) > 1.0 else "compute"
    limits = {work: compute / mapping.replicas, "link": link / mapping.replicas,
              "congestion": est["congestion_cycles"][name]}
    steady = plan.kernels[0].samples * stages[name]
    update = max(update_cycles(k, plan.mapping[k.name], plan.target, plan.optimizer)
                 for k in plan.kernels)
    fill = max(est["cycles"] - steady - update, 0.0)
    stage_bound = max(limits, key=limits.get)
    parts = {stage_bound: steady, "fill": fill, "update": update}
    pct = lambda cycles: 100.0 * cycles / est["cycles"]  # noqa: E731
    return {"bottleneck": name, "stage_bound": stage_bound, "bound": max(parts, key=parts.get),
            "waits": sum(plan.streaming.waits), "samples": plan.kernels[0].samples,
            "steady_pct": pct(est["cycles"] - fill - update), "fill_pct": pct(fill),
            "update_pct": pct(update), "stage_cycles": stages[name], "limits": limits,
            "weights_per_core": int(np.max(kind_of(kernel).weights_per_core(kernel, mapping.replica)))}


def bound_text(plan) -> str:
    """The bound in words, with the numbers behind it: the slowest stage's cycles per sample,
    its limit and the weights its fullest core holds (a few weights a core leave little work
    to skip, and the busiest core of many small tiles is nearly dense on every sample), and
    the step's shares of steady state, fill and update."""
    b = bound(plan)
    held = f", {b['weights_per_core']:,} weights/core" if b["weights_per_core"] else ""
    stage = f"{b['stage_bound']} at {b['bottleneck']} ({b['stage_cycles']:,.0f} cyc/sample{held})"
    limit = b["bound"]
    if limit == "fill" and b["waits"]:
        # each stage that waits for whole samples adds about a sample's time to the fill
        limit += f" ({b['waits']} stages wait for whole samples, {b['samples']} samples a step)"
    head = stage if b["bound"] == b["stage_bound"] else f"{limit}; slowest stage {stage}"
    return (f"{head}; steady {b['steady_pct']:.0f}%, fill {b['fill_pct']:.0f}%, "
            f"update {b['update_pct']:.0f}%")


def sizes(quick: bool, args) -> dict:
    """Model sizes per row: the talk's, or shrunk for --quick."""
    if quick:
        return {"seq": 32, "bert_layers": 1, "mp_layers": 1, "t_layers": 1,
                "fc_hidden": 256, "fc_batch": 32, "dp_side": 64, "dp_batches": (64,)}
    return {"seq": 128, "bert_layers": args.bert_layers,
            "mp_layers": args.mp_layers, "t_layers": 2, "fc_hidden": 1024, "fc_batch": 256,
            "dp_side": 128, "dp_batches": (64, 256)}


def experiments(z: dict) -> list[sx.Experiment]:
    """The seed's sparsity experiments at the talk's sizes, one step each, SGD."""
    seq, tokens = z["seq"], {"kind": "tokens", "vocab": 1000, "length": z["seq"]}
    base = {"family": "transformer", "vocab": 1000, "max_len": seq, "classes": 2}
    t512 = {**base, "d_model": 512, "heads": 8, "ffn": 2048, "layers": z["t_layers"]}
    bert_ = {**base, "d_model": 768, "heads": 12, "ffn": 3072, "layers": z["bert_layers"],
             "activation": "gelu"}
    fc = {"family": "mlp", "in_features": z["fc_hidden"], "hidden": z["fc_hidden"],
          "out_features": 10, "depth": 34, "activation": "tanh"}
    drop50 = {"fraction": 0.5, "where": "both"}
    one = {"steps": 1, "lr": 1e-3, "optimizer": "sgd"}
    return [
        sx.Experiment("transformer_d512", tokens, (
            sx.Variant("GELU, no dropout", {**t512, "activation": "gelu"}),
            sx.Variant("ReLU FFN + dropout 0.3", {**t512, "activation": "relu", "dropout": 0.3},
                       None, "1.2x")), batch=8,
            note=f"{z['t_layers']} blocks, d 512, 8 heads, FFN 2048, seq {seq}", **one),
        sx.Experiment("fc34", {"kind": "blobs", "features": z["fc_hidden"], "classes": 10}, (
            sx.Variant("tanh", fc),
            sx.Variant("ReLU", fc, {"relu": ["act*"]}, "1.7x"),
            sx.Variant("ReLU + 50% induced", fc, {"relu": ["act*"], "drop": [
                {"targets": ["fc*"], **drop50}]}, "2.4x")), batch=z["fc_batch"], he_init=True,
            note=f"34 Linear layers of width {z['fc_hidden']}, batch {z['fc_batch']}", **one),
        sx.Experiment("bert_induced", tokens, (
            sx.Variant("dense (GELU)", bert_),
            sx.Variant("50% induced, fwd+bwd", bert_, {"drop": [
                {"targets": ["layers.*.ln1", "layers.*.ln2", "layers.*.ffn.act"], **drop50}]},
                "up to 1.5x")), batch=8,
            note=f"BERT-base with {z['bert_layers']} of 12 layers, seq {seq}, batch 8; drops "
                 "at the inputs of q/k/v, fc1 and fc2", **one),
    ]


def _describe(session) -> dict:
    """What a sparsity row keeps of its session (the session itself is let go)."""
    return {"bound": bound_text(session.plan), "summary": session.report().summary,
            "ceiling": ceiling(session.plan),
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def sparsity_rows(z: dict, only_bert: bool = False) -> list[list[str]]:
    """The sparsity rows, the BERT-base row first (the induced row's dense baseline);
    `only_bert`: that row alone."""
    rows = []
    for exp in experiments(z):
        if only_bert:
            if exp.name != "bert_induced":
                continue
            exp = dataclasses.replace(exp, variants=exp.variants[:1])
        runs = sx.run_experiment(exp, same_plan=True, accuracy=False, describe=_describe,
                                 wafer="wse2", backend="numpy")
        for r in runs[1:]:
            rows.append([f"{exp.name}: {r['variant']}",
                         f"{r['same_plan_speedup']:.2f}x / {r['speedup']:.2f}x", r["seed"],
                         r["same_plan"]["bound"],
                         f"{exp.note}; recompiled (compile {r['compile_s']:.0f} s with the "
                         f"calibration, dense baseline {runs[0]['compile_s']:.0f} s): {r['bound']}"])
        if exp.name == "bert_induced":
            rows.insert(0, bert_row(runs[0], z["bert_layers"], z["seq"]))
    return rows


def bert_row(run: dict, layers: int, seq: int) -> list[str]:
    """The dense BERT baseline as the talk-scale row: rate, utilization, estimate vs measured."""
    s = run["summary"]
    return [f"BERT-base train step, {layers} layers", f"{s['samples_per_s']:,.0f}/s", "-",
            run["bound"],
            f"seq {seq}, batch 8; dense-MAC util {s['compute_utilization_pct']:.1f}%, est/meas "
            f"{s['estimate_vs_measured']:.3f}, compile {run['compile_s']:.1f} s, step "
            f"{run['step_s']:.1f} s, peak {run['peak_gb']:.1f} GB; {ceiling_text(run['ceiling'])}"]


def ceiling_text(c) -> str:
    """The utilization ceiling (`compiler.ceiling`) in words."""
    return (f"ceiling {c.utilization_pct:.1f}% util, {c.samples_per_s:,.0f}/s (no plan exceeds "
            f"it: {c.segments} segments between whole-sample waits filled one after another, "
            f"{c.samples} samples a step; {c.steady_pct:.0f}% without the fill)")


def scaling_row(label: str, make, batch: int, base, strategy: str) -> list[str]:
    """Samples/s on a quarter, a half and the whole of `base`; efficiency against the quarter."""
    points = {f: run_point(make, batch, sub_wafer(base, f), strategy, 1, "numpy") for f in AREAS}
    failed = [f"{f:g}: {p['error']}" for f, p in points.items() if "error" in p]
    if failed:
        return [label, "-", "linear", "-", "; ".join(failed)]
    q = points[AREAS[0]]
    effs = {f: efficiency(p["samples_per_s"], p["cores"], q["samples_per_s"], q["cores"])
            for f, p in points.items()}
    detail = ", ".join(f"{f:g}: {p['samples_per_s']:,.0f}/s" + (f" ({effs[f]:.2f})" if f != AREAS[0] else "")
                       for f, p in points.items())
    bounds = {f: ceiling(p["plan"]).samples_per_s for f, p in points.items()}
    detail += "; ceilings " + ", ".join(f"{f:g}: {b:,.0f}/s" for f, b in bounds.items()) + \
        f" (efficiency {efficiency(bounds[1.0], points[1.0]['cores'], bounds[AREAS[0]], q['cores']):.2f})"
    return [label, f"{effs[1.0]:.2f}", "linear", bound_text(points[1.0]["plan"]), detail]


def scaling_rows(z: dict) -> list[list[str]]:
    seq = z["seq"]

    def bert_mp(batch):
        model = bert(z["mp_layers"], seq)
        return (model, nn.CrossEntropyLoss(), torch.randint(1, 1000, (batch, seq)),
                torch.randint(0, 2, (batch,)))

    def mlp_dp(batch):
        model = wb.models.mlp(256, 256, 10, 4, activation="relu", dropout=0.0)
        return model, nn.CrossEntropyLoss(), torch.randn(batch, 256), torch.randint(0, 10, (batch,))

    bert_mp.__name__ = f"bert_mp_{z['mp_layers']}_{seq}"
    rows = [scaling_row(f"model-parallel: BERT-base {z['mp_layers']} layers, b=8", bert_mp, 8,
                        "wse2", "model")]
    side = z["dp_side"]
    classroom = wb.wafer("classroom", rows=side, cols=side)
    rows += [scaling_row(f"data-parallel: MLP 4x256, b={b}, {side}x{side}", mlp_dp, b, classroom,
                         "data") for b in z["dp_batches"]]
    return rows


def kernel_size_rows() -> list[list[str]]:
    """A 784 -> 256 Linear pinned to 3x3, 6x6, 12x12 cores (notebooks/01_mapping, section 1)."""
    roomy = wb.wafer("classroom", sram_bytes=256 * 1024)     # 3 x 3 needs more than 48 KB/core
    x, y = torch.randn(16, 784), torch.randn(16, 256)
    cycles, plans = {}, {}
    for side in (3, 6, 12):
        torch.manual_seed(0)
        model = nn.Sequential()
        model.add_module("fc1", nn.Linear(784, 256))
        s = wb.compile(model, nn.MSELoss(), (x, y), torch.optim.SGD(model.parameters(), lr=0.01),
                       wafer=roomy, mapping={"fc1": wb.Mapping(side, side)}, backend="numpy")
        s.step(x, y)
        cycles[side] = next(k for k in s.report().kernels if k["name"] == "fc1")["per_sample_cycles"]
        plans[side] = s.plan
    rows = []
    for side, c in cycles.items():
        time_ratio, area_ratio = c / cycles[6], (side / 6) ** 2
        rows.append([f"kernel size: 784->256 Linear at {side}x{side}",
                     f"{time_ratio * area_ratio:.2f}", "~1", bound_text(plans[side]),
                     f"area x time vs 6x6 ({c:,.0f} cycles/sample, {time_ratio:.2f}x the time on "
                     f"{area_ratio:.2f}x the area; classroom cores with 256 KB SRAM)"])
    return rows


def format_table(rows: list[list[str]]) -> str:
    header = ["row", "ours", "seed", "bound (slowest stage; shares of the step)", "detail"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]  # noqa: E731
    lines = [fmt(header), fmt(["-" * w for w in widths] + ["------"])] + [fmt(r) for r in rows]
    lines += ["", "sparsity rows: ours = harvest speedup on the same plan (sized dense; its bound "
                  "is shown) / speedup after a sparsity-aware recompile (vs the dense baseline; its "
                  "bound in the detail); scaling rows: "
                  "efficiency on the whole wafer against a quarter (1.0: linear), per area in "
                  "the detail; kernel-size rows: area x time against 6x6",
              "links: a zero-filtering sender sends one (value, index) wavelet per non-zero, so a "
              "stream at density d carries " + ", ".join(
                  f"{d:.0%}: {float(sent_share(d, wb.wafer('wse2'))):.2f}" for d in (0.75, 0.5, 0.25))
              + " of its dense wavelets (compiler.cost.sent_share, 2 FP16 values per dense wavelet)"]
    return "\n".join(lines)


def _progress(what: str, rows, *args, **kwargs) -> list[list[str]]:
    """`rows(*args, **kwargs)`, saying on stderr how long it took (the table comes at the end)."""
    start = time.perf_counter()
    out = rows(*args, **kwargs)
    print(f"[{what}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models: a few minutes")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--bert-layers", type=int, default=12,
                        help="BERT layers of the BERT-base row and the 50%% induced row (one model)")
    parser.add_argument("--mp-layers", type=int, default=4,
                        help="BERT layers of the model-parallel row (12 need more cores than a "
                             "quarter of wse2 holds at 48 KB each)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    z = sizes(args.quick, args)
    start = time.perf_counter()
    rows = []
    if "sparsity" in args.only or "bert" in args.only:
        rows += _progress("BERT-base and sparsity rows" if "sparsity" in args.only else "BERT-base row",
                          sparsity_rows, z, only_bert="sparsity" not in args.only)
    if "scaling" in args.only:
        rows += _progress("scaling rows", scaling_rows, z)
    if "kernels" in args.only:
        rows += _progress("kernel-size rows", kernel_size_rows)
    print(format_table(rows))
    print(f"\n({time.perf_counter() - start:.0f} s wall clock, NumPy backend, "
          f"{'--quick sizes' if args.quick else 'full sizes'})")
    return rows


if __name__ == "__main__":
    main()
