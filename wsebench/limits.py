"""Memory before allocation: refuse a config whose data set or model cannot exist here, from
config arithmetic and the meta-device model, before any large array is made.

The figures are lower bounds of what the run would hold (so nothing that fits is refused):
- a data set: its samples' arrays as generated (vectors: float64 features while drawing them;
  token tasks: each sample's token and label arrays, plus the padded copy a config trains on);
- a model on the host: its float32 parameters, gradients and one optimizer slot;
- a model on the wafer: its weights at 2 bytes each (FP16, the smallest precision) against
  the wafer's total SRAM (rows x cols x SRAM per core).
"""
from __future__ import annotations

import os

from compiler import ConfigError, WaferFitError

_NUMPY_ARRAY_OVERHEAD = 112     # bytes of a NumPy array object without its data (CPython 3.11)
_SAMPLE_OVERHEAD = 56           # bytes of a tasks.Sample (a frozen dataclass of two arrays)
_HOST_COPIES = 3                # parameters, gradients, one optimizer slot (float32 each)
_MIN_WEIGHT_BYTES = 2           # FP16 on the fabric
MAX_CONFIG_VALUES = 100_000     # values a config (or a grid) may hold once its YAML aliases expand


def check_config_size(config, what: str = "the config") -> None:
    """Refuse a config that holds more than MAX_CONFIG_VALUES values once expanded. YAML aliases
    share one object many times over (an alias bomb is a few lines on disk and gigabytes once
    copied), so the walk counts every use and stops at the limit: it never costs more."""
    count, stack = 0, [config]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{what} holds more than {MAX_CONFIG_VALUES:,} values once its YAML "
                              f"aliases (&anchor / *alias) are expanded; a config this large is "
                              f"a mistake or an alias bomb: write the values out")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def available_bytes() -> int:
    """Memory this process can still take: MemAvailable on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1


def data_bytes(sequence: bool, samples: int, features: int = 0, max_len: int = 0) -> int:
    """A lower bound of the bytes the data set takes while it is generated."""
    if not sequence:
        return samples * (features * 8 + 8)           # float64 features, int64 labels
    per_sample = 2 * (_NUMPY_ARRAY_OVERHEAD + 8) + _SAMPLE_OVERHEAD + 2 * max_len * 8
    return samples * per_sample


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB"


def check_data(sequence: bool, samples: int, features: int = 0, max_len: int = 0) -> None:
    needed, free = data_bytes(sequence, samples, features, max_len), available_bytes()
    if needed > free:
        raise ConfigError(f"data.samples={samples:,} needs at least {_gib(needed)} of host "
                          f"memory, and {_gib(free)} is available; lower data.samples")


def check_model(parameters: int, target) -> None:
    """`parameters`: the meta-device model's parameter count."""
    host, free = parameters * 4 * _HOST_COPIES, available_bytes()
    if host > free:
        raise ConfigError(f"the model has {parameters:,} parameters: training them needs at "
                          f"least {_gib(host)} of host memory, and {_gib(free)} is available; "
                          f"make the model smaller (model.hidden, model.depth, ...)")
    wafer, sram = parameters * _MIN_WEIGHT_BYTES, target.rows * target.cols * target.sram_bytes
    if wafer > sram:
        raise WaferFitError(f"the model has {parameters:,} parameters: their weights alone need "
                            f"at least {wafer:,} bytes, and the {target.name} wafer has {sram:,} "
                            f"bytes of SRAM in all ({target.rows} x {target.cols} cores x "
                            f"{target.sram_bytes:,} bytes); make the model smaller or pick a "
                            f"larger wafer")
