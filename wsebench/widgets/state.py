"""The workbench's pure model: one config dict, the controls that edit it, and the checks that
refuse an invalid combination before it reaches the compiler. No ipywidgets here, so all of it
is unit-testable without a browser or a kernel.

The config is exactly `wsebench.config`'s format (`wsebench run CONFIG` replays it). A control
edits one place in it, named by a dotted key ("model.hidden", "wafer.rows", "mapping.strategy");
keys no control shows (e.g. the optimizer's momentum, a wafer's sram_bytes override, a second
mapping pin) pass through untouched, so `WorkbenchState(c).config == c` for any complete `c`.

What the workbench offers (families, controls, lessons) lives in `controls.py`.
"""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json

from .. import ConfigError
from .. import config as _config
from ..config import PRESETS
from .. import data as _data
from .. import families as _families
from .. import precheck
from .controls import (CONTROL, CONTROLS, FAMILIES, LESSONS, MAPPING_CHOICES,  # noqa: F401
                       PANEL_NOTES, PANELS, RUN_ONLY_KEYS, STRATEGIES, Control, Family,
                       Lesson, _defaults, _pinned, check_hide, family_of, hideable, lesson,
                       lesson_config)
from .sparsity_controls import SparsityControls

# The simulator really trains the model on this machine: past these sizes a step takes minutes.
HOST_PARAM_LIMIT = 20_000_000
HOST_CORE_LIMIT = 2_000_000
DEFAULT_PIN = {"pattern": "fc*", "rows": 4, "cols": 4, "replicas": 1}

# --- the state --------------------------------------------------------------------------------

