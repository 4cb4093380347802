"""The `wsebench` command: `demo`, `run CONFIG` and `lab`, headless versions of the notebooks.

Configuration mistakes (a bad config value, a model that does not fit the wafer, an op without
a kernel) end with one line on stderr and exit status 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsebench", description="Train PyTorch models on a "
                                     "simulated wafer-scale engine and report what the wafer did.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the default ReLU MLP with harvesting on and off; "
                          "write an HTML report")
    demo.add_argument("--out", default="out", help="folder for report.html and its PNGs (out)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per run")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    run = sub.add_parser("run", help="run the experiment a JSON/YAML config describes")
    run.add_argument("config", help="path to a .json, .yaml or .yml config")
    run.add_argument("--out", default="out", help="folder for report.html and its PNGs (out)")
    run.add_argument("--steps", type=int, default=None, help="override the config's steps")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("lab", help="open the notebooks in JupyterLab")
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from compiler import ConfigError, WaferFitError
    from compiler.placement import PlacementError
    from .session import UnsupportedOpError
    return ConfigError, WaferFitError, PlacementError, UnsupportedOpError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "lab":
        return lab()
    errors = _user_errors()
    try:
        if args.command == "demo":
            return demo(Path(args.out), args.steps, progress=not args.no_progress)
        return run_file(args.config, Path(args.out), args.steps, progress=not args.no_progress)
    except errors as err:
        print(f"wsebench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return USAGE_ERROR


def demo(out: Path, steps: int | None, progress: bool = True) -> int:
    runs = demo_runs(steps, progress)
    return _finish(out, runs, "wsebench demo: ReLU MLP with dropout on the classroom wafer")


def demo_runs(steps: int | None = None, progress: bool = True) -> dict:
    """The default config twice, harvesting on and off (same seed, so same data and masks)."""
    from .config import default_config, run, validate
    config = default_config()
    if steps is not None:
        config["steps"] = steps
    validate(config)
    runs = {}
    for label, harvest in (("harvest on", True), ("harvest off (dense baseline)", False)):
        variant = {**config, "sparsity": {**config["sparsity"], "harvest": harvest}}
        runs[label] = run(variant, progress=progress)
    return runs


def run_file(path: str, out: Path, steps: int | None, progress: bool = True) -> int:
    from .config import load_config, run
    config = load_config(path)
    if steps is not None:
        config["steps"] = steps
    return _finish(out, {Path(path).stem: run(config, progress=progress)}, f"wsebench run {path}")


def _finish(out: Path, runs: dict, title: str) -> int:
    from .html import on_off_ratio, write_report
    path = write_report(out, runs, title=title)
    print(f"wrote {path} (with loss.png, heatmap.png, sram.png, placement.png)")
    for label, result in runs.items():
        print(headline(label, result))
    ratio = on_off_ratio(runs)
    if ratio is not None:
        print(f"harvest off / on measured cycles per step: {ratio:.3f}x")
    return 0


def headline(label: str, result: dict) -> str:
    s = result["report"].summary
    return (f"{label}: {s['samples_per_s']:,.0f} samples/s, {s['step_cycles']:,.0f} cycles/step "
            f"(dense {s['dense_step_cycles']:,.0f}, harvest speedup {s['harvest_speedup']:.3f}x), "
            f"active PEs {s['active_pes_pct']:.1f}%, compute utilization "
            f"{s['compute_utilization_pct']:.2f}%, static estimate / measured "
            f"{s['estimate_vs_measured']:.3f}, final loss {result['final_loss']:.4f}, "
            f"accuracy {100 * result['accuracy']:.1f}%, {result['wall_seconds']:.1f} s wall")


def notebooks_dir() -> Path:
    """The repository's notebooks/ (next to the package), else ./notebooks."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def lab() -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print("wsebench: error: JupyterLab is not installed; install it with "
              "`pip install -e .[lab]` (or run `make lab`)", file=sys.stderr)
        return USAGE_ERROR
    return subprocess.call([sys.executable, "-m", "jupyterlab", str(notebooks_dir())])


if __name__ == "__main__":
    sys.exit(main())
