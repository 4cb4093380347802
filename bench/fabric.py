"""How fast the cycle-level fabric model runs, and how it compares with the analytic model.

    PYTHONPATH=. python bench/fabric.py [--sizes 4 8 16 32 64] [--backend numpy|cupy|auto]
                                        [--tile 8] [--samples 2] [--density 0.5]
    PYTHONPATH=. python bench/fabric.py --cases

Speed: simulated cycles and core-cycles per second for a matmul forward pass over a sweep of
square regions.

Each region R x R runs a matmul with K = N = tile * R (a tile of `tile` x `tile` weights per
core) on `samples` samples of x at `density` non-zeros, on the classroom target's constants.
Prints one row per size: cycles simulated, wall seconds, cycles/s and core-cycles/s (cycles x
cores / s), the largest |y - x @ w| (the fabric's numerics) and the process's peak resident
memory so far (it only grows, so each row bounds the sizes up to it). On CuPy the loop looks at the
sinks every 64 cycles (a host sync each), so up to 63 idle cycles run past the end.
`--cases`: the cross-check table, kernels of each kind with a fabric program (matmul forward
and backward, generated) on square, tall and wide mappings at densities 1, 0.5 and 0.1: the
analytic model's cycles on the same data, the fabric's, their ratio, and the cost where they
differ most (`simulator.fabric.check`; queueing is left out: back-pressure overlaps the work).
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from compiler import Mapping
from compiler.kernels import generated_kernel, matmul_kernel
from compiler.target import wafer
from simulator.backend import get_backend
from simulator.fabric import run
from simulator.fabric.check import ROWS, compare
from simulator.fabric.matmul import MatmulForward

MAPPINGS = {"square": (2, 2), "tall": (4, 1), "wide": (1, 4), "one core": (1, 1)}


def one(xp, size: int, tile: int, samples: int, density: float, target, check_every: int) -> dict:
    rng = np.random.default_rng(size)
    k = n = tile * size
    x = rng.standard_normal((samples, k)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0
    w = rng.standard_normal((k, n)).astype(np.float32)
    program = MatmulForward(x, w, size, size, target.dense_values_per_wavelet, True)
    start = time.perf_counter()
    result = run(xp, program, target, check_every=check_every)
    seconds = time.perf_counter() - start
    error = float(np.abs(program.output(result)["y"] - x @ w).max())
    return {"size": size, "cycles": result.cycles, "seconds": seconds,
            "cycles_per_s": result.cycles / seconds,
            "core_cycles_per_s": result.cycles * size * size / seconds, "error": error,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _sparse(rng, shape, density):
    a = rng.standard_normal(shape).astype(np.float32)
    a[rng.random(shape) >= density] = 0
    return a


def cases(xp, target, samples: int = 4) -> list[dict]:
    """The cross-check table's rows (see the module docstring)."""
    rng, rows = np.random.default_rng(0), []
    for shape, (r, c) in MAPPINGS.items():
        for density in (1.0, 0.5, 0.1):
            tensors = {"x": _sparse(rng, (samples, 32), density), "w": _sparse(rng, (32, 32), 1.0),
                       "dy": _sparse(rng, (samples, 32), density)}
            for pass_ in ("forward", "backward"):
                rows.append(_row("matmul " + pass_, shape, density, compare(
                    matmul_kernel("fc", 32, 32, samples=samples), Mapping(r, c), target, tensors,
                    pass_=pass_, density=density, xp=xp)))
        rows.append(_row("generated", shape, 1.0, compare(
            generated_kernel("g", 64, samples=samples), Mapping(r, c), target,
            {"out": _sparse(rng, (samples, 64), 1.0)}, xp=xp)))
    return rows


def _row(kind, shape, density, c) -> dict:
    """One case; "most": the cost (not queueing, which overlaps the work) the two differ most in."""
    gaps = {row: c.fabric[row] - float(np.max(c.analytic.get(row, 0.0))) for row in ROWS
            if row != "queueing"}
    return {"kind": kind, "mapping": shape, "density": density, "analytic": c.analytic_total,
            "fabric": c.fabric["total"], "ratio": c.ratio, "most": max(gaps, key=lambda k: abs(gaps[k])),
            "error": c.error}


def print_cases(rows: list[dict]) -> None:
    print(f"{'kernel':<16} {'mapping':<9} {'density':>7} {'analytic':>9} {'fabric':>7} "
          f"{'ratio':>6}  differs most in")
    for r in rows:
        print(f"{r['kind']:<16} {r['mapping']:<9} {r['density']:>7.1f} {r['analytic']:>9.0f} "
              f"{r['fabric']:>7.0f} {r['ratio']:>6.2f}  {r['most']}")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    parser.add_argument("--tile", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--cases", action="store_true", help="print the cross-check table")
    args = parser.parse_args(argv)
    backend = get_backend(args.backend)
    target = wafer("classroom")
    if args.cases:
        rows = cases(backend.xp, target)
        print_cases(rows)
        return rows
    check_every = 1 if backend.name == "numpy" else 64
    print(f"backend {backend.name}; tile {args.tile} x {args.tile}, {args.samples} samples, "
          f"density {args.density}")
    print(f"{'region':>9} {'cycles':>8} {'wall s':>8} {'cycles/s':>10} {'core-cycles/s':>14} "
          f"{'max err':>9} {'peak MB':>8}")
    rows = []
    for size in args.sizes:
        row = one(backend.xp, size, args.tile, args.samples, args.density, target, check_every)
        rows.append(row)
        print(f"{size:>4} x {size:<3} {row['cycles']:>8} {row['seconds']:>8.2f} "
              f"{row['cycles_per_s']:>10.0f} {row['core_cycles_per_s']:>14.3g} {row['error']:>9.2g} "
              f"{row['peak_rss_mb']:>8.0f}")
    return rows


if __name__ == "__main__":
    main()
