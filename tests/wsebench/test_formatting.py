"""wsebench.formatting: one number format for the report, the workbench and the plots."""
from __future__ import annotations

import numpy as np
import pytest

from wsebench.formatting import fmt


def test_plain_numbers_have_thousands_separators_and_no_exponent():
    assert fmt(1753088.0) == "1,753,088"
    assert fmt(np.float32(1753088.0)) == "1,753,088"       # was "1.753088e+06"
    assert fmt(np.int64(1234567)) == fmt(1234567) == "1,234,567"
    assert fmt(12.345) == "12.35" and fmt(0.5) == "0.5000" and fmt(0.0) == "0.00"


def test_percentages_have_one_decimal():
    assert fmt(np.float32(5.9352627), "%") == "5.9%"       # was "5.9352627"
    assert fmt(0.059352627, "share") == "5.9%"
    assert fmt(12, "%") == "12.0%" and fmt(1, "share") == "100.0%"


def test_ratios_and_special_values():
    assert fmt(np.float32(1.2534), "x") == "1.253x"
    assert fmt(True) == "yes" and fmt(np.bool_(False)) == "no"
    assert fmt(float("inf")) == "unbounded" and fmt(float("nan")) == "n/a"
    assert fmt("fc1") == "fc1" and fmt(None) == "None"


def test_unknown_unit_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="'share'.*'x'"):
        fmt(1.0, "percent")
