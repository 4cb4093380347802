"""Helpers for the classroom lab (notebooks/05_lab.ipynb): runs, tables and self-checks.

A self-check never holds the answer: it measures it, from the runs the student made (or by
compiling), and tells the student whether their answer matches, with a hint if it does not.
Checks return a `wsebench.exercises.Verdict` (a coloured ✓ or ✗ in Jupyter; `.ok` is True,
False or None when not answered yet), compare answers loosely (case, spacing, synonyms such as
"dropout" for "drop") and never raise, so a lab runs top to bottom before anyone has answered;
`score()` sums them up.
"""
from __future__ import annotations

import copy
import warnings
from html import escape

from .. import ConfigError, PlacementError, WaferFitError

from .. import config as _config
from .. import exercises
from ..exercises import Verdict, score  # noqa: F401 (score: the lab's last cell)
from ..formatting import fmt
from .state import WorkbenchState, check, lesson_config, validate


def config(preset: str = "lesson-harvest", steps: int | None = None, **changes) -> dict:
    """A lesson's config (see wb.widgets.LESSONS), with `steps` and control changes applied:
    config(steps=10, **{"model.activation": "tanh"})."""
    c = lesson_config(preset)
    if steps is not None:
        c["steps"] = steps
    return variant(c, changes)


def variant(base: dict, changes: dict) -> dict:
    """`base` with control keys changed, e.g. {"sparsity.harvest": False, "wafer.rows": 8}."""
    state = WorkbenchState(copy.deepcopy(base))
    for key, value in changes.items():
        if key in ("wafer.rows", "wafer.cols") and not state.get("wafer.override"):
            state.set("wafer.override", True)
        if key.startswith("mapping.") and key != "mapping.strategy":
            state.set("mapping.strategy", "pinned")
        state.set(key, value)
    return state.config


def run(cfg: dict) -> dict:
    """Compile and train `cfg` (what `wsebench run` does); the result has report and history.
    `mapping` may also be a strategy ("model", "data"), as the workbench's dropdown sets it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _config.run(validate(cfg), progress=False)


def kernel(result: dict, name: str) -> dict:
    """The report's row for kernel `name` (cycles, dense_cycles, harvested_macs, ...)."""
    rows = {k["name"]: k for k in result["report"].kernels}
    if name not in rows:
        raise KeyError(f"no kernel {name!r}; kernels: {', '.join(rows)}")
    return rows[name]


def harvest_table(runs: dict) -> "HTMLTable":
    """Per kernel, per run: measured and dense cycles per step and the harvested MACs."""
    head = ["run", "kernel", "cycles/step", "dense cycles/step", "dense / measured",
            "harvested MACs"]
    rows = []
    for label, result in runs.items():
        for k in result["report"].kernels:
            rows.append([label, k["name"], fmt(k["cycles"]), fmt(k["dense_cycles"]),
                         fmt(k["speedup_vs_dense"], "x"), fmt(int(k["harvested_macs"]))])
        s = result["report"].summary
        rows.append([label, "<b>whole step</b>", fmt(s["step_cycles"]),
                     fmt(s["dense_step_cycles"]), fmt(s["harvest_speedup"], "x"), ""])
    return HTMLTable(head, rows)


def kernel_sizes(base: dict, name: str = "fc2", sides=(2, 4, 8)) -> dict[int, float]:
    """Pin kernel `name` to side x side cores for each side; its measured cycles per sample."""
    out = {}
    for side in sides:
        c = variant(base, {"mapping.pattern": name, "mapping.rows": side, "mapping.cols": side,
                           "mapping.replicas": 1})
        out[side] = float(kernel(run(c), name)["per_sample_cycles"])
    return out


def fits(base: dict, side: int) -> tuple[bool, str]:
    """Does `base`'s model compile on a side x side area of its wafer? (and why not)"""
    c = variant(base, {"wafer.rows": side, "wafer.cols": side})
    c["steps"] = 1
    problems = check(c)
    if problems:
        return False, problems[0]
    try:
        run(c)
    except (WaferFitError, PlacementError, ConfigError) as err:
        return False, str(err)
    return True, "fits"


# Exercise 5's runs: a dense non-linearity, ReLU inserted, and ReLU plus dropping small values.
SPARSITY_RUNS = {"gelu": {}, "relu": {"sparsity.relu.on": True},
                 "relu + drop": {"sparsity.relu.on": True, "sparsity.drop.fraction": 0.75}}


