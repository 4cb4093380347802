"""The `wsebench` command: `demo`, `run CONFIG`, `sweep CONFIG` and `lab`, headless versions of
the notebooks.

Every wsebench error (a bad config value, a model that does not fit the wafer, an op without
a kernel, a non-finite step, an output path that cannot be written, ...: `errors.user_errors`)
ends with one line on stderr and exit status 2, with the traceback only under `--debug`;
anything else is a bug and keeps its traceback. Output paths are checked before any work.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsebench", description="Train PyTorch models on a "
                                     "simulated wafer-scale engine and report what the wafer did.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the demo ReLU MLP (512 wide) with harvesting on and off; "
                          "write an HTML report")
    demo.add_argument("--out", default="out", help="folder for report.html and its PNGs (out)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per run")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    run = sub.add_parser("run", help="run the experiment a JSON/YAML config describes")
    run.add_argument("config", help="path to a .json, .yaml or .yml config")
    run.add_argument("--out", default="out", help="folder for report.html and its PNGs (out)")
    run.add_argument("--steps", type=int, default=None, help="override the config's steps")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--checkpoint", default=None, metavar="FILE", help="save the session to "
                     "FILE when the run stops (finished, interrupted or refused a NaN step)")
    run.add_argument("--resume", action="store_true", help="continue the run saved in "
                     "--checkpoint FILE (if it exists) up to the config's steps")
    sweep = sub.add_parser("sweep", help="run one experiment per point of a grid over a config, "
                           "locally or on a Dask cluster; results go to a store")
    sweep.add_argument("config", help="path to a .json, .yaml or .yml base config")
    sweep.add_argument("--grid", help="a JSON/YAML file mapping dotted config keys to lists of "
                       "values, e.g. {model.hidden: [32, 64], sparsity.harvest: [true, false]}")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                       help="a grid axis on the command line (repeatable; values are YAML, "
                       "e.g. --set model.hidden=32,64 --set sparsity.harvest=true,false)")
    sweep.add_argument("--store", default=None, help="results folder: every finished point is "
                       "saved there, and points already there are skipped")
    sweep.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run on the Dask "
                       "scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786) instead of local processes")
    sweep.add_argument("--workers", type=int, default=None, help="local worker processes "
                       "(default: one per CPU core)")
    sweep.add_argument("--repeats", type=int, default=1, help="runs per point, each its own seed")
    sweep.add_argument("--same-seed", action="store_true", help="give every point the config's "
                       "seed (default: each point its own seed, derived from it)")
    sweep.add_argument("--steps", type=int, default=None, help="override the config's steps")
    sweep.add_argument("--csv", default=None, help="also write the table to this CSV file")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    lab_cmd = sub.add_parser("lab", help="open the student's copy of the classroom lab "
                             "(05_lab) in JupyterLab")
    lab_cmd.add_argument("--dir", default="wsebench-lab", help="folder for the student's copy "
                         "(wsebench-lab); a copy already there is opened, never overwritten")
    ispd = sub.add_parser("ispd", help="solve an ISPD 2020 wafer-placement contest instance "
                          "(.kgraph): size, pack and place its kernels; write the solution and a PNG")
    ispd.add_argument("kgraph", help="path to a .kgraph file")
    ispd.add_argument("--time-limit", type=float, default=60.0, help="seconds (60)")
    ispd.add_argument("--out", default=None, help="solution file (default: FILE.solution next to "
                      "the working directory); the floorplan PNG goes beside it")
    for command in (demo, run, sweep, ispd):
        command.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "lab":
        return lab(Path(args.dir))
    from .errors import user_errors
    try:
        if args.command == "demo":
            return demo(Path(args.out), args.steps, progress=not args.no_progress)
        if args.command == "sweep":
            return sweep_command(args)
        if args.command == "ispd":
            return ispd_command(args.kgraph, args.time_limit, args.out)
        return run_file(args.config, Path(args.out), args.steps, progress=not args.no_progress,
                        checkpoint=args.checkpoint, resume=args.resume)
    except user_errors() as err:
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"wsebench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return USAGE_ERROR


def demo(out: Path, steps: int | None, progress: bool = True) -> int:
    from .outputs import writable_folder
    writable_folder(out, "--out")
    runs = demo_runs(steps, progress)
    return _finish(out, runs, "wsebench demo: ReLU MLP with dropout on the classroom wafer")


# The demo's MLP is wide enough that every core of the classroom wafer holds real work (about
# 250 weights a core), so the zeros ReLU and dropout make become cycles saved, not overhead.
DEMO_MODEL = {"hidden": 512, "depth": 6, "dropout": 0.2}


def demo_runs(steps: int | None = None, progress: bool = True) -> dict:
    """The default config with the demo's wider MLP (`DEMO_MODEL`), twice: harvesting on and
    off (same seed, so same data and masks)."""
    from .config import default_config, run, validate
    config = default_config()
    config["model"] = {**config["model"], **DEMO_MODEL}
    if steps is not None:
        config["steps"] = steps
    validate(config)
    runs = {}
    for label, harvest in (("harvest on", True), ("harvest off (dense baseline)", False)):
        variant = {**config, "sparsity": {**config["sparsity"], "harvest": harvest}}
        runs[label] = run(variant, progress=progress)
    return runs


def run_file(path: str, out: Path, steps: int | None, progress: bool = True,
             checkpoint: str | None = None, resume: bool = False) -> int:
    from compiler import ConfigError
    from .config import load_config, run
    from .outputs import writable_file, writable_folder
    from .resume import run as run_resumable
    config = load_config(path)
    writable_folder(out, "--out")
    if resume and checkpoint is None:
        raise ConfigError("--resume needs --checkpoint FILE: the checkpoint to continue from")
    if checkpoint is not None:
        writable_file(checkpoint, "--checkpoint")
    if steps is not None:
        config["steps"] = steps
    result = run(config, progress=progress) if checkpoint is None else \
        run_resumable(config, checkpoint, resume=resume, progress=progress)
    if checkpoint is not None:
        print(f"saved the session to {checkpoint} after step {len(result['history'])}"
              + (f" (resumed at step {result['resumed_at']})" if result["resumed_at"] else ""))
    return _finish(out, {Path(path).stem: result}, f"wsebench run {path}")


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


SWEEP_COLUMNS = ("seed", "final_loss", "accuracy", "step_cycles", "harvest_speedup",
                 "samples_per_s", "compute_utilization_pct")
INTERRUPTED = 130


def sweep_grid(grid_file: str | None, sets: list[str]) -> dict:
    """The grid from --grid FILE and --set KEY=V1,V2 (values parsed as YAML; --set wins)."""
    import yaml
    from compiler import ConfigError
    from .config import _parse, read_text
    grid = {}
    if grid_file is not None:
        path = Path(grid_file)
        where = f"grid file {str(path)!r}"
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            raise ConfigError(f"{where}: unknown extension {path.suffix!r}; allowed: .json, .yaml, .yml")
        if not path.is_file():
            raise ConfigError(f"{where} does not exist")
        grid = _parse(read_text(path, where), path.suffix.lower(), where)
        if not isinstance(grid, dict):
            raise ConfigError(f"{where} must map dotted config keys to lists of values")
    for item in sets:
        key, eq, values = item.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=V1,V2,... (e.g. model.hidden=32,64)")
        try:
            grid[key.strip()] = yaml.safe_load(f"[{values}]")
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: values are not valid YAML: "
                              f"{' '.join(str(err).split())}") from None
    return grid


def sweep_command(args) -> int:
    """`wsebench sweep`: wb.sweep with the grid from --grid/--set, locally or on --scheduler."""
    import signal
    from compiler import ConfigError
    from .config import load_config
    from .outputs import writable_file, writable_folder
    from .sweeps import sweep
    config = load_config(args.config)
    if args.store is not None:
        writable_folder(args.store, "--store")
    if args.csv is not None:
        writable_file(args.csv, "--csv")
    if args.steps is not None:
        config["steps"] = args.steps
    grid = sweep_grid(args.grid, args.set)
    if args.scheduler and args.workers is not None:
        raise ConfigError("--workers sizes the local process pool; with --scheduler the Dask "
                          "cluster's workers run the points")
    client = _dask_client(args.scheduler) if args.scheduler else None

    def _terminate(signum, frame):        # `kill` stops the sweep like Ctrl-C: finished points stay
        raise KeyboardInterrupt
    import threading
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        table = sweep(config, grid, executor=None if client is None else client.get_executor(),
                      store=args.store, workers=args.workers, repeats=args.repeats,
                      seeds="base" if args.same_seed else "derived", progress=not args.no_progress)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if client is not None:
            client.close()
    point_columns = [c for c in table.columns if c not in SWEEP_COLUMNS and
                     (c in grid or c == "repeat")]
    if table:
        print(table.to_text(["key"] + point_columns + [c for c in SWEEP_COLUMNS if c in table.columns]))
    if args.csv:
        print(f"wrote {table.to_csv(args.csv)}")
    where = f" in {table.store}" if table.store is not None else ""
    failed = f", {len(table.errors)} failed" if table.errors else ""
    stopped = " (interrupted: run the same command again to finish)" if table.interrupted else ""
    print(f"{len(table)} point{'' if len(table) == 1 else 's'}{where}: {len(table.ran)} ran, "
          f"{len(table.skipped)} were already stored{failed}{stopped}")
    for err in table.errors:
        print(f"wsebench: error: point {err['point']}: {err['error']}", file=sys.stderr)
    if table.interrupted:
        return INTERRUPTED
    return 1 if table.errors else 0


def _dask_client(address: str):
    from compiler import ConfigError
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs Dask: pip install 'dask[distributed]' (or "
                          "pip install -e .[sweeps])") from None
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {address!r}: {err}") from None


def ispd_command(kgraph: str, time_limit: float, out: str | None) -> int:
    """`wsebench ispd`: solve, validate independently, write the solution and the floorplan."""
    from .ispd import format_solution, plot_floorplan, read_kgraph, solve, validate, write_solution
    from compiler import ConfigError
    from .outputs import writable_file
    from .plots import save_png
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise ConfigError(f"--time-limit must be a finite number of seconds > 0, got {time_limit:g}")
    graph = read_kgraph(kgraph)
    writable_file(Path(out) if out else Path(Path(kgraph).stem + ".solution"), "--out")
    solution = solve(graph, time_limit=time_limit)
    verdict = validate(graph, format_solution(solution), t_star=solution.t_star)
    path = write_solution(solution, Path(out) if out else Path(Path(kgraph).stem + ".solution"))
    png = save_png(plot_floorplan(solution), path.with_suffix(".png"))
    for line in solution.log:
        print(line)
    print(f"max time {verdict.max_time:g}, T* {verdict.t_star:g}, ratio {verdict.ratio:.4f}")
    print(f"wire length {verdict.wire_length:g}")
    print(f"fabric used {100 * verdict.used_tiles / (graph.width * graph.height):.1f}%")
    print(f"run time {solution.seconds:.1f} s")
    print(f"wrote {path} (valid) and {png}")
    return 0


def notebooks_dir() -> Path:
    """The repository's notebooks/ (next to the package), else ./notebooks."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


STUDENT_LAB = "05_lab.ipynb"     # the teacher's copy, with the answer key, is in teacher/


def lab(folder: Path = Path("wsebench-lab")) -> int:
    """Copy the student's lab notebook into `folder` (keeping a copy already there, with the
    student's answers) and open it in JupyterLab."""
    if importlib.util.find_spec("jupyterlab") is None:
        print("wsebench: error: JupyterLab is not installed; install it with "
              "`pip install -e .[lab]` (or run `make lab`)", file=sys.stderr)
        return USAGE_ERROR
    copy = folder / STUDENT_LAB
    if not copy.exists():
        import shutil
        try:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebooks_dir() / STUDENT_LAB, copy)
        except OSError as err:
            print(f"wsebench: error: cannot write the lab to {str(folder)!r}: "
                  f"{err.strerror or err}; pass --dir FOLDER", file=sys.stderr)
            return USAGE_ERROR
    return subprocess.call([sys.executable, "-m", "jupyterlab", str(copy)])


if __name__ == "__main__":
    sys.exit(main())
