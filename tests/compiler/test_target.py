"""compiler.target: presets carry DESIGN.md's numbers, overrides work, bad values are refused."""
from __future__ import annotations

import dataclasses

import pytest

from compiler.errors import ConfigError
from compiler.target import PRESETS, Target, sub_wafer, wafer

# DESIGN.md, "Target hardware": (rows, cols, simd) per preset; SRAM is 48 KB everywhere.
DESIGN_PRESETS = {
    "wse1": (633, 633, 4),
    "wse2": (757, 996, 4),
    "wse3": (762, 1172, 8),
    "classroom": (32, 32, 4),
}


@pytest.mark.parametrize("name", sorted(DESIGN_PRESETS))
def test_preset_matches_design(name):
    rows, cols, simd = DESIGN_PRESETS[name]
    t = wafer(name)
    assert (t.name, t.rows, t.cols, t.simd) == (name, rows, cols, simd)
    assert t.sram_bytes == 48 * 1024
    assert t.clock_hz == pytest.approx(1.1e9)
    assert t.cores == rows * cols


def test_presets_are_exactly_the_documented_ones():
    assert set(PRESETS) == set(DESIGN_PRESETS)


def test_link_model_constants():
    """A 32-bit wavelet carries two 16-bit dense values (DESIGN.md, link model)."""
    t = wafer("classroom")
    assert t.link_bits == 32 and t.value_bits == 16
    assert t.dense_values_per_wavelet == t.link_bits // t.value_bits == 2


def test_peak_flops_scales_with_simd_cores_and_clock():
    base = wafer("classroom")
    assert wafer("classroom", simd=2 * base.simd).peak_flops == pytest.approx(2 * base.peak_flops)
    assert wafer("classroom", rows=2 * base.rows).peak_flops == pytest.approx(2 * base.peak_flops)
    assert wafer("classroom", clock_hz=base.clock_hz / 2).peak_flops == pytest.approx(base.peak_flops / 2)
    # 2 FLOPs per MAC, simd MACs per core per cycle
    assert base.peak_flops == pytest.approx(2 * base.simd * base.cores * base.clock_hz)


def test_override_keeps_other_fields():
    t = wafer("wse2", rows=10)
    assert (t.name, t.rows, t.cols) == ("wse2", 10, 996)
    assert t.sram_bytes == PRESETS["wse2"].sram_bytes
    assert PRESETS["wse2"].rows == 757, "an override must not mutate the preset"


def test_override_several_fields_and_from_target():
    t = wafer("wse3", sram_bytes=96 * 1024, clock_hz=2e9)
    assert (t.sram_bytes, t.clock_hz, t.simd) == (96 * 1024, 2e9, 8)
    again = wafer(t, cols=5)
    assert (again.rows, again.cols, again.sram_bytes) == (762, 5, 96 * 1024)


def test_default_is_classroom():
    assert wafer() == PRESETS["classroom"]


def test_target_is_frozen():
    t = wafer("classroom")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rows = 3  # type: ignore[misc]


def test_to_dict_round_trips():
    t = wafer("wse3", rows=7)
    assert Target(**t.to_dict()) == t


def test_unknown_preset_names_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        wafer("wse9")
    msg = str(err.value)
    assert "wse9" in msg
    for name in PRESETS:
        assert name in msg


def test_unknown_field_names_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        wafer("wse2", rowz=10)
    msg = str(err.value)
    assert "rowz" in msg
    for field in ("rows", "cols", "sram_bytes", "simd", "clock_hz"):
        assert field in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("field,value", [
    ("rows", -1), ("rows", 0), ("cols", -5), ("simd", 0), ("sram_bytes", 0),
    ("rows", True), ("simd", False), ("cols", 2.0), ("rows", "32"), ("weight_bytes", -4),
])
def test_bad_positive_int_is_refused(field, value):
    with pytest.raises(ConfigError) as err:
        wafer("classroom", **{field: value})
    msg = str(err.value)
    assert field in msg
    assert repr(value) in msg
    assert "positive integer" in msg


@pytest.mark.parametrize("field", ["hop_cycles", "task_cycles"])
def test_negative_latency_is_refused(field):
    with pytest.raises(ConfigError) as err:
        wafer("classroom", **{field: -1})
    assert field in str(err.value) and "-1" in str(err.value) and "non-negative" in str(err.value)


@pytest.mark.parametrize("field", ["hop_cycles", "task_cycles"])
def test_zero_latency_is_allowed(field):
    assert getattr(wafer("classroom", **{field: 0}), field) == 0


@pytest.mark.parametrize("field", ["hop_cycles", "task_cycles"])
def test_bool_latency_is_refused(field):
    with pytest.raises(ConfigError):
        wafer("classroom", **{field: True})


@pytest.mark.parametrize("value", [0, -1.0, 0.0, float("nan")])
def test_bad_clock_is_refused(value):
    with pytest.raises(ConfigError, match="clock_hz"):
        wafer("classroom", clock_hz=value)



def test_non_numeric_clock_is_a_config_error():
    with pytest.raises(ConfigError, match="clock_hz"):
        wafer("classroom", clock_hz="fast")



def test_bool_clock_is_refused():
    with pytest.raises(ConfigError, match="clock_hz"):
        wafer("classroom", clock_hz=True)


def test_value_bits_must_divide_link_bits():
    with pytest.raises(ConfigError, match="link_bits"):
        wafer("classroom", value_bits=12)
    assert wafer("classroom", value_bits=8).dense_values_per_wavelet == 4


def test_every_constant_has_a_source_and_describe_lists_them(capsys):
    from compiler.target import SOURCES
    fields = {f.name for f in dataclasses.fields(Target)} - {"name"}
    assert set(SOURCES) == fields and all(SOURCES.values())
    text = wafer("wse2").describe()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "757 x 996" in text
    for name in fields:
        line = next(ln for ln in text.splitlines() if ln.split()[:1] == [name])
        assert SOURCES[name] in line and repr(getattr(wafer("wse2"), name)) in line


def test_precision_sets_the_width_of_values_on_the_fabric():
    """fp32 halves the values a wavelet packs, doubles SRAM cycles per SIMD op and activation
    bytes; fp16 is the default; anything else is refused by name."""
    from compiler.cost import sram_factor
    half, full = wafer("wse2"), wafer("wse2", precision="fp32")
    assert half == wafer("wse2", precision="fp16") and half.precision == "fp16"
    assert full.precision == "fp32" and full.activation_bytes == 4
    assert full.dense_values_per_wavelet == 1 and half.dense_values_per_wavelet == 2
    assert sram_factor(full) == 2 * sram_factor(half)
    with pytest.raises(ConfigError, match="bf16"):
        wafer("wse2", precision="bf16")


def test_sub_wafer_holds_the_share_of_cores_asked_for_with_the_same_constants():
    full = wafer("wse2")
    quarter = sub_wafer("wse2", 0.25)
    assert (quarter.rows, quarter.cols) == (round(757 / 2), 996 // 2)
    assert quarter.cores / full.cores == pytest.approx(0.25, rel=1e-2)
    assert dataclasses.replace(quarter, name=full.name, rows=full.rows, cols=full.cols) == full
    assert sub_wafer(full, 1.0).cores == full.cores
    assert sub_wafer("classroom", 1e-6).cores == 1


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, "half", True])
def test_sub_wafer_refuses_a_share_outside_0_1(fraction):
    with pytest.raises(ConfigError, match="fraction"):
        sub_wafer("wse2", fraction)
