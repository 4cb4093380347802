"""Experiment configs: a plain dict (or a JSON/YAML file) that names a whole run.

    {"model": {"family": "mlp", "hidden": 64, ...}, "data": {"name": "spirals", ...},
     "optimizer": {"name": "sgd", "lr": 0.05}, "wafer": "classroom", "sparsity": {"harvest": true},
     "mapping": "auto", "backend": "auto", "steps": 200, "seed": 0}

`model.family` is `mlp` (feature vectors: data `blobs`, `spirals`), `transformer` or
`universal_transformer` (token ids: the sequence tasks `parity`, `copy`, `reverse`, `longtail` of
`wsebench.tasks`); see wsebench.families. A token family takes vocab, max_len, classes and task
from the data; the Universal Transformer's dynamic depth is `model.act`, `model.max_steps` and
`model.tau`. `default_config(family)` gives a small working run of each family, e.g.

    model: {family: universal_transformer, d_model: 32, heads: 2, ffn: 64,
            act: true, max_steps: 6, tau: 0.01}
    data: {name: parity, samples: 1024, batch_size: 32, max_len: 12, seed: 0}

A sequence task's keys are those of its `wsebench.tasks` function (min_len, max_len, and for
longtail the length distribution: distribution, median, sigma, exponent); every batch is padded
to its max_len (a compiled plan has fixed shapes; the wafer never sends the pad tokens).

`sparsity` takes the keys of `wb.Sparsity` (see wsebench.sparsity), e.g. in YAML

    sparsity:
      harvest: true                      # false: the dense baseline of the same run
      relu: ["act*"]                     # swap these dense non-linearities for ReLU
      drop:                              # drop small values (top-k fraction or threshold)
        - {targets: ["fc*"], fraction: 0.5, where: both, schedule: linear, steps: 100}
      weights: {algorithm: gmp, sparsity: 0.8}   # cstorch.sparse-style weight masks

or the path of a YAML file holding that section.

Two optional top-level keys go to `wb.compile`: `on_nonfinite` (what a NaN/inf step does) and
`clip_grad_norm` (clip the gradients to this 2-norm before every update, as
torch.nn.utils.clip_grad_norm_ does; language-model recipes use 1.0).

A top-level key left out takes its value from `default_config()`; inside a section, a key left
out takes the default of the function it is passed to (`wsebench.models.<family>`,
`wsebench.data.<name>` / `wsebench.tasks.<name>`, `torch.optim.<Optimizer>`). `validate` checks
everything that can be checked without training (the model is built on torch's meta device, so
its own checks and the sparsity globs are checked too) and raises `ConfigError` naming the key
and what is allowed.
"""
from __future__ import annotations

import copy
import inspect
import json
import time
from pathlib import Path

import torch

from compiler import PRESETS, ConfigError, Mapping  # noqa: F401 (PRESETS: the wafer choices)
from compiler import wafer as _wafer
from compiler.search import STRATEGIES  # noqa: F401 (the mapping strategies a config may name)
from simulator.weight_sparsity import ALGORITHMS  # noqa: F401 (sparsity.weights.algorithm)

from simulator.training import NONFINITE_POLICIES

from . import contracts as _contracts
from . import data as _data
from . import limits as _limits
from .yaml_strict import load_yaml, read_text
from . import metrics as _metrics
from . import families as _families
from . import models as _models

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LOSSES = {"cross_entropy": torch.nn.CrossEntropyLoss,
          "token_cross_entropy": _models.TokenCrossEntropy}
BACKENDS = ("auto", "numpy", "cupy")
TOP_LEVEL = ("model", "data", "optimizer", "wafer", "sparsity", "mapping", "backend", "steps", "seed",
             "on_nonfinite", "clip_grad_norm")   # the last two are optional (compile's defaults)
MAX_SEED = 2**63 - 1              # seeds go to torch.manual_seed and NumPy as int64
FAMILIES = tuple(_families.FAMILIES)
_DATA_LOADER_KEYS = ("name", "batch_size")   # the rest of "data" goes to the generator

