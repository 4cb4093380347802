"""ISPD 2020 wafer-placement contest: one row per public instance.

    PYTHONPATH=. .venv/bin/python bench/ispd.py [--time-limit 60] [DIR]

Columns: max time / T* (the README's lower bound; 1.0 is optimal), total L1 wire length between
connected kernels' centres, fabric used %, and solver seconds. Every solution is checked by the
independent validator before its row is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsebench.ispd import read_kgraph
from compiler.ispd.solver import solve
from compiler.ispd.validator import validate
from compiler.ispd.writer import format_solution

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "ispd2020"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", default=str(DEFAULT if DEFAULT.is_dir() else "/work/shared/ispd2020"))
    p.add_argument("--time-limit", type=float, default=60.0)
    args = p.parse_args(argv)
    print(f"{'instance':<10} {'test':<28} {'kernels':>7} {'max/T*':>7} {'wire':>9} {'fabric%':>8} {'s':>6}")
    for path in sorted(Path(args.dir).glob("*.kgraph")):
        g = read_kgraph(path)
        s = solve(g, time_limit=args.time_limit)
        v = validate(g, format_solution(s), t_star=s.t_star)
        print(f"{path.stem:<10} {g.test:<28} {len(g.kernels):>7} {v.ratio:>7.3f} "
              f"{v.wire_length:>9.0f} {100 * v.used_tiles / (g.width * g.height):>8.1f} "
              f"{s.seconds:>6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
