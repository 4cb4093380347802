"""The compiler's errors, in one place: each names what is wrong and what to do about it."""
from __future__ import annotations


class ConfigError(ValueError):
    """A user-supplied configuration value is invalid; the message names it and what is allowed."""


class WaferFitError(ValueError):
    """The model does not fit the wafer; the message gives what it needs and what there is."""


class PlacementError(ValueError):
    """The rectangles do not fit on the fabric."""
