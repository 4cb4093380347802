"""How fast the cycle-level fabric model runs (its agreement with the analytic model:
bench/fabric_check.py).

    PYTHONPATH=. python bench/fabric.py [--sizes 4 8 16 32 64] [--backend numpy|cupy|auto]
                                        [--tile 8] [--samples 2] [--density 0.5]

Speed: simulated cycles and core-cycles per second for a matmul forward pass over a sweep of
square regions.

Each region R x R runs a matmul with K = N = tile * R (a tile of `tile` x `tile` weights per
core) on `samples` samples of x at `density` non-zeros, on the classroom target's constants.
Prints one row per size: cycles simulated, wall seconds, cycles/s and core-cycles/s (cycles x
cores / s), the largest |y - x @ w| (the fabric's numerics) and the process's peak resident
memory so far (it only grows, so each row bounds the sizes up to it). On CuPy the loop looks at the
sinks every 64 cycles (a host sync each), so up to 63 idle cycles run past the end.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from compiler.target import wafer
from simulator.backend import get_backend
from simulator.fabric import run
from simulator.fabric.matmul import MatmulForward


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


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    parser.add_argument("--tile", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--density", type=float, default=0.5)
    args = parser.parse_args(argv)
    backend = get_backend(args.backend)
    target = wafer("classroom")
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
