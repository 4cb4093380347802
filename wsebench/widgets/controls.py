"""What the workbench offers: model families, controls (by panel), and lessons (presets).

Extending the workbench when a capability lands (the mapping search, induced sparsity,
transformers and ACT): add a `Family` to `FAMILIES`, a `Control` to `CONTROLS` (with `when=` if it
only applies to some configs, e.g. heads only for transformers), or set `ready=True` and a
config `key` on the depth panel's controls. `WorkbenchState` and the widgets pick them up.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from compiler import ConfigError, PRESETS
from compiler.search import STRATEGIES

from .. import config as _config
from .. import data as _data
from .. import models as _models

# --- model families ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """A model family the workbench offers: `layers(model_cfg)` lists its parameter-holding
    kernels as (name, in_features, out_features) for the pre-compile checks (None: unknown)."""
    name: str
    label: str
    layers: Callable[[dict], "list[tuple[str, int, int]] | None"]


def _mlp_layers(model: dict) -> list[tuple[str, int, int]]:
    sig = _defaults(_models.mlp)
    m = {**sig, **model}
    widths = [m["in_features"]] + [m["hidden"]] * (m["depth"] - 1) + [m["out_features"]]
    return [(f"fc{i + 1}", widths[i], widths[i + 1]) for i in range(m["depth"])]


# Transformers and the Universal Transformer join here when their model-zoo builders land.
FAMILIES: dict[str, Family] = {"mlp": Family("mlp", "MLP", _mlp_layers)}


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


# --- controls ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """One setting in the UI. `kind` is int | float | choice | bool | text. `key` is where it
    lives in the config (None: not in the config yet, e.g. a panel that awaits its capability).
    `ready=False` shows it disabled with `note`; `when(config)` hides it where it does not apply."""
    key: str
    label: str
    kind: str
    panel: str
    options: "tuple | Callable[[], tuple]" = ()
    help: str = ""
    ready: bool = True
    note: str = ""
    in_config: bool = True
    when: "Callable[[dict], bool] | None" = None
    default: Any = None

    def choices(self) -> tuple:
        return tuple(self.options() if callable(self.options) else self.options)


PANELS = {
    "model": "Model",
    "sparsity": "Sparsity",
    "depth": "Depth",
    "wafer": "Wafer",
    "data": "Data",
    "training": "Training",
}

PANEL_NOTES = {
    "sparsity": "ReLU insertion, dropping small values and weight sparsity arrive with induced "
                "sparsity.",
    "depth": "Dynamic depth (ACT) arrives with the Universal Transformer.",
}


# The mapping control: the compiler's strategies, or "pinned" (a dict of glob -> rows x cols).
MAPPING_CHOICES: tuple[str, ...] = tuple(STRATEGIES) + ("pinned",)


def _pinned(config: dict) -> bool:
    return isinstance(config.get("mapping"), dict)


def _overridden(config: dict) -> bool:
    w = config.get("wafer")
    return isinstance(w, dict) and ("rows" in w or "cols" in w)


CONTROLS: tuple[Control, ...] = (
    Control("model.family", "family", "choice", "model", lambda: tuple(FAMILIES),
            "the model-zoo builder"),
    Control("model.depth", "depth (layers)", "int", "model", help="Linear layers, fc1..fcN"),
    Control("model.hidden", "width", "int", "model", help="hidden features per layer"),
    Control("model.activation", "activation", "choice", "model",
            lambda: tuple(_models.ACTIVATIONS)),
    Control("model.dropout", "dropout", "float", "model", help="in [0, 1)"),
    Control("sparsity.harvest", "harvest zeros", "bool", "sparsity",
            help="skip the zeros ReLU and dropout produce; off = the dense baseline"),
    Control("depth.act", "ACT (adaptive depth)", "bool", "depth", ready=False, in_config=False,
            default=False, note="arrives with the Universal Transformer"),
    Control("depth.max_steps", "max steps", "int", "depth", ready=False, in_config=False,
            default=8, note="arrives with the Universal Transformer"),
    Control("depth.tau", "ponder cost τ", "float", "depth", ready=False, in_config=False,
            default=0.01, note="arrives with the Universal Transformer"),
    Control("wafer.preset", "preset", "choice", "wafer", lambda: tuple(PRESETS)),
    Control("wafer.override", "override area", "bool", "wafer",
            help="use your own rows x cols instead of the preset's fabric"),
    Control("wafer.rows", "rows", "int", "wafer", when=_overridden),
    Control("wafer.cols", "cols", "int", "wafer", when=_overridden),
    Control("mapping.strategy", "mapping", "choice", "wafer", MAPPING_CHOICES,
            help="auto: the compiler sizes and replicates every kernel; model: one copy of "
                 "each kernel (model parallel, pipelined); data: the whole network "
                 "replicated r times (data parallel); pinned: you size the kernels a glob "
                 "matches"),
    Control("mapping.pattern", "kernels (glob)", "text", "wafer", when=_pinned),
    Control("mapping.rows", "pin rows", "int", "wafer", when=_pinned),
    Control("mapping.cols", "pin cols", "int", "wafer", when=_pinned),
    Control("mapping.replicas", "pin replicas", "int", "wafer", when=_pinned),
    Control("data.name", "task", "choice", "data", lambda: tuple(_data.DATASETS)),
    Control("data.samples", "samples", "int", "data"),
    Control("data.batch_size", "batch size", "int", "data"),
    Control("data.seed", "data seed", "int", "data"),
    Control("optimizer.name", "optimizer", "choice", "training",
            lambda: tuple(_config.OPTIMIZERS)),
    Control("optimizer.lr", "learning rate", "float", "training"),
    Control("steps", "steps", "int", "training", help="steps one Train runs"),
    Control("seed", "seed", "int", "training", help="weights' init and dropout masks"),
)

CONTROL = {c.key: c for c in CONTROLS}
# Changing these does not change what is compiled, so a compiled session stays valid.
RUN_ONLY_KEYS = ("steps",)


def hideable() -> tuple[str, ...]:
    """Names `hide=` accepts: a panel, or a control's key."""
    return tuple(PANELS) + tuple(CONTROL)


