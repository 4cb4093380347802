"""wsebench's user-facing errors: the classes, and the one tuple that says which errors are the
user's to fix (the CLI turns each into one line and exit status 2; anything else is a bug).

Every class here is raised with a message that names the value, key or path at fault and what
to do about it.
"""
from __future__ import annotations

from compiler import ConfigError


class UserError(Exception):
    """Marks an error the user caused and can fix (CheckpointError, StoreEntryError, SweepError,
    UnsupportedOpError, NonFiniteError, ...): the CLI prints it as one line, exit status 2."""


class InputError(ConfigError):
    """A batch (or the example batch) that breaks the plan's input contract: shape, dtype,
    empty batch, label out of range."""


class NonFiniteError(UserError, ArithmeticError):
    """A training step produced NaN or inf; names the step and the first non-finite tensor."""


class NonFiniteWarning(RuntimeWarning):
    """A non-finite step under on_nonfinite="warn" (applied) or "skip" (not applied)."""


class OutputPathError(ConfigError):
    """An output path (--out, --csv, --store, --checkpoint) that cannot be written."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Every error a user can cause and fix: the compiler's (config, fit, placement, capture,
    ISPD input) and wsebench's own (`UserError`)."""
    from compiler import PlacementError, WaferFitError
    from compiler.frontend import CaptureError
    from compiler.ispd.reader import KGraphError
    from compiler.ispd.validator import InvalidSolution
    return (ConfigError, WaferFitError, PlacementError, KGraphError, InvalidSolution,
            CaptureError, UserError)
