"""Dynamic execution, measured: a Universal Transformer with ACT against the same model at fixed
depth on parity, and a transformer classifier's unpadded speedup on a long-tailed task.

    PYTHONPATH=. python bench/dynamic.py [--fast] [--steps N] [--backend numpy] [--wafer classroom]

Both parts train on the simulated wafer and read the simulated cycles of every training step
(`wsebench.dynamic`): the ACT speedup is the fixed-depth model's cycles per step over the ACT
model's (and, from the same tensors, over the ACT run's own fixed-depth baseline); the unpadded
speedup is the padded run's cycles over the real-token run's, on the same batches. Accuracy is
held-out. Prints figures only; `--fast` shrinks everything for a smoke test.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

from wsebench import dynamic


def main(argv=None) -> tuple[list[dict], dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny models and runs (smoke test)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--wafer", default="classroom")
    args = parser.parse_args(argv)
    ponder, padding = dynamic.PonderSetup(), dynamic.PaddingSetup()
    if args.fast:
        ponder = dataclasses.replace(ponder, max_steps=3, max_len=6, samples=128, test_samples=64,
                                     batch=8, d_model=8, ffn=16, steps=2)
        padding = dataclasses.replace(padding, max_len=16, samples=128, test_samples=64, batch=8,
                                      d_model=8, layers=1, ffn=16, steps=2)
    if args.steps is not None:
        ponder = dataclasses.replace(ponder, steps=args.steps)
        padding = dataclasses.replace(padding, steps=args.steps)
    start = time.perf_counter()
    rows = dynamic.ponder_experiment(ponder, wafer=args.wafer, backend=args.backend)
    padded = dynamic.padding_experiment(padding, wafer=args.wafer, backend=args.backend)
    print(dynamic.format_table(rows, padded))
    print(f"\n({time.perf_counter() - start:.0f} s wall clock, {ponder.steps} + {padding.steps} "
          f"training steps per model, {args.backend} backend, {args.wafer} wafer)")
    return rows, padded


if __name__ == "__main__":
    main()
