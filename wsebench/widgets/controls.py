"""What the workbench offers: model families, controls (by panel), and lessons (presets).

Extending the workbench when a capability lands: add a `Family` to `FAMILIES`, a `Control` to
`CONTROLS` (with `when=` if it only applies to some configs, e.g. heads only for transformers),
or a `Lesson`. A control's `key` is where it lives in the config ("model.heads"); the sparsity
controls edit the first drop rule and the weight masks through keys of their own
("sparsity.drop.fraction", see `WorkbenchState`). `WorkbenchState` and the widgets pick them up.
A control that awaits its capability can be shown disabled with `ready=False` and a `note`.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import ConfigError
from .. import config as _config
from ..config import ALGORITHMS, PRESETS, STRATEGIES
from .. import data as _data
from .. import families as _families
from .. import models as _models
from ..drop_op import GRADIENTS, WHERE
from ..sparsity_schedule import SCHEDULES
from .family_choices import FAMILIES, Family  # noqa: F401


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


# --- controls ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """One setting in the UI. `kind` is int | float | choice | bool | text. `key` is where it
    lives in the config. `options` (choices) is a tuple or a function of the config (e.g. the
    activations the family offers). `ready=False` shows it disabled with `note`;
    `when(config)` hides it where it does not apply."""
    key: str
    label: str
    kind: str
    panel: str
    options: "tuple | Callable[[dict | None], tuple]" = ()
    help: str = ""
    ready: bool = True
    note: str = ""
    in_config: bool = True
    when: "Callable[[dict], bool] | None" = None
    default: Any = None

    def choices(self, config: dict | None = None) -> tuple:
        return tuple(self.options(config) if callable(self.options) else self.options)


PANELS = {
    "model": "Model",
    "sparsity": "Sparsity",
    "depth": "Depth",
    "wafer": "Wafer",
    "data": "Data",
    "training": "Training",
}

# A panel's note on what has not landed yet (every capability the panels offer has landed).
PANEL_NOTES: dict[str, str] = {}


# The mapping control: the compiler's strategies, or "pinned" (a dict of glob -> rows x cols).
MAPPING_CHOICES: tuple[str, ...] = tuple(STRATEGIES) + ("pinned",)
NO_WEIGHT_SPARSITY = "none"


def _pinned(config: dict) -> bool:
    return isinstance(config.get("mapping"), dict)


def _overridden(config: dict) -> bool:
    w = config.get("wafer")
    return isinstance(w, dict) and ("rows" in w or "cols" in w)


def family_of(config: dict) -> str:
    model = config.get("model")
    return model.get("family", "mlp") if isinstance(model, dict) else "mlp"


def _family_is(*names: str) -> Callable[[dict], bool]:
    return lambda config: family_of(config) in names


def _task(config: dict) -> str:
    data = config.get("data")
    return data.get("name", "spirals") if isinstance(data, dict) else "spirals"


def _sequence(config: dict) -> bool:
    return _data.is_sequence(_task(config))


def _longtail_with(distribution: str) -> Callable[[dict], bool]:
    def when(config: dict) -> bool:
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        return _task(config) == "longtail" and data.get("distribution", "lognormal") == distribution
    return when


def sparsity_section(config: dict) -> dict:
    """The config's `sparsity:` section as a dict (a YAML string or file path is read; one
    that cannot be read gives {}: the checks report it)."""
    value = config.get("sparsity")
    if isinstance(value, dict) or value is None:
        return value or {}
    from ..sparsity import Sparsity
    try:
        return Sparsity.parse(value).to_dict()
    except (ConfigError, OSError):
        return {}


def first_drop(config: dict) -> "dict | None":
    """The drop rule the sparsity controls edit: the first of `sparsity.drop`."""
    drop = sparsity_section(config).get("drop")
    if isinstance(drop, dict):
        return drop
    if isinstance(drop, (list, tuple)) and drop and isinstance(drop[0], dict):
        return drop[0]
    return None


def _relu_on(config: dict) -> bool:
    return bool(sparsity_section(config).get("relu"))


def _drop_on(config: dict) -> bool:
    return first_drop(config) is not None


def _ramped(config: dict) -> bool:
    rule = first_drop(config)
    return rule is not None and rule.get("schedule", "constant") != "constant"


def _weights_on(config: dict) -> bool:
    return bool(sparsity_section(config).get("weights"))


def _activations(config: "dict | None" = None) -> tuple:
    if config is not None and family_of(config) in _families.TOKEN_FAMILIES:
        return tuple(_models.TRANSFORMER_ACTIVATIONS)
    return tuple(_models.ACTIVATIONS)


_MLP, _TOKENS = _family_is("mlp"), _family_is(*_families.TOKEN_FAMILIES)
_UT = _family_is(_families.UT)

CONTROLS: tuple[Control, ...] = (
    Control("model.family", "family", "choice", "model", lambda config=None: tuple(FAMILIES),
            "mlp: feature vectors (blobs, spirals); transformer and universal_transformer: "
            "token sequences (parity, copy, reverse, longtail)"),
    Control("model.depth", "depth (layers)", "int", "model", help="Linear layers, fc1..fcN",
            when=_MLP),
    Control("model.hidden", "width", "int", "model", help="hidden features per layer", when=_MLP),
    Control("model.layers", "layers", "int", "model", help="encoder blocks, layers.0..N-1",
            when=_family_is("transformer")),
    Control("model.d_model", "width (d_model)", "int", "model", help="features per token",
            when=_TOKENS),
    Control("model.heads", "heads", "int", "model", help="attention heads; must divide d_model",
            when=_TOKENS),
    Control("model.ffn", "FFN width", "int", "model", help="the feed-forward's hidden features",
            when=_TOKENS),
    Control("model.attention", "attention", "choice", "model", tuple(_models.ATTENTION_KINDS),
            "manual: q, k, v, o Linear layers and a hand-mapped attention kernel; torch: "
            "nn.MultiheadAttention (q, k, v in one in_proj)", when=_TOKENS),
    Control("model.activation", "activation", "choice", "model", _activations),
    Control("model.dropout", "dropout", "float", "model", help="in [0, 1)"),
    Control("sparsity.harvest", "harvest zeros", "bool", "sparsity",
            help="skip the zeros ReLU, dropout and the induced sparsity produce; off = the "
                 "dense baseline"),
    Control("sparsity.relu.on", "insert ReLU", "bool", "sparsity",
            help="swap the dense non-linearities the glob matches for ReLU"),
    Control("sparsity.relu.at", "ReLU at (globs)", "text", "sparsity", when=_relu_on,
            help="module-name globs, comma-separated, e.g. act* or layers.*.ffn.act"),
    Control("sparsity.drop.fraction", "drop fraction", "float", "sparsity",
            help="zero the smallest-magnitude fraction of each sample's activations, in [0, 1); "
                 "0 = off"),
    Control("sparsity.drop.at", "drop at (globs)", "text", "sparsity", when=_drop_on,
            help="the modules whose outputs are sparsified, comma-separated globs"),
    Control("sparsity.drop.schedule", "drop schedule", "choice", "sparsity", tuple(SCHEDULES),
            "constant, or a linear/cosine ramp from 0 to the fraction", when=_drop_on),
    Control("sparsity.drop.steps", "ramp steps", "int", "sparsity", when=_ramped,
            help="steps of the ramp from 0 to the drop fraction"),
    Control("sparsity.drop.where", "drop where", "choice", "sparsity", tuple(WHERE),
            "forward: the activation; backward: the gradient flowing into it; both",
            when=_drop_on),
    Control("sparsity.drop.gradient", "drop gradient", "choice", "sparsity", tuple(GRADIENTS),
            "masked: the gradient of the function computed; straight-through: dropped units "
            "keep learning", when=_drop_on),
    Control("sparsity.weights.algorithm", "weight sparsity", "choice", "sparsity",
            (NO_WEIGHT_SPARSITY,) + tuple(ALGORITHMS),
            "masks on the weights, as cstorch.sparse: static, gmp (gradual magnitude pruning), "
            "set or rigl (masks that evolve)"),
    Control("sparsity.weights.sparsity", "weight sparsity level", "float", "sparsity",
            when=_weights_on, help="the fraction of each selected weight held at zero, in [0, 1)"),
    Control("model.act", "ACT (adaptive depth)", "bool", "depth", when=_UT,
            help="per-position halting (Graves 2016); off: every position runs max steps"),
    Control("model.max_steps", "max steps", "int", "depth", when=_UT,
            help="the most times the shared block runs"),
    Control("model.tau", "ponder cost τ", "float", "depth", when=_UT,
            help="weight of the ponder cost tau * mean(N + R) in the loss"),
    Control("wafer.preset", "preset", "choice", "wafer", lambda config=None: tuple(PRESETS)),
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
    Control("data.name", "task", "choice", "data", lambda config=None: tuple(_data.DATASETS),
            "blobs, spirals: feature vectors; parity, copy, reverse, longtail: token sequences "
            "of varying length"),
    Control("data.samples", "samples", "int", "data"),
    Control("data.batch_size", "batch size", "int", "data"),
    Control("data.min_len", "min length", "int", "data", when=_sequence),
    Control("data.max_len", "max length", "int", "data", when=_sequence,
            help="every batch is padded to it; the wafer skips the pad tokens"),
    Control("data.distribution", "length distribution", "choice", "data",
            tuple(_data.LENGTH_DISTRIBUTIONS), when=lambda c: _task(c) == "longtail",
            help="lognormal or Zipf: most samples short, a few long"),
    Control("data.median", "median length", "float", "data", when=_longtail_with("lognormal")),
    Control("data.sigma", "σ (log spread)", "float", "data", when=_longtail_with("lognormal")),
    Control("data.exponent", "Zipf exponent", "float", "data", when=_longtail_with("zipf")),
    Control("data.seed", "data seed", "int", "data"),
    Control("optimizer.name", "optimizer", "choice", "training",
            lambda config=None: tuple(_config.OPTIMIZERS)),
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

# Wide hidden layers, so that the layers the induced zeros feed set the pace of the step.
SPARSITY_LESSON_MODEL = {**_LESSON_MODEL, "hidden": 256, "activation": "gelu"}


def _panel_except(panel: str, *keep: str) -> tuple[str, ...]:
    """The keys of `panel`'s controls other than `keep` (what a lesson hides in that panel)."""
    return tuple(c.key for c in CONTROLS if c.panel == panel and c.key not in keep)


