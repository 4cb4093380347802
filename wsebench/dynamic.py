"""Dynamic execution in the workbench: what the wafer did with halting positions and padding.

    import wsebench as wb
    from wsebench import dynamic
    s = wb.compile(ut, wb.universal.ut_loss(ut), example=(x, y), optimizer=opt)
    s.train(batches)
    dynamic.summary(s)        # active share per step, mean ponder steps, speedups, padding share
    dynamic.plot_active_fraction(dynamic.summary(s))

The figures come from the simulator's timing of the last step (`simulator.dynamic_report`);
every StepResult of a run carries its own baselines (`fixed_depth_cycles`, `padded_cycles`),
which `run_summary` totals.
"""
from __future__ import annotations

import numpy as np

from simulator.dynamic_report import dynamic_summary, run_summary

from . import plots

__all__ = ["summary", "run_summary", "plot_active_fraction", "plot_lengths"]


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
