"""Samples/s against batch size and wafer area, for mapping "model", "data" and "auto".

    PYTHONPATH=. python bench/parallelism.py [--batches 8 32 128 256] [--areas 32 64 128]
                                             [--steps 2] [--backend numpy]

Two models, both trained with SGD on Gaussian data:
- "mlp": 4 Linear layers of width 256 with ReLU (input 256, 10 classes, cross-entropy);
- "stack": a transformer-sized MLP stack, 4 Linear 256 -> 256 layers with GELU applied to
  [batch, seq=16, 256] inputs, MSE loss (a transformer's FFN-sized work without attention).
Wafers are the classroom preset with `rows = cols = area` (32 x 32, 64 x 64, 128 x 128 cores).
Each point is `wb.compile(...)` (capture + search + place & route) then `--steps` simulated
steps; samples/s is `report().summary["samples_per_s"]` of the last step (the simulator's
measurement, from the data), next to the compiler's static estimate. The captured graph depends
only on the model and the batch (same seed, same example), not on the wafer or the strategy, so
`wb.compile`'s capture is memoized per (model, batch) to keep the sweep within a few minutes.

Scaling is read off the table, not asserted:
- area: speedup over the smallest wafer divided by the area ratio (1.0 = linear);
- batch: samples/s gain per doubling of the batch (2.0 = linear, 1.0 = saturated).
A strategy "scales linearly" while the efficiency stays >= 0.75 (area) or the gain per doubling
>= 1.5 (batch); the first point below that is where it stops.
"""
from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

import wsebench as wb

STRATEGIES = ("model", "data", "auto")
LINEAR_AREA, LINEAR_BATCH = 0.75, 1.5


def mlp_case(batch: int):
    model = wb.models.mlp(256, 256, 10, 4, activation="relu", dropout=0.0)
    return model, nn.CrossEntropyLoss(), torch.randn(batch, 256), torch.randint(0, 10, (batch,))


def stack_case(batch: int):
    model = wb.models.mlp(256, 256, 256, 4, activation="gelu", dropout=0.0)
    return model, nn.MSELoss(), torch.randn(batch, 16, 256), torch.randn(batch, 16, 256)


MODELS = {"mlp": mlp_case, "stack": stack_case}

_CAPTURED: dict = {}


@contextlib.contextmanager
def memoized_capture(key):
    """Within the block, wb.compile's capture of one (model, batch) `key` is reused for every
    wafer and strategy; the real capture is back in place after it."""
    import wsebench.session as session
    real = session.capture

    def capture(model, loss_fn, example, method="auto"):
        if key not in _CAPTURED:
            _CAPTURED[key] = real(model, loss_fn, example, method=method)
        return _CAPTURED[key]
    session.capture = capture
    try:
        yield
    finally:
        session.capture = real


def efficiency(samples_per_s: float, cores: int, base_samples_per_s: float, base_cores: int) -> float:
    """Scaling efficiency: the speedup over the base wafer divided by the ratio of cores
    (1.0: linear in area)."""
    return samples_per_s / base_samples_per_s / (cores / base_cores)


