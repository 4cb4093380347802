"""Compile time of BERT-base (or a BERT-base-sized stack of Linear layers) onto wse2, by depth.

    PYTHONPATH=. python bench/compile_scale.py [--model bert|stack] [--layers 1 2 4 8 12]
                                               [--batch 8] [--seq 128] [--capture auto|export|aot]
                                               [--no-warmup]

`--model bert` (the default) is bench/fidelity.py's model: `wb.models.transformer` with
BERT-base's sizes (d 768, 12 heads, FFN 3072, GELU, no dropout) on [batch, seq] token ids,
cross-entropy over 2 classes. `--model stack` has BERT-base's matmul shapes as Linear layers on
[batch, seq, 768] inputs: a projection 768 -> 3 x 768 and back 2304 -> 768 (standing in for
attention), then the FFN 768 -> 3072 -> 768 with GELU, each with a residual add; MSE loss.
SGD either way.

Every depth is one `wb.compile(...)` call onto the wse2 preset (757 x 996 cores), split into
capture (torch -> IR), compile_plan (passes, kernels, options, search, placement, routes) and
the rest (unsupported-op check, copying parameters into the simulator); `cpu s` is the
process's CPU time over the whole call, and the last line splits it as the wall time (the
machine may be shared: wall time then runs ahead of CPU time). The option cache that repeated layers share is cleared before each call, so no depth
reuses an earlier one's work. A warm-up compile of a tiny model runs first (torch's first
capture in a process pays for its own start-up) unless `--no-warmup`, which shows what the
first compile in a fresh process costs. Prints figures only; the goal (<= 10 s) is reported,
not asserted.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
import torch.nn as nn

import compiler.options as options
import wsebench as wb
import wsebench.session as session


class Layer(nn.Module):
    def __init__(self, d=768, ffn=3072):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(3 * d, d)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.act = nn.GELU()

    def forward(self, x):
        x = x + self.attn_out(self.qkv(x))
        return x + self.ffn_out(self.act(self.ffn_in(x)))


def bert(layers: int, seq: int) -> nn.Module:
    """bench/fidelity.py's BERT-base-shaped transformer."""
    return wb.models.transformer(vocab=1000, d_model=768, heads=12, layers=layers, ffn=3072,
                                 max_len=seq, classes=2, activation="gelu", dropout=0.0)


class Stack(nn.Module):
    def __init__(self, layers: int, d=768, ffn=3072):
        super().__init__()
        self.layers = nn.ModuleList(Layer(d, ffn) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Timed:
    """Wrap a function that wb.compile calls and add up the wall and CPU seconds spent in it."""

    def __init__(self, name: str):
        self.name, self.real, self.seconds, self.cpu = name, getattr(session, name), 0.0, 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return self.real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu += time.process_time() - cpu
        setattr(session, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(session, self.name, self.real)


def model_and_data(name: str, layers: int, batch: int, seq: int):
    torch.manual_seed(0)
    if name == "bert":
        return (bert(layers, seq), nn.CrossEntropyLoss(), torch.randint(1, 1000, (batch, seq)),
                torch.randint(0, 2, (batch,)))
    return Stack(layers), nn.MSELoss(), torch.randn(batch, seq, 768), torch.randn(batch, seq, 768)


def compile_once(name: str, layers: int, batch: int, seq: int, capture_method: str) -> dict:
    model, loss_fn, x, y = model_and_data(name, layers, batch, seq)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    options.clear_cache()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    with Timed("capture") as cap, Timed("compile_plan") as plan_t:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            s = wb.compile(model, loss_fn, (x, y), opt, wafer="wse2", backend="numpy",
                           capture_method=capture_method)
        except (wb.WaferFitError, wb.ConfigError, ValueError) as err:
            return {"layers": layers, "capture_s": cap.seconds, "plan_s": plan_t.seconds,
                    "total_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                    "capture_cpu": cap.cpu, "plan_cpu": plan_t.cpu,
                    "params_m": params_m, "error": f"{type(err).__name__}: {err}"}
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    plan = s.plan
    est = plan.estimate()
    return {"layers": layers, "kernels": len(plan.kernels), "ops": len(plan.graph.ops),
            "params_m": params_m, "capture_s": cap.seconds, "plan_s": plan_t.seconds,
            "total_s": total, "cpu_s": cpu, "capture_cpu": cap.cpu, "plan_cpu": plan_t.cpu,
            "relaxations": dict(plan.meta)["relaxations"],
            "active_pes_pct": est["active_pes_pct"], "samples_per_s": est["samples_per_s"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert", choices=["bert", "stack"])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4, 8, 12])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--capture", default="auto", choices=["auto", "export", "aot"])
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    print(f"{'BERT-base' if args.model == 'bert' else 'BERT-base-sized Linear stack'} on wse2, "
          f"batch {args.batch}, seq {args.seq}, d 768, FFN 3072; {os.cpu_count()} CPU cores, "
          f"torch threads {torch.get_num_threads()}, capture method {args.capture}, "
          f"{'after a warm-up compile' if args.warmup else 'no warm-up'}")
    if args.warmup:
        compile_once(args.model, 1, 2, 8, args.capture)
    print(f"{'layers':>6}{'kernels':>8}{'ops':>6}{'params M':>9}{'capture s':>10}"
          f"{'plan s':>8}{'other s':>8}{'total s':>8}{'cpu s':>7}{'relax':>6}{'PEs %':>7}"
          f"{'est samples/s':>15}")
    rows = []
    for n in args.layers:
        r = compile_once(args.model, n, args.batch, args.seq, args.capture)
        rows.append(r)
        other = r["total_s"] - r["capture_s"] - r["plan_s"]
        times = (f"{r['params_m']:>9.1f}{r['capture_s']:>10.2f}{r['plan_s']:>8.2f}{other:>8.2f}"
                 f"{r['total_s']:>8.2f}{r['cpu_s']:>7.2f}")
        if "error" in r:
            print(f"{r['layers']:>6}{'-':>8}{'-':>6}{times}  failed: {r['error']}", flush=True)
            continue
        print(f"{r['layers']:>6}{r['kernels']:>8}{r['ops']:>6}{times}{r['relaxations']:>6}"
              f"{r['active_pes_pct']:>7.1f}{r['samples_per_s']:>15,.0f}", flush=True)
    rows = [r for r in rows if "error" not in r]
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        grow = lambda key: (b[key] - a[key]) / (b["layers"] - a["layers"])  # noqa: E731
        print(f"\ngrowth per added layer: capture {grow('capture_s'):.3f} s, compile_plan "
              f"{grow('plan_s'):.3f} s, total {grow('total_s'):.3f} s")
    if rows:
        b = rows[-1]
        verdict = "meets" if b["total_s"] <= 10 else "misses"
        print(f"{b['layers']} layers: {b['total_s']:.1f} s in all (capture {b['capture_s']:.1f} s, "
              f"compile_plan {b['plan_s']:.1f} s), which {verdict} the <= 10 s goal; CPU "
              f"{b['cpu_s']:.1f} s (capture {b['capture_cpu']:.1f} s, compile_plan "
              f"{b['plan_cpu']:.1f} s)")


if __name__ == "__main__":
    main()
