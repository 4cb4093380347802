"""The dynamic-execution part of a step's report (DESIGN.md, "Dynamic execution").

Dynamic depth (a Universal Transformer with ACT): per recurrent step, the share of the real
positions still running; the mean ponder steps per position; and the speedup over the same
model at fixed depth = max steps, timed from the same tensors. Variable sequence length: the
padded vs unpadded time and the share of the batch's positions that are padding. A model
without `running` markers reports none of these keys.
"""
from __future__ import annotations

from typing import Iterable

from .measure import StepTiming

DYNAMIC_KEYS = ("max_steps", "active_fraction_per_step", "mean_ponder_steps",
                "fixed_depth_step_cycles", "speedup_vs_fixed_depth")
PADDING_KEYS = ("padding_fraction", "padded_step_cycles", "speedup_vs_padded")


def _ratio(baseline, cycles) -> float:
    return float(baseline) / float(cycles) if cycles else 1.0


def dynamic_summary(timing: StepTiming) -> dict:
    """Summary keys of one step (`DYNAMIC_KEYS` with recurrent steps, `PADDING_KEYS` whenever
    the graph marks its real tokens); empty without markers."""
    stats = timing.dynamic
    if stats is None:
        return {}
    out = {"padding_fraction": stats.padding_fraction, "padded_step_cycles": timing.padded_cycles,
           "speedup_vs_padded": _ratio(timing.padded_cycles, timing.cycles)}
    if stats.max_steps:
        out.update({"max_steps": stats.max_steps,
                    "active_fraction_per_step": list(stats.active_fraction),
                    "mean_ponder_steps": stats.mean_ponder_steps,
                    "fixed_depth_step_cycles": timing.fixed_depth_cycles,
                    "speedup_vs_fixed_depth": _ratio(timing.fixed_depth_cycles, timing.cycles)})
    return out


def run_summary(results: Iterable) -> dict:
    """Over a run's StepResults: total cycles against each baseline's (the speedup of the
    whole run), and the mean ponder steps and padding share of its steps."""
    results = list(results)
    cycles = sum(r.cycles for r in results)
    out = {"steps": len(results), "cycles": cycles,
           "speedup_vs_fixed_depth": _ratio(sum(r.fixed_depth_cycles or r.cycles for r in results), cycles),
           "speedup_vs_padded": _ratio(sum(r.padded_cycles or r.cycles for r in results), cycles)}
    for key in ("mean_ponder_steps", "padding_fraction"):
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out