def sparsity_runs(base: dict, progress: bool = False) -> dict:
    """`base` trained as each of `SPARSITY_RUNS` (same seed: same data and initial weights);
    `progress`: a bar over the runs (tqdm.auto)."""
    from tqdm.auto import tqdm
    return {label: run(variant(base, changes))
            for label, changes in tqdm(SPARSITY_RUNS.items(), desc="exercise 5's runs", unit="run",
                                       disable=not progress)}


def sparsity_table(runs: dict) -> "HTMLTable":
    """Per run: cycles per step, samples/s, MACs executed per step, final loss, accuracy."""
    head = ["run", "cycles/step", "samples/s", "executed MACs", "final loss", "accuracy"]
    rows = []
    for label, result in runs.items():
        s = result["report"].summary
        rows.append([label, fmt(s["step_cycles"]), fmt(s["samples_per_s"]),
                     fmt(int(s["executed_macs"])), fmt(result["final_loss"]),
                     fmt(result["accuracy"], "share")])
    return HTMLTable(head, rows)


# --- self-checks ------------------------------------------------------------------------------

def _best_kernel(result: dict) -> dict:
    return max(result["report"].kernels, key=lambda k: k["speedup_vs_dense"])


def _step_vs_kernel(result: dict) -> str:
    best = _best_kernel(result)["speedup_vs_dense"]
    return "yes" if result["report"].summary["harvest_speedup"] >= best - 1e-9 else "no"


def _skipped(result: dict) -> int:
    s = result["report"].summary
    return int(s["dense_macs"] - s["executed_macs"])


def _more_zeros(relu: dict, other: dict, other_name: str = "tanh") -> tuple[str, dict]:
    """The activation whose run skipped more MACs, and the MACs each skipped."""
    macs = {"relu": _skipped(relu), other_name: _skipped(other)}
    return max(macs, key=macs.get), macs


def _smallest_area(base: dict, largest: int = 32) -> int | None:
    return next((n for n in range(1, largest + 1) if fits(base, n)[0]), None)


def _fastest(runs: dict) -> str:
    return min(runs, key=lambda label: _step_cycles(runs[label]))


def answer_key(on: dict, tanh: dict, sizes: dict, base: dict, sparse: dict) -> dict:
    """The answers of this lab's checks, measured from the runs given (for the teacher's copy)."""
    return {"1a": _best_kernel(on)["name"], "1b": _step_vs_kernel(on),
            "2": _more_zeros(on, tanh)[0],
            "3": round(sizes[4] / sizes[8], 2), "4": _smallest_area(base),
            "5a": _fastest(sparse),
            "5b": round(_step_cycles(sparse["gelu"]) / _step_cycles(sparse["relu + drop"]), 2)}


def check_best_kernel(answer, result: dict) -> Verdict:
    """1a. Which kernel did harvesting speed up the most (largest dense / measured cycles)?"""
    kernels = result["report"].kernels
    best = _best_kernel(result)
    return exercises.choice("1a", answer, best["name"], [k["name"] for k in kernels],
                            f"{best['name']} ran {fmt(best['speedup_vs_dense'], 'x')} faster than "
                            "dense.", "Read the 'dense / measured' column of the harvest-on run "
                            "and pick the largest.")


def check_step_vs_kernel(answer, result: dict) -> Verdict:
    """1b. Does the whole step speed up as much as the best kernel? ("yes" or "no")"""
    best = _best_kernel(result)["speedup_vs_dense"]
    step = result["report"].summary["harvest_speedup"]
    return exercises.choice("1b", answer, _step_vs_kernel(result), ["yes", "no"],
                            f"the step ran {fmt(step, 'x')} faster, its best kernel "
                            f"{fmt(best, 'x')}: a pipeline runs at the pace of its slowest stage, "
                            "and the kernels that harvest nothing (or little) set that pace.",
                            "Compare the 'whole step' row with the kernels' rows.")


def check_activation(answer, relu: dict, other: dict, other_name: str = "tanh") -> Verdict:
    """2. Which activation gave the wafer more zeros to skip (more harvested MACs)?"""
    truth, macs = _more_zeros(relu, other, other_name)
    return exercises.choice("2", answer, truth, list(macs),
                            f"{truth} let the wafer skip {fmt(macs[truth])} MACs per step, the "
                            f"other {fmt(min(macs.values()))}: ReLU outputs exact zeros for every "
                            "negative input.", "Compare the harvested MACs of the two runs.")