def run_point(make, batch: int, wafer, strategy: str, steps: int, backend: str) -> dict:
    """Compile `make(batch)` for `wafer` (a Target, or a classroom side length) with mapping
    `strategy` and train `steps` steps; samples/s measured and estimated, or the error."""
    if isinstance(wafer, int):
        wafer = wb.wafer("classroom", rows=wafer, cols=wafer)
    torch.manual_seed(0)
    model, loss_fn, x, y = make(batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    try:
        with memoized_capture((make.__name__, batch)):
            s = wb.compile(model, loss_fn, (x, y), opt, wafer=wafer, mapping=strategy,
                           backend=backend, capture_method="aot")
    except (wb.WaferFitError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {str(err)[:60]}"}
    compile_s = time.perf_counter() - start
    for _ in range(steps):
        s.step(x, y)
    summary = s.report().summary
    mappings = s.plan.mapping.values()
    return {"samples_per_s": summary["samples_per_s"],
            "estimate_samples_per_s": s.plan.estimate()["samples_per_s"],
            "replicas": max(m.replicas for m in mappings),
            "active_pes_pct": summary["active_pes_pct"],
            "bottleneck": dict(s.plan.meta)["search_bottleneck"],
            "compile_s": compile_s, "total_s": time.perf_counter() - start,
            "cores": wafer.cores, "plan": s.plan}


def scaling_notes(rows: dict, batches, areas) -> list[str]:
    """Where each strategy scales linearly with area and with batch, and where it stops."""
    notes = []
    for name in MODELS:
        for strategy in STRATEGIES:
            sps = lambda b, a: rows.get((name, strategy, b, a), {}).get("samples_per_s")  # noqa: E731
            # area, at each batch: efficiency vs linear over the smallest wafer
            parts = []
            for b in batches:
                base = sps(b, areas[0])
                if not base:
                    continue
                effs = [(a, efficiency(sps(b, a), a * a, base, areas[0] ** 2))
                        for a in areas[1:] if sps(b, a)]
                linear = [a for a, e in effs if e >= LINEAR_AREA]
                stop = next((a for a, e in effs if e < LINEAR_AREA), None)
                cells = " ".join(f"{a}x{a}:{e:.2f}" for a, e in effs)
                verdict = ("linear to {0}x{0}".format(max(linear)) if linear and stop is None else
                           f"stops at {stop}x{stop}" if stop else "")
                parts.append(f"b={b} [{cells}] {verdict}")
            notes.append(f"  {name:<6}{strategy:<6} area : " + "; ".join(parts))
            # batch, at each area: gain per doubling
            parts = []
            for a in areas:
                pts = [(b, sps(b, a)) for b in batches if sps(b, a)]
                gains = [(b1, (s1 / s0) ** (1 / np.log2(b1 / b0)))
                         for (b0, s0), (b1, s1) in zip(pts, pts[1:])]
                stop = next((b for b, g in gains if g < LINEAR_BATCH), None)
                cells = " ".join(f"->{b}:{g:.2f}" for b, g in gains)
                verdict = f"saturates by b={stop}" if stop else "still linear"
                parts.append(f"{a}x{a} [{cells}] {verdict}")
            notes.append(f"  {'':<12} batch: " + "; ".join(parts))
    return notes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128, 256])
    parser.add_argument("--areas", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    rows = {}
    print(f"{'model':<6}{'strategy':<9}{'wafer':>8}{'batch':>6}{'samples/s':>14}{'estimate':>14}"
          f"{'est/meas':>9}{'repl':>5}{'PEs %':>7}{'compile s':>10}")
    for name in args.models:
        for area in args.areas:
            for batch in args.batches:
                for strategy in STRATEGIES:
                    r = run_point(MODELS[name], batch, area, strategy, args.steps, args.backend)
                    rows[(name, strategy, batch, area)] = r
                    wafer_name = f"{area}x{area}"
                    if "error" in r:
                        print(f"{name:<6}{strategy:<9}{wafer_name:>8}{batch:>6}  {r['error']}")
                        continue
                    print(f"{name:<6}{strategy:<9}{wafer_name:>8}{batch:>6}{r['samples_per_s']:>14,.0f}"
                          f"{r['estimate_samples_per_s']:>14,.0f}"
                          f"{r['estimate_samples_per_s'] / r['samples_per_s']:>9.2f}{r['replicas']:>5}"
                          f"{r['active_pes_pct']:>7.1f}{r['compile_s']:>10.2f}", flush=True)
    print("\nBest strategy per point (measured samples/s):")
    for name in args.models:
        for area in args.areas:
            line = []
            for batch in args.batches:
                got = {s: rows[(name, s, batch, area)].get("samples_per_s", 0) for s in STRATEGIES}
                best = max(got, key=got.get)
                auto_vs = got["auto"] / max(got["model"], got["data"]) if max(got.values()) else 0
                line.append(f"b={batch}:{best}(auto/best-other {auto_vs:.2f})")
            print(f"  {name:<6}{area}x{area}: " + "  ".join(line))
    print(f"\nScaling (area: efficiency vs linear in cores, >= {LINEAR_AREA} counts as linear; "
          f"batch: gain per doubling, >= {LINEAR_BATCH} counts as linear):")
    for note in scaling_notes(rows, args.batches, args.areas):
        print(note)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
