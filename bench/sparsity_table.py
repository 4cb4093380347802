"""The seed's sparsity table, measured: speedup vs each experiment's dense baseline, simulated
samples/s and held-out accuracy, printed next to the seed's figures (Hot Chips 2020).

    PYTHONPATH=. python bench/sparsity_table.py [--fast] [--only fc34 ...] [--backend numpy]

The experiments and their configs live in `wsebench.sparsity_experiments` (the notebook
02_sparsity runs the same code); `--fast` shrinks them for a smoke test. The figures are read
off the table, never asserted, and no constant is tuned to reach the seed's.
"""
from __future__ import annotations

import argparse
import time

from wsebench import sparsity_experiments as sx


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny models and runs (smoke test)")
    parser.add_argument("--only", nargs="*", default=None,
                        help=f"experiments to run, among {[e.name for e in sx.experiments()]}")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--wafer", default="classroom")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for exp in sx.experiments(fast=args.fast):
        if args.only and exp.name not in args.only:
            continue
        rows += sx.run_experiment(exp, wafer=args.wafer, backend=args.backend)
    print(sx.format_table(rows))
    print(f"\n({time.perf_counter() - start:.0f} s wall clock, {args.backend} backend, "
          f"{args.wafer} wafer)")
    return rows


if __name__ == "__main__":
    main()
