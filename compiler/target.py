"""The wafer a plan is compiled for: every hardware constant lives here and nowhere else.

Sources for the presets:
- wse1: the ISPD 2020 wafer-placement contest fabric (633 x 633 tiles, 48 KB per tile);
  Cerebras Hot Chips 2019/2020 (400k cores, 18 GB SRAM, 9 PB/s memory, 100 Pb/s fabric).
  The 1.1 GHz clock is an assumption (Cerebras has not published it).
- wse2: fabric 757 x 996 as exposed by the Cerebras SDK (850k cores marketed, 40 GB).
- wse3: fabric 762 x 1172, 8-wide FP16 SIMD (900k cores marketed, 44 GB).
- classroom: a 32 x 32 fabric with WSE cores, small enough to see every core.

Link model (Hot Chips 2020): each link moves one 32-bit wavelet per cycle per direction between
four neighbours. A dense wavelet packs `link_bits // value_bits` values; a sparse wavelet carries
one 16-bit value plus a 16-bit index, so it carries one value.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    rows: int
    cols: int
    sram_bytes: int = 48 * 1024
    clock_hz: float = 1.1e9
    simd: int = 4
    link_bits: int = 32
    value_bits: int = 16
    weight_bytes: int = 4
    activation_bytes: int = 2
    hop_cycles: int = 1
    task_cycles: int = 1
    sram_read_bytes: int = 16
    sram_write_bytes: int = 8

    def __post_init__(self) -> None:
        for field in ("rows", "cols", "sram_bytes", "simd", "link_bits", "value_bits",
                      "weight_bytes", "activation_bytes", "sram_read_bytes", "sram_write_bytes"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"Target.{field} must be a positive integer, got {value!r}")
        for field in ("hop_cycles", "task_cycles"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"Target.{field} must be a non-negative integer, got {value!r}")
        if isinstance(self.clock_hz, bool) or not isinstance(self.clock_hz, (int, float)) \
                or not self.clock_hz > 0:
            raise ConfigError(f"Target.clock_hz must be positive, got {self.clock_hz!r}")
        if self.link_bits % self.value_bits:
            raise ConfigError("Target.link_bits must be a multiple of Target.value_bits")

    @property
    def cores(self) -> int:
        return self.rows * self.cols

    @property
    def precision(self) -> str:
        """The number format of the values on the fabric: `value_bits`-wide floats (FP16 by
        default; weights, gradients and accumulators stay `weight_bytes` wide)."""
        return f"fp{self.value_bits}"

    @property
    def dense_values_per_wavelet(self) -> int:
        return self.link_bits // self.value_bits

    @property
    def peak_flops(self) -> float:
        """FP16 FLOP/s of the whole wafer: 2 FLOPs per MAC, `simd` MACs per core per cycle."""
        return 2.0 * self.simd * self.cores * self.clock_hz

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """Print (and return) the table of this wafer's constants with the source of each."""
        rows = [(f.name, repr(getattr(self, f.name)), SOURCES[f.name]) for f in dataclasses.fields(self)
                if f.name != "name"]
        width = max(len(n) for n, _, _ in rows), max(len(v) for _, v, _ in rows)
        lines = [f"{self.name}: {self.rows} x {self.cols} = {self.cores:,} cores, "
                 f"{self.cores * self.sram_bytes / 2**30:.1f} GiB SRAM, "
                 f"{self.peak_flops / 1e15:.2f} PFLOP/s {self.precision} peak"]
        lines += [f"  {n:<{width[0]}}  {v:>{width[1]}}  {src}" for n, v, src in rows]
        text = "\n".join(lines)
        print(text)
        return text


ASSUMPTION = "assumption (not published)"
# Where each constant comes from. A preset's value differs from the default only where a
# source gives another one (wse3's SIMD width).
SOURCES: dict[str, str] = {
    "rows": "fabric rows: ISPD 2020 contest (wse1: 633), Cerebras SDK fabric dims (wse2: 757, wse3: 762)",
    "cols": "fabric cols: ISPD 2020 contest (wse1: 633), Cerebras SDK fabric dims (wse2: 996, wse3: 1172)",
    "sram_bytes": "48 KB SRAM per core: Hot Chips 2019 (18 GB / 400k cores), ISPD 2020 contest",
    "clock_hz": ASSUMPTION + ": 1.1 GHz",
    "simd": "FP16 FMACs per core per cycle: Hot Chips 2020 (4-wide), Cerebras WSE-3 brief (8-wide)",
    "link_bits": "32-bit wavelet per link per cycle each way: Hot Chips 2020, Cerebras SDK docs",
    "value_bits": "FP16 values on the fabric: Hot Chips 2019/2020 (FP16 with FP32 accumulate)",
    "weight_bytes": ASSUMPTION + ": weights held in FP32 (master copy)",
    "activation_bytes": "FP16 activations: Hot Chips 2019/2020",
    "hop_cycles": "one cycle per router hop: Hot Chips 2020 (single-cycle neighbour links)",
    "task_cycles": ASSUMPTION + ": cycles a wavelet-triggered task costs beyond its work, per "
                   "wavelet received (Cerebras SDK: data arriving on a colour activates a task)",
    "sram_read_bytes": "SRAM read bandwidth per core per cycle, 2 x 64 bit: Hot Chips 2019",
    "sram_write_bytes": "SRAM write bandwidth per core per cycle, 1 x 64 bit: Hot Chips 2019",
}


PRESETS: dict[str, Target] = {
    "wse1": Target("wse1", rows=633, cols=633),
    "wse2": Target("wse2", rows=757, cols=996),
    "wse3": Target("wse3", rows=762, cols=1172, simd=8),
    "classroom": Target("classroom", rows=32, cols=32),
}


PRECISIONS = {"fp16": 16, "fp32": 32}


def wafer(name: "str | Target" = "classroom", precision: str | None = None, **overrides) -> Target:
    """Look up a preset by name and apply keyword overrides, e.g. ``wafer("wse2", rows=100)``.

    `precision` is the number format on the fabric: "fp16" (the CS-1 default: FP16 values,
    FP32 accumulation and master weights) or "fp32". It sets the width of the values on the
    links and in SRAM, so wavelet packing, SRAM traffic (and so the SIMD rate) and activation
    memory follow it. Numerics stay those of the user's torch model: precision only changes
    cost and memory."""
    if isinstance(name, Target):
        base = name
    elif name not in PRESETS:
        raise ConfigError(f"unknown wafer preset {name!r}; allowed: {', '.join(PRESETS)}")
    else:
        base = PRESETS[name]
    if precision is not None:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
        bits = PRECISIONS[precision]
        overrides = {"value_bits": bits, "activation_bytes": bits // 8, **overrides}
    fields = {f.name for f in dataclasses.fields(Target)} - {"name"}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"unknown Target field(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    return dataclasses.replace(base, **overrides)


def sub_wafer(target: "str | Target", fraction: float) -> Target:
    """A part of `target` holding `fraction` of its cores (0.25: a quarter wafer), same aspect
    ratio and constants: rows and cols each scaled by sqrt(fraction), rounded, at least 1. For
    scaling studies (samples/s against area on one wafer's cores)."""
    base = wafer(target)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"sub_wafer fraction must be a number in (0, 1] (the share of the "
                          f"wafer's cores), got {fraction!r}")
    side = fraction ** 0.5
    return dataclasses.replace(base, name=f"{base.name}[{fraction:g}]",
                               rows=max(1, round(base.rows * side)),
                               cols=max(1, round(base.cols * side)))