# Small runs of the token families: a few seconds to compile, milliseconds per step.
_FAMILY_RUNS = {
    "transformer": {
        "model": {"family": "transformer", "d_model": 32, "heads": 2, "layers": 2, "ffn": 64,
                  "activation": "gelu", "dropout": 0.0, "attention": "manual"},
        "data": {"name": "longtail", "samples": 1024, "batch_size": 32, "max_len": 32, "seed": 0},
        "optimizer": {"name": "adam", "lr": 0.003}, "steps": 100},
    _families.UT: {
        "model": {"family": _families.UT, "d_model": 32, "heads": 2, "ffn": 64,
                  "activation": "gelu", "dropout": 0.0, "attention": "manual",
                  "act": True, "max_steps": 6, "tau": 0.01},
        "data": {"name": "parity", "samples": 1024, "batch_size": 32, "max_len": 12, "seed": 0},
        "optimizer": {"name": "adam", "lr": 0.003}, "steps": 150},
}


def default_config(family: str = "mlp") -> dict:
    """The demo: a ReLU MLP with dropout, trained on spirals on the classroom wafer; or a small
    run of `family` ("transformer": long-tailed topic classification, "universal_transformer":
    parity with ACT, Graves 2016's first task)."""
    if family != "mlp" and family not in _FAMILY_RUNS:
        raise ConfigError(f"model.family {family!r} is unknown; allowed: {', '.join(FAMILIES)}")
    base = {
        "model": {"family": "mlp", "in_features": 16, "hidden": 64, "depth": 4, "out_features": 4,
                  "activation": "relu", "dropout": 0.1},
        "data": {"name": "spirals", "samples": 2048, "batch_size": 64, "seed": 0},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "wafer": "classroom",
        "sparsity": {"harvest": True},
        "mapping": "auto",
        "backend": "auto",
        "steps": 200,
        "seed": 0,
    }
    return {**base, **copy.deepcopy(_FAMILY_RUNS.get(family, {}))}


def load_config(path) -> dict:
    """Read a config from a .json, .yaml or .yml file; the error names the file and the problem."""
    path = Path(path)
    where = f"config file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{where}: unknown extension {path.suffix!r}; allowed: .json, .yaml, .yml")
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    loaded = _parse(read_text(path, where), suffix, where)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where} must hold a mapping with keys {', '.join(TOP_LEVEL)}; "
                          f"got {type(loaded).__name__}")
    return loaded


def _parse(text: str, suffix: str, where: str):
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where} is not valid JSON: {err}") from None
    return load_yaml(text, where)


