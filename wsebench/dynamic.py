"""Dynamic execution in the workbench: what the wafer did with halting positions and padding.

    import wsebench as wb
    from wsebench import dynamic
    s = wb.compile(ut, wb.universal.ut_loss(ut), example=(x, y), optimizer=opt)
    s.train(batches)
    dynamic.summary(s)        # active share per step, mean ponder steps, speedups, padding share
    dynamic.plot_active_fraction(dynamic.summary(s))

The figures come from the simulator's timing of the last step (`simulator.dynamic_report`);
every StepResult of a run carries its own baselines (`fixed_depth_cycles`, `padded_cycles`),
which `run_summary` totals. `ponder_experiment` and `padding_experiment` are the runs behind
bench/dynamic.py and the notebooks 03_dynamic_depth and 04_variable_length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulator.dynamic_report import dynamic_summary, run_summary

from . import plots, tasks
from .models import transformer
from .universal import universal_transformer, ut_loss

__all__ = ["summary", "run_summary", "plot_active_fraction", "plot_lengths", "PonderSetup",
           "PaddingSetup", "ponder_experiment", "padding_experiment", "format_table"]


def summary(session) -> dict:
    """The dynamic-execution figures of `session`'s last step (empty for a model without
    `running` markers): see `simulator.dynamic_report.dynamic_summary`."""
    timing = session._trainer.last_timing
    if timing is None:
        raise RuntimeError("no step has run yet: call session.step(x, y) or session.train(...) first")
    return dynamic_summary(timing)


def plot_active_fraction(runs, ax=None):
    """Bars of the share of real positions still running at each recurrent step. `runs`: one
    summary (`summary(session)`) or a dict of label -> summary, drawn side by side."""
    if "active_fraction_per_step" in runs:
        runs = {"": runs}
    fig, ax = plots._axes(ax, figsize=(6.0, 3.6))
    width = 0.8 / max(len(runs), 1)
    for i, (label, values) in enumerate(runs.items()):
        fractions = values["active_fraction_per_step"]
        steps = np.arange(1, len(fractions) + 1)
        ax.bar(steps + (i - (len(runs) - 1) / 2) * width, fractions, width,
               label=f"{label} (mean {values['mean_ponder_steps']:.2f} steps)".strip())
    ax.set_xlabel("recurrent step")
    ax.set_ylabel("share of real positions running")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return fig


def plot_lengths(task, pad_to: int | None = None, ax=None):
    """Histogram of a `wsebench.tasks.SequenceTask`'s sample lengths, with the padded length
    (`pad_to`, by default the task's max_len) marked."""
    lengths = task.lengths
    fig, ax = plots._axes(ax, figsize=(6.0, 3.6))
    ax.hist(lengths, bins=np.arange(lengths.min(), lengths.max() + 2) - 0.5, color="tab:blue")
    width = pad_to or task.max_len
    ax.axvline(width, color="tab:red", linestyle="--", label=f"padded length {width}")
    ax.axvline(lengths.mean(), color="tab:green", label=f"mean length {lengths.mean():.1f}")
    ax.set_xlabel("sample length (tokens)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    return fig


# ---- the experiments behind bench/dynamic.py and the notebooks 03 and 04 ----

@dataclass(frozen=True)
class PonderSetup:
    """A Universal Transformer on parity (Graves 2016's first ACT task) with ACT and at fixed
    depth = `max_steps`, trained alike."""
    max_steps: int = 6
    max_len: int = 8
    samples: int = 2048
    test_samples: int = 512
    batch: int = 32
    d_model: int = 32
    heads: int = 2
    ffn: int = 64
    steps: int = 300
    lr: float = 3e-3
    tau: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class PaddingSetup:
    """A transformer classifier on the long-tailed topic task, every batch padded to the
    task's longest length (a compiled plan has fixed shapes; the wafer skips the pads)."""
    max_len: int = 64
    median: float = 6.0
    samples: int = 2048
    test_samples: int = 512
    batch: int = 32
    d_model: int = 32
    heads: int = 2
    layers: int = 2
    ffn: int = 64
    steps: int = 60
    lr: float = 3e-3
    seed: int = 0


def _train(model, loss_fn, task, setup, wafer: str, backend: str, progress: bool = False):
    from .session import compile
    x, y = next(tasks.batches(task, setup.batch, seed=setup.seed, pad_to="max"))
    session = compile(model, loss_fn, example=(x, y), wafer=wafer, backend=backend,
                      optimizer=torch.optim.Adam(model.parameters(), lr=setup.lr), seed=setup.seed)
    history = session.train(tasks.batches(task, setup.batch, seed=setup.seed, pad_to="max"),
                            steps=setup.steps, progress=progress)
    return session, history


def _accuracy(session, task) -> float:
    batch = tasks.collate(task.samples, pad_to=task.max_len)
    return session.accuracy(batch.x, batch.y)


def ponder_experiment(setup: PonderSetup = PonderSetup(), wafer: str = "classroom",
                      backend: str = "numpy", progress: bool = False) -> list[dict]:
    """Rows "fixed depth" and "ACT": mean simulated cycles per step over the run, speedup over
    the fixed-depth model, mean ponder steps, held-out accuracy, and the ACT run's speedup over
    its own fixed-depth baseline (the same tensors with every position running every step).
    `progress`: a progress bar per training run (tqdm.auto, as `Session.train` shows)."""
    task = tasks.parity(setup.samples, 1, setup.max_len, seed=setup.seed)
    test = tasks.parity(setup.test_samples, 1, setup.max_len, seed=setup.seed + 1)
    rows = []
    for act in (False, True):
        model = universal_transformer(vocab=task.vocab, d_model=setup.d_model, heads=setup.heads,
                                      ffn=setup.ffn, max_steps=setup.max_steps, classes=2,
                                      act=act, tau=setup.tau, max_len=setup.max_len, seed=setup.seed)
        session, history = _train(model, ut_loss(model), task, setup, wafer, backend, progress)
        total = run_summary(history)
        rows.append({"model": "ACT" if act else f"fixed depth ({setup.max_steps} steps)",
                     "cycles": total["cycles"] / max(total["steps"], 1),
                     "mean_ponder_steps": total["mean_ponder_steps"],
                     "accuracy": _accuracy(session, test),
                     "speedup_vs_own_fixed_depth": total["speedup_vs_fixed_depth"],
                     "last": summary(session), "session": session, "history": history})
    for row in rows:
        row["speedup"] = rows[0]["cycles"] / row["cycles"] if row["cycles"] else 1.0
    return rows


def padding_experiment(setup: PaddingSetup = PaddingSetup(), wafer: str = "classroom",
                       backend: str = "numpy", progress: bool = False) -> dict:
    """The classifier trained on padded batches: mean cycles per step with real tokens only and
    with the pads charged (the same tensors), the speedup, and the padding share of the data.
    `progress`: a progress bar for the training run."""
    task = tasks.longtail(setup.samples, 2, setup.max_len, median=setup.median, seed=setup.seed)
    test = tasks.longtail(setup.test_samples, 2, setup.max_len, median=setup.median,
                          seed=setup.seed + 1)
    model = transformer(vocab=task.vocab, d_model=setup.d_model, heads=setup.heads,
                        layers=setup.layers, ffn=setup.ffn, max_len=setup.max_len,
                        classes=task.classes, seed=setup.seed)
    session, history = _train(model, torch.nn.CrossEntropyLoss(), task, setup, wafer, backend,
                              progress)
    total = run_summary(history)
    steps = max(total["steps"], 1)
    return {"task": task, "cycles": total["cycles"] / steps,
            "padded_cycles": sum(r.padded_cycles for r in history) / steps,
            "speedup": total["speedup_vs_padded"], "batch_padding_fraction": total["padding_fraction"],
            "data_padding_fraction": tasks.dataset_padding_fraction(task, pad_to="max"),
            "accuracy": _accuracy(session, test), "session": session, "history": history}


def format_table(ponder: list[dict], padding: dict | None = None) -> str:
    """The two experiments as text tables."""
    lines = ["UT on parity: ACT against fixed depth (simulated cycles per training step, run mean)",
             f"  {'model':<24}{'cycles/step':>13}{'speedup':>9}{'ponder steps':>14}{'accuracy':>10}"]
    for row in ponder:
        lines.append(f"  {row['model']:<24}{row['cycles']:>13,.0f}{row['speedup']:>8.2f}x"
                     f"{row['mean_ponder_steps']:>14.2f}{row['accuracy']:>10.3f}")
    act = ponder[-1]
    lines.append(f"  ACT over its own fixed-depth baseline (same tensors, every position "
                 f"every step): {act['speedup_vs_own_fixed_depth']:.2f}x")
    if padding is not None:
        task = padding["task"]
        lines += ["", f"Transformer on longtail (lengths {task.lengths.min()}..{task.max_len}, "
                      f"mean {task.lengths.mean():.1f}, every batch padded to {task.max_len})",
                  f"  padding share of the data        {padding['data_padding_fraction']:>10.3f}",
                  f"  padded   cycles/step             {padding['padded_cycles']:>10,.0f}",
                  f"  unpadded cycles/step             {padding['cycles']:>10,.0f}",
                  f"  unpadded speedup                 {padding['speedup']:>9.2f}x",
                  f"  accuracy                         {padding['accuracy']:>10.3f}"]
    return "\n".join(lines)
