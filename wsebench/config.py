"""Experiment configs: a plain dict (or a JSON/YAML file) that names a whole run.

    {"model": {"family": "mlp", "hidden": 64, ...}, "data": {"name": "spirals", ...},
     "optimizer": {"name": "sgd", "lr": 0.05}, "wafer": "classroom", "sparsity": {"harvest": true},
     "mapping": "auto", "backend": "auto", "steps": 200, "seed": 0}

`sparsity` takes the keys of `wb.Sparsity` (see wsebench.sparsity), e.g. in YAML

    sparsity:
      harvest: true                      # false: the dense baseline of the same run
      relu: ["act*"]                     # swap these dense non-linearities for ReLU
      drop:                              # drop small values (top-k fraction or threshold)
        - {targets: ["fc*"], fraction: 0.5, where: both, schedule: linear, steps: 100}
      weights: {algorithm: gmp, sparsity: 0.8}   # cstorch.sparse-style weight masks

or the path of a YAML file holding that section.

A top-level key left out takes its value from `default_config()`; inside a section, a key left
out takes the default of the function it is passed to (`wsebench.models.<family>`,
`wsebench.data.<name>`, `torch.optim.<Optimizer>`). `validate` checks everything that can be
checked without building the model and raises `ConfigError` naming the key and what is allowed.
"""
from __future__ import annotations

import copy
import inspect
import json
import time
from pathlib import Path

import torch

from compiler import ConfigError, Mapping
from compiler import wafer as _wafer

from . import data as _data
from . import models as _models

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
LOSSES = {"cross_entropy": torch.nn.CrossEntropyLoss}
BACKENDS = ("auto", "numpy", "cupy")
TOP_LEVEL = ("model", "data", "optimizer", "wafer", "sparsity", "mapping", "backend", "steps", "seed")
_DATA_LOADER_KEYS = ("name", "batch_size")   # the rest of "data" goes to the generator


def default_config() -> dict:
    """The demo: a ReLU MLP with dropout, trained on spirals on the classroom wafer."""
    return {
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


def load_config(path) -> dict:
    """Read a config from a .json, .yaml or .yml file; the error names the file and the problem."""
    path = Path(path)
    where = f"config file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{where}: unknown extension {path.suffix!r}; allowed: .json, .yaml, .yml")
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    loaded = _parse(path.read_text(), suffix, where)
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
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from None


def with_defaults(config: dict) -> dict:
    """`config` with every missing top-level key taken from `default_config()`."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a dict, got {type(config).__name__}")
    return {**default_config(), **copy.deepcopy(config)}


def validate(config: dict) -> dict:
    """Check `config` (missing top-level keys take defaults); return the completed config."""
    full = with_defaults(config)
    unknown = sorted(set(full) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; allowed: {', '.join(TOP_LEVEL)}")
    _check_model(_section(full, "model"))
    _check_data(_section(full, "data"), full["model"])
    _check_optimizer(_section(full, "optimizer"))
    make_wafer(full["wafer"])
    make_sparsity(full["sparsity"])
    make_mapping(full["mapping"])
    if full["backend"] not in BACKENDS:
        raise ConfigError(f"backend {full['backend']!r} is unknown; allowed: {', '.join(BACKENDS)}")
    _integer("steps", full["steps"], minimum=1)
    _integer("seed", full["seed"], minimum=0)
    return full


def _section(config: dict, key: str) -> dict:
    value = config[key]
    if not isinstance(value, dict):
        raise ConfigError(f"config {key!r} must be a mapping, got {value!r}")
    return value


def _integer(key: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"config {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _family(model: dict):
    """The model-zoo builder for `model.family`: any public function of wsebench.models."""
    families = sorted(n for n, f in vars(_models).items()
                      if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == _models.__name__)
    family = model.get("family", "mlp")
    if family not in families:
        raise ConfigError(f"model.family {family!r} is unknown; allowed: {', '.join(families)}")
    return getattr(_models, family)


def _check_kwargs(section: str, fn, kwargs: dict) -> None:
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"unknown {section} key(s) {unknown}; allowed: {', '.join(params)}")


def _model_kwargs(model: dict) -> dict:
    return {k: v for k, v in model.items() if k != "family"}


def _check_model(model: dict) -> None:
    build = _family(model)
    kwargs = _model_kwargs(model)
    _check_kwargs("model", build, kwargs)
    for key, value in kwargs.items():
        if key in ("in_features", "hidden", "out_features", "depth", "layers", "heads",
                   "vocab", "dim") and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
    dropout = kwargs.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout must be a number in [0, 1), got {dropout!r}")
    activation = kwargs.get("activation")
    allowed = getattr(_models, "ACTIVATIONS", None)
    if activation is not None and allowed is not None and activation not in allowed:
        raise ConfigError(f"model.activation {activation!r} is unknown; allowed: {', '.join(allowed)}")


def _data_kwargs(data: dict, model: dict) -> dict:
    """Generator arguments; features and classes follow the model's in/out sizes unless given."""
    kwargs = {k: v for k, v in data.items() if k not in _DATA_LOADER_KEYS}
    if "in_features" in model:
        kwargs.setdefault("features", model["in_features"])
    if "out_features" in model:
        kwargs.setdefault("classes", model["out_features"])
    return kwargs