def with_defaults(config: dict) -> dict:
    """`config` with every missing top-level key taken from `default_config()`."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a dict, got {type(config).__name__}")
    return {**default_config(), **copy.deepcopy(config)}


def validate(config: dict) -> dict:
    """Check `config` (missing top-level keys take defaults); return the completed config."""
    _limits.check_config_size(config)        # before anything copies it (YAML alias bombs)
    full = with_defaults(config)
    unknown = sorted(set(full) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; allowed: {', '.join(TOP_LEVEL)}")
    model = _section(full, "model")
    if not isinstance(model.get("family", "mlp"), str):
        raise ConfigError(f"model.family must be a name ({', '.join(FAMILIES)}), got "
                          f"{model['family']!r}")
    _families.builder(model.get("family", "mlp"))
    shape = _check_data(_section(full, "data"), model)
    _families.check(model, shape)
    _check_optimizer(_section(full, "optimizer"))
    target = make_wafer(full["wafer"])
    sparsity = make_sparsity(full["sparsity"])
    make_mapping(full["mapping"])
    if full["backend"] not in BACKENDS:
        raise ConfigError(f"backend {full['backend']!r} is unknown; allowed: {', '.join(BACKENDS)}")
    _integer("steps", full["steps"], minimum=1)
    _integer("seed", full["seed"], minimum=0)
    if full.get("on_nonfinite", "raise") not in NONFINITE_POLICIES:
        raise ConfigError(f"on_nonfinite {full['on_nonfinite']!r} is unknown; allowed: "
                          f"{', '.join(NONFINITE_POLICIES)}")
    _contracts.check_clip_grad_norm(full.get("clip_grad_norm"))
    _check_on_model(model, shape, sparsity, target)
    return full


def _section(config: dict, key: str) -> dict:
    value = config[key]
    if not isinstance(value, dict):
        raise ConfigError(f"config {key!r} must be a mapping, got {value!r}")
    return value


def _integer(key: str, value, minimum: int, maximum: int = MAX_SEED) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ConfigError(f"config {key} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return value


def _check_kwargs(section: str, fn, kwargs: dict) -> None:
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"unknown {section} key(s) {unknown}; allowed: {', '.join(params)}")


def _data_kwargs(data: dict, model: dict) -> dict:
    """Generator arguments; a vector data set's features and classes follow the model's
    in/out sizes unless given."""
    kwargs = {k: v for k, v in data.items() if k not in _DATA_LOADER_KEYS}
    if not _data.is_sequence(data.get("name", "spirals")):
        if "in_features" in model:
            kwargs.setdefault("features", model["in_features"])
        if "out_features" in model:
            kwargs.setdefault("classes", model["out_features"])
    return kwargs


def _check_data(data: dict, model: dict) -> "_data.TaskShape":
    name = data.get("name", "spirals")
    if name not in _data.DATASETS:
        raise ConfigError(f"data.name {name!r} is unknown; allowed: {', '.join(_data.DATASETS)}")
    kwargs = _data_kwargs(data, model)
    _check_kwargs(f"data ({name})" if _data.is_sequence(name) else "data",
                  _data.generator(name), kwargs)
    for key in ("samples", "features", "classes", "min_len", "max_len", "symbols"):
        if key in kwargs:
            value = kwargs[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
    batch = data.get("batch_size", 64)
    samples = kwargs.get("samples", _data.defaults(name)["samples"])
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= samples:
        raise ConfigError(f"data.batch_size must be an integer in [1, samples={samples}], got {batch!r}")
    if "seed" in kwargs:
        _integer("data.seed", kwargs["seed"], minimum=0)
    for key, model_key in (("features", "in_features"), ("classes", "out_features")):
        if not _data.is_sequence(name) and kwargs.get(key) != model.get(model_key, kwargs.get(key)):
            raise ConfigError(f"data.{key}={kwargs[key]} differs from model.{model_key}="
                              f"{model[model_key]}; set them equal")
    try:
        shape = _data.shape(name, **kwargs)
    except ConfigError as err:
        raise ConfigError(f"data ({name}): {err}") from None
    _limits.check_data(shape.tokens, samples, shape.features or 0, shape.max_len or 0)
    return shape


def _check_on_model(model: dict, shape, sparsity, target) -> None:
    """Build the model on the meta device: the builder's own checks, its size against host
    memory and the wafer's SRAM, and the sparsity's module and parameter globs against the real
    module names (a glob that matches nothing is refused here, before anything is compiled)."""
    from . import sparsity as _sparsity
    module = _families.meta_model(model, shape)
    _limits.check_model(sum(p.numel() for p in module.parameters()), target)
    if sparsity.relu or sparsity.drop:
        _sparsity.apply(module, sparsity)
    masks = _sparsity.weight_sparsity(sparsity.weights)
    if masks is not None and masks.param_filter:
        masks.select({n: tuple(p.shape) for n, p in module.named_parameters()})


def _check_optimizer(opt: dict) -> None:
    name = opt.get("name")
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name {name!r} is unknown; allowed: {', '.join(OPTIMIZERS)}")
    kwargs = {k: v for k, v in opt.items() if k != "name"}
    params = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"params"}
    unknown = sorted(set(kwargs) - params)
    if unknown:
        raise ConfigError(f"unknown optimizer key(s) {unknown} for {name}; allowed: "
                          f"{', '.join(sorted(params))}")
    _contracts.check_optimizer_settings(name, OPTIMIZERS[name], kwargs)


def make_wafer(spec):
    """A Target from "preset" or {"preset": "classroom", field: value, ...}."""
    if isinstance(spec, str):
        return _wafer(spec)
    if isinstance(spec, dict):
        overrides = dict(spec)
        preset = overrides.pop("preset", "classroom")
        if not isinstance(preset, str):
            raise ConfigError(f"wafer.preset must be a preset name ({', '.join(PRESETS)}), "
                              f"got {preset!r}")
        return _wafer(preset, **overrides)
    raise ConfigError(f"wafer must be a preset name or a mapping with 'preset' and overrides, "
                      f"got {spec!r}")


def make_sparsity(spec):
    """A wb.Sparsity from the config's `sparsity:` section (see wsebench.sparsity for the keys:
    harvest, relu, drop, weights)."""
    from .sparsity import Sparsity
    return Sparsity.parse(spec)


def make_mapping(spec):
    """A strategy ("auto" | "model" | "data"), or {glob: {"rows": r, "cols": c, "replicas": n}}
    turned into wb.Mapping pins."""
    if spec is None:
        return "auto"
    if spec in ("auto", "model", "data"):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"mapping must be 'auto', 'model', 'data' or a mapping of kernel-name "
                          f"glob -> {{rows, cols, replicas}}, got {spec!r}")
    pins = {}
    for pattern, m in spec.items():
        if isinstance(m, Mapping):
            pins[pattern] = m
            continue
        if not isinstance(m, dict) or set(m) - {"rows", "cols", "replicas"} or not {"rows", "cols"} <= set(m):
            raise ConfigError(f"mapping[{pattern!r}] must have rows, cols and optionally "
                              f"replicas, got {m!r}")
        pins[pattern] = Mapping(m["rows"], m["cols"], m.get("replicas", 1))
    return pins


def make_optimizer(model: torch.nn.Module, name: str = "sgd", **kwargs) -> torch.optim.Optimizer:
    """A torch.optim SGD/Adam/AdamW over `model`'s parameters, e.g. make_optimizer(m, "sgd", lr=0.1)."""
    _check_optimizer({"name": name, **kwargs})
    return OPTIMIZERS[name](model.parameters(), **kwargs)