def check_hide(hide) -> tuple[str, ...]:
    hide = tuple(hide or ())
    unknown = [h for h in hide if h not in PANELS and h not in CONTROL]
    if unknown:
        raise ConfigError(f"hide: unknown control(s) {unknown}; allowed: panels "
                          f"{', '.join(PANELS)} or keys {', '.join(CONTROL)}")
    return hide


# --- lessons: presets that set a config and hide controls ---------------------------------------

@dataclass(frozen=True)
class Lesson:
    title: str
    note: str
    config: dict = field(default_factory=dict)     # top-level sections merged into the default
    hide: tuple[str, ...] = ()


_LESSON_MODEL = {"family": "mlp", "in_features": 16, "hidden": 64, "depth": 4, "out_features": 4,
                 "activation": "relu", "dropout": 0.0}

LESSONS: dict[str, Lesson] = {
    "lesson-harvest": Lesson(
        "Sparsity harvesting",
        "Train with <b>harvest zeros</b> on, then off, and compare the cycles per step in the "
        "report: the wafer skips the zeros that ReLU produces. Try another activation too.",
        {"model": _LESSON_MODEL, "steps": 40},
        hide=("model.family", "model.depth", "model.hidden", "model.dropout", "depth", "wafer",
              "data", "training")),
    "lesson-kernels": Lesson(
        "Kernel sizes",
        "Pin the kernels a glob matches to rows x cols cores and see how each kernel's cycles "
        "change with its area in the report's kernel table.",
        {"model": _LESSON_MODEL, "steps": 20,
         "mapping": {"fc2": {"rows": 4, "cols": 4, "replicas": 1}}},
        hide=("model", "sparsity", "depth", "data", "training", "wafer.preset", "wafer.override")),
    "lesson-wafer": Lesson(
        "Wafer presets and area",
        "Pick a wafer preset, or override its area, and watch the placement map: does the "
        "model still fit?",
        {"model": _LESSON_MODEL, "steps": 20},
        hide=("model", "sparsity", "depth", "data", "training", "mapping.strategy")),
    "lesson-parallelism": Lesson(
        "Model vs data parallelism",
        "Choose the <b>mapping</b> strategy (model, data or auto) and the <b>batch size</b>, "
        "compile, and compare the estimated and measured samples/s: data parallelism pays "
        "only when the batch and the free area can feed the replicas.",
        {"model": _LESSON_MODEL, "steps": 10},
        hide=("model", "sparsity", "depth", "training", "wafer.preset", "wafer.override",
              "data.name", "data.samples", "data.seed")),
}


def lesson(name: str) -> Lesson:
    if name not in LESSONS:
        raise ConfigError(f"unknown workbench preset {name!r}; allowed: {', '.join(LESSONS)}")
    return LESSONS[name]


def lesson_config(name: str) -> dict:
    return {**_config.default_config(), **copy.deepcopy(lesson(name).config)}