class WorkbenchState:
    """A complete config plus typed get/set by control key and the UI's validation."""

    def __init__(self, config: dict | None = None):
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"a workbench config must be a dict, got {type(config).__name__}")
        self._config = _config.with_defaults(config or {})
        self._extra = {c.key: c.default for c in CONTROLS if not c.in_config}
        self._pin = dict(DEFAULT_PIN)
        self._sparsity = SparsityControls(self._config)
        mapping = self._config.get("mapping")
        if isinstance(mapping, dict) and mapping:
            pattern, first = next(iter(mapping.items()))
            if isinstance(first, dict):
                self._pin.update({k: first[k] for k in ("rows", "cols", "replicas") if k in first},
                                 pattern=pattern)

    @property
    def config(self) -> dict:
        return copy.deepcopy(self._config)

    # typed access by control key
    def get(self, key: str):
        if key not in CONTROL:
            raise KeyError(f"no control {key!r}; controls: {', '.join(CONTROL)}")
        if not CONTROL[key].in_config:
            return self._extra[key]
        c = self._config
        if key.startswith("wafer."):
            return self._get_wafer(key.split(".", 1)[1])
        if key.startswith("mapping."):
            sub = key.split(".", 1)[1]
            if sub == "strategy":
                return "pinned" if _pinned(c) else (c.get("mapping") or "auto")
            return self._pin[sub]
        if key == "model.family":
            return c["model"].get("family", "mlp")
        if key.startswith("sparsity.") and key != "sparsity.harvest":
            return self._sparsity.get(key.split(".", 1)[1])
        if "." in key:
            section, name = key.split(".", 1)
            sec = c.get(section)
            if not isinstance(sec, dict):
                return None
            if name in sec:
                return sec[name]
            return self._section_default(section, name)
        return c.get(key)

    def set(self, key: str, value) -> None:
        if key not in CONTROL:
            raise KeyError(f"no control {key!r}; controls: {', '.join(CONTROL)}")
        if not CONTROL[key].ready:
            raise ConfigError(f"{key} is not available yet: {CONTROL[key].note}")
        if not CONTROL[key].in_config:
            self._extra[key] = value
            return
        if key.startswith("wafer."):
            return self._set_wafer(key.split(".", 1)[1], value)
        if key.startswith("mapping."):
            return self._set_mapping(key.split(".", 1)[1], value)
        if key == "optimizer.name":
            return self._set_optimizer(value)
        if key == "model.family":
            return self._set_family(value)
        if key == "data.name":
            return self._set_data_name(value)
        if key.startswith("sparsity.") and key != "sparsity.harvest":
            return self._sparsity.set(key.split(".", 1)[1], value)
        if "." in key:
            section, name = key.split(".", 1)
            if not isinstance(self._config.get(section), dict):
                self._config[section] = {}
            self._config[section][name] = value
            return
        self._config[key] = value

    def update(self, values: dict) -> None:
        for key, value in values.items():
            self.set(key, value)

    def _section_default(self, section: str, name: str):
        if section == "model":
            family = self._config["model"].get("family", "mlp")
            return _families.defaults(family).get(name) if family in _families.FAMILIES else None
        if section == "data":
            data = self._config["data"].get("name", "spirals")
            known = _data.defaults(data) if data in _data.DATASETS else {}
            return {"batch_size": 64, **known}.get(name)
        if section == "sparsity":
            from ..session import Sparsity
            return {f.name: f.default for f in dataclasses.fields(Sparsity)}.get(name)
        if section == "optimizer" and name == "lr":
            opt = _config.OPTIMIZERS.get(self._config["optimizer"].get("name"))
            return _defaults(opt).get("lr", 1e-3) if opt else None
        return None

    def _set_family(self, family) -> None:
        """A new family starts from its default model (`wsebench.config.default_config`),
        keeping the dropout and an activation it offers; data of the wrong kind (vectors for a
        token family, sequences for the MLP) becomes the family's default task; the sparsity
        globs that named the old family's modules by default follow to the new one's."""
        old = family_of(self._config)
        if family == old:
            return
        if family not in FAMILIES:                # refused by the checks, with the allowed ones
            self._config["model"] = {**self._config["model"], "family": family}
            return
        base = _config.default_config(family)
        model, previous = dict(base["model"]), self._config["model"]
        if "dropout" in previous:
            model["dropout"] = previous["dropout"]
        if previous.get("activation") in CONTROL["model.activation"].choices({"model": model}):
            model["activation"] = previous["activation"]
        self._config["model"] = model
        data = self._config["data"]
        tokens = family in _families.TOKEN_FAMILIES
        if tokens != _data.is_sequence(data.get("name", "spirals")):
            self._config["data"] = {**base["data"], "seed": data.get("seed", 0)}
        if old in FAMILIES:
            self._sparsity.retarget(FAMILIES[old].sparse_at, FAMILIES[family].sparse_at)

    def _set_data_name(self, name) -> None:
        """Keep the data keys the new data set takes (samples, seed, lengths, ...)."""
        data = {**self._config["data"], "name": name}
        if name in _data.DATASETS:
            allowed = set(_data.defaults(name)) | {"name", "batch_size"}
            data = {k: v for k, v in data.items() if k in allowed}
        self._config["data"] = data

    def _get_wafer(self, sub: str):
        w = self._config["wafer"]
        spec = {"preset": w} if isinstance(w, str) else dict(w) if isinstance(w, dict) else {}
        preset = spec.get("preset", "classroom")
        if sub == "preset":
            return preset
        if sub == "override":
            return "rows" in spec or "cols" in spec
        base = PRESETS.get(preset)
        return spec.get(sub, getattr(base, sub, None) if base else None)

    def _set_wafer(self, sub: str, value) -> None:
        w = self._config["wafer"]
        spec = {"preset": w} if isinstance(w, str) else dict(w) if isinstance(w, dict) else {}
        spec.setdefault("preset", "classroom")
        if sub == "preset":
            spec["preset"] = value
        elif sub == "override":
            if value:
                base = PRESETS.get(spec["preset"])
                spec.setdefault("rows", base.rows if base else 32)
                spec.setdefault("cols", base.cols if base else 32)
            else:
                spec.pop("rows", None)
                spec.pop("cols", None)
        else:
            spec[sub] = value
        self._config["wafer"] = spec["preset"] if set(spec) == {"preset"} else spec

    def _set_mapping(self, sub: str, value) -> None:
        if sub == "strategy":
            if value not in MAPPING_CHOICES:
                raise ConfigError(f"mapping strategy must be one of {', '.join(MAPPING_CHOICES)}, "
                                  f"got {value!r}")
            if value in STRATEGIES:
                self._config["mapping"] = value
                return
            if _pinned(self._config):
                return
        else:
            self._pin[sub] = value
            if not _pinned(self._config):
                return
        old = self._config["mapping"] if _pinned(self._config) else {}
        rest = dict(list(old.items())[1:]) if isinstance(old, dict) else {}
        pin = {k: self._pin[k] for k in ("rows", "cols", "replicas")}
        self._config["mapping"] = {self._pin["pattern"]: pin, **rest}

    def _set_optimizer(self, name) -> None:
        """Keep only the keyword arguments the new optimizer accepts (lr always survives)."""
        opt = dict(self._config["optimizer"])
        opt["name"] = name
        cls = _config.OPTIMIZERS.get(name)
        if cls is not None:
            allowed = set(_defaults(cls))
            opt = {k: v for k, v in opt.items() if k == "name" or k in allowed}
        self._config["optimizer"] = opt

    def visible(self, key: str) -> bool:
        """Whether the control applies to the current config (e.g. pin sizes only when pinned)."""
        when = CONTROL[key].when
        return when is None or bool(when(self._config))

    # validation -------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why this config cannot be compiled, in words; empty if the checks pass."""
        return check(self._config)

    def warnings(self) -> list[str]:
        c = self._config
        notes = []
        extra = len(c["mapping"]) - 1 if _pinned(c) and isinstance(c["mapping"], dict) else 0
        if extra > 0:
            notes.append(f"the config pins {extra} more kernel glob(s) than the controls show; "
                         "they are kept")
        notes += self._sparsity.warnings()
        names = _kernel_names(c) if _pinned(c) and isinstance(c["mapping"], dict) else None
        if names:
            for pattern in c["mapping"]:
                if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    notes.append(f"mapping pattern {pattern!r} matches none of the layers "
                                 f"({', '.join(names)}); the compiler refuses it unless it names "
                                 "another kernel")
        return notes