def make_loss(name: str = "cross_entropy") -> torch.nn.Module:
    if name not in LOSSES:
        raise ConfigError(f"loss {name!r} is unknown; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]()


def model_kwargs(config: dict) -> dict:
    """The model builder's keyword arguments for a validated `config` (a token family's vocab,
    max_len, classes and task filled in from the data)."""
    model, data = config["model"], config["data"]
    shape = _data.shape(data.get("name", "spirals"), **_data_kwargs(data, model))
    return _families.model_kwargs(model, shape)


def build(config: dict) -> dict:
    """The torch side of a run: model (seeded), loss, data, batches and optimizer."""
    config = validate(config)
    model_cfg, data_cfg = config["model"], config["data"]
    name = data_cfg.get("name", "spirals")
    kwargs = _data_kwargs(data_cfg, model_cfg)
    shape = _data.shape(name, **kwargs)
    batch, seed = data_cfg.get("batch_size", 64), data_cfg.get("seed", 0)
    torch.manual_seed(config["seed"])
    family = model_cfg.get("family", "mlp")
    model = _families.builder(family)(**_families.model_kwargs(model_cfg, shape))
    if shape.tokens:
        x, y, batches = _data.sequence_data(name, batch, **kwargs)
    else:
        x, y = _data.make(name, **kwargs)
        batches = _data.batches(x, y, batch, seed=seed)
    opt = {k: v for k, v in config["optimizer"].items() if k != "name"}
    return {"model": model, "loss_fn": _families.loss_for(family, model, shape), "x": x, "y": y,
            "batch_size": batch, "example": (x[:batch], y[:batch]), "batches": batches,
            "shape": shape, "optimizer": make_optimizer(model, config["optimizer"]["name"], **opt),
            "config": config}


def compile_built(parts: dict):
    """`wb.compile` of what `build` made, with the config's wafer, sparsity, mapping (pins or a
    strategy), backend and seed."""
    from .session import compile as _compile
    config = parts["config"]
    return _compile(parts["model"], parts["loss_fn"], example=parts["example"],
                    optimizer=parts["optimizer"], wafer=make_wafer(config["wafer"]),
                    sparsity=make_sparsity(config["sparsity"]),
                    mapping=make_mapping(config["mapping"]), backend=config["backend"],
                    seed=config["seed"], on_nonfinite=config.get("on_nonfinite", "raise"),
                    clip_grad_norm=config.get("clip_grad_norm"))


def session_accuracy(session, history, x: torch.Tensor, y: torch.Tensor) -> float:
    """`accuracy` of the model `session` trains (its ReLUs and drop rules in place) with the
    wafer-trained weights and the drop fractions of the last step of `history`."""
    step = history[-1].step - 1 if len(history) else 0
    return accuracy(session.model, session.state_dict(), x, y, session.sparsity, step)


accuracy = _metrics.accuracy


def run(config: dict, progress: bool = True) -> dict:
    """Compile and train the run `config` describes; return session, history, report, config,
    accuracy (on the training data, with the wafer-trained weights; per real token for a tag
    task) and wall-clock seconds."""
    start = time.perf_counter()
    parts = build(config)
    config = parts["config"]
    session = compile_built(parts)
    history = session.train(parts["batches"], steps=config["steps"], progress=progress)
    report = session.report()
    return {"session": session, "history": history, "report": report, "config": config,
            "accuracy": session_accuracy(session, history, parts["x"], parts["y"]),
            "final_loss": history[-1].loss, "wall_seconds": time.perf_counter() - start}