_ACT_RUN = _config.default_config(_families.UT)

LESSONS: dict[str, Lesson] = {
    "lesson-harvest": Lesson(
        "Sparsity harvesting",
        "Train with <b>harvest zeros</b> on, then off, and compare the cycles per step in the "
        "report: the wafer skips the zeros that ReLU produces. Try another activation too.",
        {"model": _LESSON_MODEL, "steps": 40},
        hide=("model.family", "model.depth", "model.hidden", "model.dropout", "depth", "wafer",
              "data", "training") + _panel_except("sparsity", "sparsity.harvest")),
    "lesson-sparsity": Lesson(
        "Inducing sparsity",
        "This MLP uses GELU, which makes almost no exact zeros. Turn on <b>insert ReLU</b>, "
        "then set a <b>drop fraction</b> (e.g. 0.75: the smallest three quarters of each "
        "activation are zeroed), train each, and compare the samples/s and the loss: how much "
        "speed does the induced sparsity buy, and what does it cost the model?",
        {"model": SPARSITY_LESSON_MODEL, "steps": 40},
        hide=("model", "depth", "wafer", "data", "training")
        + _panel_except("sparsity", "sparsity.relu.on", "sparsity.drop.fraction")),
    "lesson-act": Lesson(
        "Dynamic depth (ACT)",
        "A Universal Transformer learns parity: one shared block runs up to <b>max steps</b> "
        "times, and with <b>ACT</b> each position halts when it is done. Train with ACT on, "
        "then off (every position runs max steps), and compare the mean ponder steps and the "
        "speedup over fixed depth in the status line: a halted position sends nothing. "
        "Then raise the ponder cost <b>τ</b>.",
        {"model": _ACT_RUN["model"], "data": _ACT_RUN["data"], "optimizer": _ACT_RUN["optimizer"],
         "steps": 60},
        hide=("model", "sparsity", "wafer", "data", "optimizer.name", "optimizer.lr", "seed")),
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