def check_area_speedup(answer, sizes: dict, small: int = 4, large: int = 8) -> Verdict:
    """3. How many times faster is the kernel on large x large cores than on small x small?
    Right within 15% of the measured ratio."""
    truth = sizes[small] / sizes[large]
    return exercises.number("3", answer, truth, 0.15,
                            f"measured {fmt(truth, 'x')} for {(large / small) ** 2:.0f}x the area: "
                            "each core holds a smaller tile, so it does fewer MACs per sample (the "
                            "overheads that do not shrink keep it below the ideal).",
                            f"Divide the cycles per sample at {small}x{small} by those at "
                            f"{large}x{large}.")


def check_smallest_area(answer, base: dict) -> Verdict:
    """4. The smallest side n such that the model compiles on an n x n area of the wafer."""
    right = "it fits and one side smaller does not: the weights, gradients, optimizer state and " \
            "stashed activations need that much SRAM."
    if answer is None:
        return exercises.verdict("4", None, right, "")
    try:
        n = int(answer)
    except (TypeError, ValueError):
        return exercises.verdict("4", False, right, "the answer is a whole number of cores per side.")
    fits_n, why_n = fits(base, n)
    if not fits_n:
        return exercises.verdict("4", False, right, f"on {n} x {n} it does not fit: {why_n}")
    if n > 1 and fits(base, n - 1)[0]:
        return exercises.verdict("4", False, right, f"{n} x {n} fits, but it is not the smallest "
                                 "square that does: keep shrinking until the compiler refuses.")
    return exercises.verdict("4", True, f"{n} x {n}: {right}", "")


def _step_cycles(result: dict) -> float:
    return float(result["report"].summary["step_cycles"])


def check_fastest_run(answer, runs: dict) -> Verdict:
    """5a. Which run needed the fewest cycles per step?"""
    truth = _fastest(runs)
    return exercises.choice("5a", answer, truth, list(runs),
                            f"{truth!r} took {fmt(_step_cycles(runs[truth]))} cycles per step: "
                            "every zero it induced is a multiplication the wafer skips where it "
                            "streams.", "Read the cycles/step column and pick the smallest.")


def check_step_ratio(answer, runs: dict, slow: str = "gelu", fast: str = "relu + drop") -> Verdict:
    """5b. How many times faster per step is run `fast` than run `slow`? Right within 10%."""
    truth = _step_cycles(runs[slow]) / _step_cycles(runs[fast])
    macs = (runs[slow]["report"].summary["executed_macs"]
            / max(runs[fast]["report"].summary["executed_macs"], 1))
    return exercises.number("5b", answer, truth, 0.1,
                            f"measured {fmt(truth, 'x')}, while the MACs executed fell "
                            f"{fmt(macs, 'x')}: a step runs at the pace of its slowest kernel, and "
                            "what is not skipped (the dense input, the element-wise work) remains.",
                            f"Divide the cycles per step of {slow!r} by those of {fast!r}.")


class HTMLTable:
    """A small table that shows as HTML in Jupyter and as text elsewhere."""

    def __init__(self, head: list[str], rows: list[list[str]]):
        self.head, self.rows = head, rows

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in self.head)
        body = "".join("<tr>" + "".join(f"<td>{c if c.startswith('<b>') else escape(c)}</td>"
                                        for c in row) + "</tr>" for row in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        widths = [max(len(str(x)) for x in col) for col in zip(self.head, *self.rows)]
        lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths))
                 for row in [self.head, *self.rows]]
        return "\n".join(lines)


def plot_sizes(sizes: dict, name: str = "fc2"):
    """Cycles per sample of kernel `name` against its area (cores), on log-log axes, with the
    ideal 1/area line through the smallest mapping."""
    from matplotlib.figure import Figure

    from .. import plots  # noqa: F401 - registers Figure -> PNG with IPython
    sides = sorted(sizes)
    area = [s * s for s in sides]
    cycles = [sizes[s] for s in sides]
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.loglog(area, cycles, "o-", label="measured")
    ax.loglog(area, [cycles[0] * area[0] / a for a in area], "--", color="grey",
              label="ideal: cycles x area constant")
    for s, a, c in zip(sides, area, cycles):
        ax.annotate(f"{s}x{s}", (a, c), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(f"cores for {name} (rows x cols)")
    ax.set_ylabel("cycles per sample")
    ax.set_title(f"{name}: kernel size vs time")
    ax.legend()
    return fig
