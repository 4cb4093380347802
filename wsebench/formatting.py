"""One number format for everything a person reads: the HTML report, the workbench's status
line, captions and plot titles.

    fmt(1753088.0)          -> "1,753,088"      thousands separators, no exponent
    fmt(5.9352627, "%")     -> "5.9%"           a percentage, one decimal
    fmt(0.059, "share")     -> "5.9%"           a fraction shown as a percentage
    fmt(1.2534, "x")        -> "1.253x"         a ratio (speedup, estimate / measured)

NumPy scalars format like Python's (`np.float32` is not a `float`, which is how
`Compute Utilization % 5.9352627` and `1.753088e+06` reached the report before).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

UNITS = (None, "%", "share", "x")


def fmt(value, unit: str | None = None) -> str:
    """`value` as people read it. Plain numbers: integers with thousands separators, floats
    from 1,000 up without decimals, from 1 up with two, below 1 with four (three significant
    digits in an exponent below 0.001). `unit`: "%" (already a percentage), "share" (a fraction,
    times 100), "x" (a ratio); None for a plain number. Anything else is `str(value)`."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral) and unit is None:
        return f"{int(value):,}"
    if not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "unbounded" if value > 0 else "-unbounded"
    if unit == "share":
        return f"{100 * value:,.1f}%"
    if unit == "%":
        return f"{value:,.1f}%"
    if unit == "x":
        return f"{value:,.3f}x"
    return _plain(value)


def _plain(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) >= 0.001 else f"{value:.3g}"


__all__ = ["fmt", "UNITS"]