def _kernel_names(config: dict) -> "list[str] | None":
    """The compiler's kernel names for a config that validates, else None."""
    try:
        return [k.name for k in precheck.kernels(validate(config))]
    except (ConfigError, TypeError, ValueError, KeyError):
        return None


def _strategy(config: dict) -> "str | None":
    """The compiler strategy `config["mapping"]` names ("auto", "model", "data"), else None."""
    mapping = config.get("mapping", "auto") if isinstance(config, dict) else None
    return mapping if isinstance(mapping, str) and mapping in STRATEGIES else None


def buildable(config: dict) -> dict:
    """`config` (defaults filled in) as `wsebench.config.validate/build` take it: a strategy
    string in `mapping` is handed to the compiler separately (see `mapping_arg`), so the torch
    side is built with "auto" in its place; nothing else changes."""
    full = _config.with_defaults(config)
    if _strategy(full) is not None:
        full["mapping"] = "auto"
    return full


def validate(config: dict) -> dict:
    """`wsebench.config.validate`, also accepting the strategies "model" and "data" in
    `mapping` (the compiler's `mapping=` takes them); returns the completed config."""
    full = _config.with_defaults(config)
    mapping = full.get("mapping")
    if isinstance(mapping, str) and mapping not in STRATEGIES:
        raise ConfigError(f"mapping {mapping!r} is unknown; allowed: {', '.join(STRATEGIES)}, or "
                          f"a mapping of kernel-name glob -> {{rows, cols, replicas}}")
    checked = _config.validate(buildable(full))
    checked["mapping"] = copy.deepcopy(mapping) if _strategy(full) is not None else checked["mapping"]
    return checked


def mapping_arg(spec):
    """What `wb.compile(mapping=...)` gets for a config's `mapping`: a strategy string as it
    is, a dict of pins as wb.Mapping objects."""
    if isinstance(spec, str) and spec in STRATEGIES:
        return spec
    return _config.make_mapping(spec)


_CHECKED: dict[str, list[str]] = {}


def check(config: dict) -> list[str]:
    """Everything that makes `config` fail, checked without compiling: the config's own
    validation, host limits, and whether the compiler's kernels (captured on fake tensors,
    `wsebench.precheck`) fit the wafer, pins included. A config is checked once: the
    workbench asks again on every refresh."""
    try:
        key = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):
        return _check(config)
    if key not in _CHECKED:
        if len(_CHECKED) > 256:
            _CHECKED.clear()
        _CHECKED[key] = _check(config)
    return list(_CHECKED[key])


def _check(config: dict) -> list[str]:
    try:
        full = validate(config)
    except ConfigError as err:
        return [str(err)]
    except (TypeError, ValueError) as err:
        return [f"invalid config: {err}"]
    try:
        target = _config.make_wafer(full["wafer"])
    except ConfigError as err:
        return [str(err)]
    problems = []
    if target.cores > HOST_CORE_LIMIT:
        problems.append(f"a {target.rows} x {target.cols} wafer has {target.cores:,} cores; the "
                        f"simulator keeps per-core arrays and allows at most {HOST_CORE_LIMIT:,}")
    if family_of(full) not in FAMILIES:
        problems.append(f"model.family {full['model'].get('family')!r} is not offered by the "
                        f"workbench; allowed: {', '.join(FAMILIES)}")
        return problems
    params = precheck.parameter_count(full)
    if params > HOST_PARAM_LIMIT:
        problems.append(f"the model has {params:,} parameters; the simulator really trains it on "
                        f"this machine and allows at most {HOST_PARAM_LIMIT:,}: make it smaller")
        return problems
    pins = mapping_arg(full["mapping"])
    return problems + precheck.fit_problems(full, target, {} if isinstance(pins, str) else pins)


def resolved_wafer(config: dict):
    """The Target a config names (for views), or None if it is invalid."""
    try:
        return _config.make_wafer(_config.with_defaults(config)["wafer"])
    except ConfigError:
        return None


__all__ = ["WorkbenchState", "Control", "CONTROLS", "CONTROL", "PANELS", "PANEL_NOTES", "FAMILIES",
           "Family", "LESSONS", "Lesson", "lesson", "lesson_config", "check", "check_hide",
           "hideable", "RUN_ONLY_KEYS", "HOST_PARAM_LIMIT", "HOST_CORE_LIMIT", "resolved_wafer",
           "MAPPING_CHOICES", "STRATEGIES", "validate", "buildable", "mapping_arg"]
