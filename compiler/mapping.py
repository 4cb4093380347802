"""Mapping helpers: resolve pinned mappings, the samples a pipeline stage holds, and the
smallest rectangle that fits SRAM (used to explain a model that does not fit). The search over
all options lives in `options.py` and `search.py`.
"""
from __future__ import annotations

import fnmatch
import math

from .cost import Mapping, memory_per_core
from .kernels import Kernel
from .optim_spec import OptimizerSpec
from .errors import ConfigError, WaferFitError
from .target import Target


def in_flight(index: int, stages: int, samples: int) -> int:
    """Samples held by stage `index` between their forward and backward passes: the pipeline
    behind it forward and back again, 2 (stages - index) - 1, but never more than the batch."""
    return max(1, min(samples, 2 * (stages - index) - 1))


def extents(kernel: Kernel) -> tuple[int, int]:
    """The largest rows and cols a kernel can unroll over."""
    n = kernel.nest
    return n.extent(n.row_dim), n.extent(n.col_dim)


def shape_for_area(kernel: Kernel, area: int, target: Target) -> Mapping:
    """The rows x cols closest to `area` cores with rows/cols following the kernel's extents."""
    max_r, max_c = extents(kernel)
    max_r, max_c = min(max_r, target.rows), min(max_c, target.cols)
    one_dim = kernel.nest.row_dim == kernel.nest.col_dim     # one dimension over rows and cols
    if one_dim:
        area = min(area, max_r)
    ratio = 1.0 if one_dim else max_r / max_c
    rows = min(max_r, max(1, round(math.sqrt(area * ratio))))
    cols = min(max_c, max(1, area // rows))
    rows = min(max_r, max(1, area // cols))
    return Mapping(rows, cols)


def minimal_mapping(kernel: Kernel, index: int, stages: int, target: Target,
                    optimizer: OptimizerSpec) -> Mapping:
    """Smallest rectangle that fits SRAM, by bisection on the area (memory falls as area grows)."""
    flight = in_flight(index, stages, kernel.samples)

    def fits(area):
        m = shape_for_area(kernel, area, target)
        return memory_per_core(kernel, m, target, optimizer, flight) <= target.sram_bytes

    largest = min(target.cores, math.prod(extents(kernel)))
    if not fits(largest):
        m = shape_for_area(kernel, largest, target)
        need = memory_per_core(kernel, m, target, optimizer, flight)
        raise WaferFitError(
            f"kernel {kernel.name!r} needs {need:,} bytes per core even when spread over "
            f"{m.rows} x {m.cols} cores of the {target.name} wafer, but a core has "
            f"{target.sram_bytes:,} bytes of SRAM; use a larger wafer preset, a smaller layer "
            f"or a smaller batch")
    low, high = 0, largest
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return shape_for_area(kernel, high, target)


def pinned_mappings(kernels: tuple[Kernel, ...], mapping: "str | dict") -> dict[str, Mapping]:
    """Resolve `{"glob": Mapping}` against kernel names; every glob must match something."""
    if mapping in (None, "auto"):
        return {}
    if isinstance(mapping, str):
        raise ConfigError(f"mapping must be 'auto' or a dict of kernel-name glob -> Mapping, "
                          f"got {mapping!r}")
    pinned = {}
    for pattern, m in mapping.items():
        if not isinstance(m, Mapping):
            raise ConfigError(f"mapping[{pattern!r}] must be a Mapping(rows, cols, replicas), got {m!r}")
        hits = [k for k in kernels if fnmatch.fnmatchcase(k.name, pattern)]
        if not hits:
            raise ConfigError(f"mapping pattern {pattern!r} matches no kernel; kernels are "
                              f"{[k.name for k in kernels]}")
        for k in hits:
            max_r, max_c = extents(k)
            if m.rows > max_r or m.cols > max_c:
                raise ConfigError(f"Mapping({m.rows}, {m.cols}) for kernel {k.name!r} exceeds its "
                                  f"unrollable extents {max_r} x {max_c}")
            pinned.setdefault(k.name, m)
    return pinned
