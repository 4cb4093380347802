"""Schedules for induced sparsity: the value in force at each training step.

`constant` is the final value from step 0. `linear` and `cosine` ramp from `initial` to `final`
over `steps` steps beginning at `start` and hold `final` afterwards; cosine follows
(1 - cos(pi u)) / 2 for u in [0, 1], the half-cosine of Loshchilov & Hutter (2017, SGDR) turned
into a ramp. Computed in float64 on the host; the Session and `wsebench.sparsity.set_step` store
the same float64, so the wafer and eager torch see one value.
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")


def schedule_value(kind: str, initial: float, final: float, step: int, start: int = 0,
                   steps: int = 0) -> float:
    if kind == "constant" or steps <= 0:
        return float(final)
    u = min(max((step - start) / steps, 0.0), 1.0)
    shape = u if kind == "linear" else 0.5 * (1.0 - math.cos(math.pi * u))
    return float(initial + (final - initial) * shape)
