"""The one place that chooses the array module ``xp``: NumPy or CuPy.

Everything else in ``simulator/`` receives ``xp`` as an argument and never imports CuPy itself
(DESIGN.md, "Layout": only the backend module imports cupy). The few CuPy-only helpers that
have no common NumPy/CuPy spelling (``erf``, unbuffered scatter-add) live here for that reason.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from compiler.errors import ConfigError

BACKEND_NAMES = ("auto", "numpy", "cupy")

_INSTALL_HINT = "use backend='numpy', or install CuPy with `pip install cupy-cuda12x`"

# The NumPy fallback is normal on a laptop, so it is said quietly: one INFO line on this logger
# (shown where an application turns logging on; `wsebench.widgets` shows it in the workbench),
# never a UserWarning, which a notebook prints in red as though something were wrong.
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """An array module and why it was chosen.

    ``name`` is "numpy" or "cupy"; ``xp`` is the module itself; ``reason`` says why "auto"
    picked it (or that it was asked for by name).
    """

    name: str
    xp: ModuleType
    reason: str


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> tuple[ModuleType | None, str]:
    """Import CuPy and run one trivial kernel; return (module or None, reason).

    Cached: importing CuPy and creating a CUDA context costs seconds, and a machine does not
    gain or lose a GPU while a process runs.
    """
    try:
        import cupy  # noqa: PLC0415 - the only cupy import in the project
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        kind = "not installed" if isinstance(exc, ImportError) else f"failed to import: {exc}"
        return None, f"cupy {kind}"
    try:
        # Importing succeeds without a driver; only running a kernel proves the device works.
        probe = cupy.arange(4, dtype=cupy.float32) * 2
        if float(probe.sum().get()) != 12.0:
            return None, "no usable CUDA device: probe kernel returned a wrong result"
    except Exception as exc:
        return None, f"no CUDA device: {exc}"
    return cupy, "cupy imported and a probe kernel ran on the CUDA device"


def cuda_available() -> bool:
    """True when CuPy imports and can run a kernel on a CUDA device (for the ``gpu`` test marker)."""
    return _probe_cupy()[0] is not None


@functools.lru_cache(maxsize=1)
def _auto_backend() -> Backend:
    """Resolve "auto" once per process, so the fallback is logged only once."""
    cupy, reason = _probe_cupy()
    if cupy is not None:
        return Backend("cupy", cupy, reason)
    log.info("wsebench simulator: falling back to NumPy (%s)", reason)
    return Backend("numpy", np, reason)


def get_backend(name: str = "auto") -> Backend:
    """Return the ``Backend`` for ``name``: "auto", "numpy" or "cupy".

    "auto" prefers CuPy when it imports and a kernel runs, else NumPy, saying why once: an
    INFO record on the ``simulator.backend`` logger, and ``Backend.reason``.
    "cupy" raises ``RuntimeError`` when CuPy or CUDA is unusable, rather than silently
    running somewhere the user did not ask for.
    """
    if name not in BACKEND_NAMES:
        raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(map(repr, BACKEND_NAMES))}")
    if name == "numpy":
        return Backend("numpy", np, "requested backend='numpy'")
    if name == "auto":
        return _auto_backend()
    cupy, reason = _probe_cupy()
    if cupy is None:
        raise RuntimeError(f"backend='cupy' is unusable: {reason}; {_INSTALL_HINT}")
    return Backend("cupy", cupy, "requested backend='cupy'")


def is_cupy(xp: ModuleType) -> bool:
    """True when ``xp`` is the CuPy module (checked by name so NumPy-only runs never import it)."""
    return getattr(xp, "__name__", "") == "cupy"


def to_numpy(array: Any) -> np.ndarray:
    """The single exit from ``xp`` to NumPy: CuPy arrays are copied to the host with ``.get()``."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get") and type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)


def nonzeros(xp: ModuleType, array: Any) -> int:
    """How many elements of ``array`` are not zero, as a host int. Compared with 0 first:
    NumPy's ``count_nonzero`` of a float array is about 3x slower than its count of the bool
    array ``array != 0``, which counts the same elements (-0.0 is zero, NaN is not)."""
    return int(to_numpy(xp.count_nonzero(array != 0)))


def erf(xp: ModuleType, x: Any, out: Any = None) -> Any:
    """Vectorized erf on ``xp``: ``scipy.special.erf`` or ``cupyx.scipy.special.erf``.

    DESIGN.md: an element-wise ``math.erf`` made the transformer 7x slower; both SciPy and
    CuPy have float32 ufunc loops, so the result keeps the input's float32 dtype. ``out``: an
    array of ``x``'s shape and dtype to write into (``x`` itself for in place), as a ufunc's.
    """
    if is_cupy(xp):
        from cupyx.scipy import special  # noqa: PLC0415
    else:
        from scipy import special  # noqa: PLC0415
    return special.erf(x) if out is None else special.erf(x, out=out)


def add_at(xp: ModuleType, target: Any, index: Any, values: Any) -> None:
    """Unbuffered ``target[index] += values`` (repeated indices accumulate), in place.

    NumPy spells it ``np.add.at``; CuPy spells it ``cupyx.scatter_add``.
    """
    if is_cupy(xp):
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
