"""How fast, and in how much memory, the cycle-level fabric model runs, from small regions up to
the whole wse2 fabric (its agreement with the analytic model: bench/fabric_check.py).

    PYTHONPATH=. python bench/fabric_scale.py [--sizes 32x32 64x64 128x128 256x256 wse2]
        [--backend numpy|cupy|auto] [--tile 1] [--samples 1] [--density 0.5] [--in-process]

Each size R x C ("wse2": the full fabric, `compiler.target.wafer("wse2")`'s rows x cols) runs
one matmul forward kernel on the whole region: K = tile * R, N = tile * C (a `tile` x `tile`
block of weights per core), `samples` samples of x at `density` non-zeros, x multicast along the
rows and partial sums chained down the columns (`simulator.fabric.matmul`), on wse2's
constants. A short K keeps the run to about 1.5 (R + C) cycles: x crossing the region (a hop
a cycle), then the sums chaining down it (an add and a hop a core), so the whole fabric runs in
minutes.

Per size it prints: cycles simulated; wall and CPU seconds of the cycle loop; core-cycles per
second (cycles x cores / s) on each; the engine's array bytes (`engine.array_bytes`: every
array of the routers, PEs, streams, sinks and program, at the end of the run); the process's
peak resident memory; and the largest |y - x @ w| (the numerics, against NumPy). Each size runs
in a child process of its own (unless `--in-process`), so each peak is that size's alone. On
CuPy the loop looks at the sinks every 64 cycles (a host sync each), so up to 63 idle cycles
run past the end; the peak memory is then the GPU memory pool's. Figures are printed, never
asserted (tests/simulator/fabric/test_fabric_scale.py runs it at tiny sizes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from compiler.target import wafer
from simulator.backend import cuda_available, get_backend
from simulator.fabric.engine import Fabric, array_bytes
from simulator.fabric.matmul import MatmulForward

TARGET = "wse2"
ROOT = Path(__file__).resolve().parents[1]


def region(size: str) -> tuple[int, int]:
    """(rows, cols) of a size "RxC", "R" (square) or a wafer's name (its whole fabric)."""
    if size.replace("x", "").isdigit():
        rows, _, cols = size.partition("x")
        return int(rows), int(cols or rows)
    target = wafer(size)
    return target.rows, target.cols


def one(xp, size: str, tile: int, samples: int, density: float, check_every: int) -> dict:
    """Run the matmul on region `size`; its figures."""
    target, (rows, cols) = wafer(TARGET), region(size)
    rng = np.random.default_rng(rows * cols)
    x = rng.standard_normal((samples, tile * rows)).astype(np.float32)
    x[rng.random(x.shape) >= density] = 0
    w = rng.standard_normal((tile * rows, tile * cols)).astype(np.float32)
    program = MatmulForward(x, w, rows, cols, target.dense_values_per_wavelet, True)
    fabric = Fabric(xp, program, target, depth=4)
    wall, cpu, cycle = time.perf_counter(), time.process_time(), 0
    while True:                                  # engine.run's loop, the fabric kept to measure
        fabric.step(cycle)
        cycle += 1
        if (cycle % check_every == 0 or cycle >= program.bound) and fabric.done():
            break
        if cycle >= program.bound:
            raise RuntimeError(f"{size}: the matmul did not finish in {program.bound} cycles")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    held = array_bytes(fabric)
    result = fabric.result()
    error = float(np.abs(program.output(result)["y"] - x @ w).max())
    cores = rows * cols
    return {"size": f"{rows}x{cols}", "cores": cores, "cycles": result.cycles, "wall_s": wall,
            "cpu_s": cpu, "core_cycles_per_s": cycle * cores / wall,
            "core_cycles_per_cpu_s": cycle * cores / max(cpu, 1e-9), "array_mb": held / 2**20,
            "peak_mb": peak_mb(xp), "error": error}


def peak_mb(xp) -> float:
    """The process's peak resident memory (on CuPy: the GPU memory pool's bytes in use)."""
    if getattr(xp, "__name__", "") == "cupy":
        return xp.get_default_memory_pool().total_bytes() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated(args, size: str) -> dict:
    """`one` in a child process of its own (its peak memory is this size's alone)."""
    cmd = [sys.executable, __file__, "--one", size, "--backend", args.backend, "--tile",
           str(args.tile), "--samples", str(args.samples), "--density", str(args.density)]
    path = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if out.returncode:
        raise RuntimeError(f"size {size} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["32x32", "64x64", "128x128", "256x256", "wse2"])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--in-process", action="store_true", help="run every size in this process")
    parser.add_argument("--one", help=argparse.SUPPRESS)     # a child: one size, as JSON
    args = parser.parse_args(argv)
    if args.backend == "cupy" and not cuda_available():
        print("backend cupy: no CUDA GPU on this machine (CuPy missing or no device); "
              "nothing to run. Rerun with --backend numpy, or on a machine with an NVIDIA GPU.")
        return []
    backend = get_backend(args.backend)
    check_every = 1 if backend.name == "numpy" else 64
    if args.one:
        print(json.dumps(one(backend.xp, args.one, args.tile, args.samples, args.density, check_every)))
        return []
    note = "" if backend.name == "cupy" else " (a CUDA GPU is here: try --backend cupy)" \
        if cuda_available() else " (no GPU on this machine: NumPy on the CPU)"
    print(f"backend {backend.name}{note}; {TARGET} constants; matmul forward, tile {args.tile} x "
          f"{args.tile} weights a core, {args.samples} sample(s), density {args.density}")
    print(f"{'region':>10} {'cores':>8} {'cycles':>7} {'wall s':>8} {'cpu s':>8} "
          f"{'core-cyc/s':>11} {'per cpu s':>10} {'arrays MB':>10} {'peak MB':>8} {'max err':>8}")
    rows = []
    for size in args.sizes:
        row = one(backend.xp, size, args.tile, args.samples, args.density, check_every) \
            if args.in_process else isolated(args, size)
        rows.append(row)
        print(f"{row['size']:>10} {row['cores']:>8} {row['cycles']:>7} {row['wall_s']:>8.1f} "
              f"{row['cpu_s']:>8.1f} {row['core_cycles_per_s']:>11.3g} "
              f"{row['core_cycles_per_cpu_s']:>10.3g} {row['array_mb']:>10.0f} "
              f"{row['peak_mb']:>8.0f} {row['error']:>8.2g}", flush=True)
    return rows


if __name__ == "__main__":
    main()