def _check_data(data: dict, model: dict) -> None:
    name = data.get("name", "spirals")
    if name not in _data.DATASETS:
        raise ConfigError(f"data.name {name!r} is unknown; allowed: {', '.join(_data.DATASETS)}")
    kwargs = _data_kwargs(data, model)
    _check_kwargs("data", getattr(_data, name), kwargs)
    for key in ("samples", "features", "classes"):
        if key in kwargs:
            value = kwargs[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
    batch = data.get("batch_size", 64)
    samples = kwargs.get("samples", inspect.signature(getattr(_data, name)).parameters["samples"].default)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= samples:
        raise ConfigError(f"data.batch_size must be an integer in [1, samples={samples}], got {batch!r}")
    if "seed" in kwargs:
        _integer("data.seed", kwargs["seed"], minimum=0)
    if kwargs.get("features") != model.get("in_features", kwargs.get("features")):
        raise ConfigError(f"data.features={kwargs['features']} differs from "
                          f"model.in_features={model['in_features']}")


def _check_optimizer(opt: dict) -> None:
    name = opt.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name {name!r} is unknown; allowed: {', '.join(OPTIMIZERS)}")
    kwargs = {k: v for k, v in opt.items() if k != "name"}
    params = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"params"}
    unknown = sorted(set(kwargs) - params)
    if unknown:
        raise ConfigError(f"unknown optimizer key(s) {unknown} for {name}; allowed: "
                          f"{', '.join(sorted(params))}")
    lr = kwargs.get("lr", 1e-3)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr < 0:
        raise ConfigError(f"optimizer.lr must be a number >= 0, got {lr!r}")


def make_wafer(spec):
    """A Target from "preset" or {"preset": "classroom", field: value, ...}."""
    if isinstance(spec, str):
        return _wafer(spec)
    if isinstance(spec, dict):
        overrides = dict(spec)
        preset = overrides.pop("preset", "classroom")
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


def build(config: dict) -> dict:
    """The torch side of a run: model (seeded), loss, data, batches and optimizer."""
    config = validate(config)
    model_cfg, data_cfg = config["model"], config["data"]
    torch.manual_seed(config["seed"])
    model = _family(model_cfg)(**_model_kwargs(model_cfg))
    name = data_cfg.get("name", "spirals")
    x, y = _data.make(name, **_data_kwargs(data_cfg, model_cfg))
    batch = data_cfg.get("batch_size", 64)
    opt = {k: v for k, v in config["optimizer"].items() if k != "name"}
    return {"model": model, "loss_fn": make_loss(), "x": x, "y": y, "batch_size": batch,
            "example": (x[:batch], y[:batch]),
            "batches": _data.batches(x, y, batch, seed=data_cfg.get("seed", 0)),
            "optimizer": make_optimizer(model, config["optimizer"]["name"], **opt),
            "config": config}


def accuracy(model: torch.nn.Module, state_dict: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of `model`'s architecture with `state_dict` loaded, on (x, y), in eval mode."""
    trained = copy.deepcopy(model)
    trained.load_state_dict(state_dict)
    trained.eval()
    with torch.no_grad():
        return float((trained(x).argmax(dim=-1) == y).float().mean())


def run(config: dict, progress: bool = True) -> dict:
    """Compile and train the run `config` describes; return session, history, report, config,
    accuracy (on the training data, with the wafer-trained weights) and wall-clock seconds."""
    from .session import compile as _compile
    start = time.perf_counter()
    parts = build(config)
    config = parts["config"]
    session = _compile(parts["model"], parts["loss_fn"], example=parts["example"],
                       optimizer=parts["optimizer"], wafer=make_wafer(config["wafer"]),
                       sparsity=make_sparsity(config["sparsity"]),
                       mapping=make_mapping(config["mapping"]), backend=config["backend"],
                       seed=config["seed"])
    history = session.train(parts["batches"], steps=config["steps"], progress=progress)
    report = session.report()
    return {"session": session, "history": history, "report": report, "config": config,
            "accuracy": session.accuracy(parts["x"], parts["y"]),
            "final_loss": history[-1].loss, "wall_seconds": time.perf_counter() - start}
