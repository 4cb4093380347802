"""Mappings: how a kernel is laid on the fabric, the user's pins, and the samples a pipeline stage
holds. The search over all mappings lives in `options.py` and `search.py`.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Mapping:
    """How a kernel is laid on the fabric: `rows x cols` cores per replica, `replicas` copies."""
    rows: int
    cols: int
    replicas: int = 1

    def __post_init__(self):
        for field in ("rows", "cols", "replicas"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Mapping.{field} must be a positive integer, got {value!r}")
            object.__setattr__(self, field, int(value))

    @property
    def cores(self) -> int:
        return self.rows * self.cols * self.replicas

    @property
    def width(self) -> int:
        """Replicas sit side by side, so the region is rows x (cols * replicas)."""
        return self.cols * self.replicas

    @cached_property
    def replica(self) -> "Mapping":
        """One replica's rectangle: what per-core cost and memory depend on."""
        return self if self.replicas == 1 else Mapping(self.rows, self.cols)


def in_flight(index: int, stages: int, samples: int) -> int:
    """Samples held by stage `index` between their forward and backward passes: the pipeline
    behind it forward and back again, 2 (stages - index) - 1, but never more than the batch."""
    return max(1, min(samples, 2 * (stages - index) - 1))


def pinned_mappings(kernels, mapping: "str | dict") -> dict[str, Mapping]:
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
            max_r, max_c = k.nest.extents
            if m.rows > max_r or m.cols > max_c:
                raise ConfigError(f"Mapping({m.rows}, {m.cols}) for kernel {k.name!r} exceeds its "
                                  f"unrollable extents {max_r} x {max_c}")
            pinned.setdefault(k.name, m)
    return pinned
