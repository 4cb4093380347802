"""Checks before compiling: what a config's model compiles to, found without data or memory.

The model is built, and one example batch made, as fake tensors (torch's `FakeTensorMode`:
shapes and dtypes, no storage), its training step is captured and grouped by the compiler's own
kernel library, and each kernel's kind says how much memory it needs on a mapping. So the
workbench's checks (does the model fit the wafer? can a pinned mapping hold its kernel?) use the
compiler's real kernel models, the same ones `compile` sizes kernels with, not a table of layers.
A capture costs about a second; the kernels are cached by the model's structure and the data's
shape, so changing the wafer, a pin, the data's seed or a constant such as the ponder cost's
weight re-checks at once.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from compiler import ConfigError, WaferFitError, in_flight
from compiler.frontend import capture
from compiler.kernels import Kernel, build_kernels, kind_of
from compiler.optim_spec import from_hyperparameters
from compiler.options import minimal_mapping
from compiler.passes import run_pipeline

from . import config as _config
from . import data as _data
from . import families as _families


def parameter_count(config: dict) -> int:
    """Parameters of the config's model, counted on fake tensors (nothing allocated)."""
    model, _ = _fake_model(_key(config))
    return sum(p.numel() for p in model.parameters())


def kernels(config: dict, exact: bool = False) -> tuple[Kernel, ...]:
    """The kernels, in pipeline order, that `compile` builds for a validated `config`'s model
    and batch (before sparsity, which changes what kernels compute, not which exist). Cached
    by structure (`STAND_INS`); `exact` captures the config as it is, uncached."""
    if exact:
        return _capture(json.dumps(_spec(config, stand_ins=False), sort_keys=True), cached=False)
    return _kernels(_key(config))


# Model keys the captured graph holds as constants, not as structure (the ponder cost's weight,
# the halting threshold): any value gives the same kernels, so the cache keys them on a stand-in
# and changing one re-checks at once. A dropout rate is one too, above 0 (at 0 no mask is drawn).
# tests/widgets/test_precheck.py captures both sides of each and finds the same kernels.
STAND_INS = {"tau": 0.01, "epsilon": 0.01}
DROPOUT_STAND_IN = 0.5


def _key(config: dict) -> str:
    return json.dumps(_spec(config, stand_ins=True), sort_keys=True)


def _spec(config: dict, stand_ins: bool) -> dict:
    """What the kernels depend on: the model (its structure, with `stand_ins`), the shape of
    the data (not its seed, size or the lengths drawn) and the batch size."""
    model, data = config["model"], config["data"]
    shape = _data.shape(data.get("name", "spirals"), **_config._data_kwargs(data, model))
    if stand_ins:                     # the seed too: the fake model draws no weights
        model = {**{k: v for k, v in model.items() if k != "seed"},
                 **{k: v for k, v in STAND_INS.items() if k in model}}
        if model.get("dropout"):
            model["dropout"] = DROPOUT_STAND_IN
    return {"model": model, "batch_size": data.get("batch_size", 64),
            "shape": {**dataclasses.asdict(shape), "name": None}}


def _fake_model_uncached(key: str):
    spec = json.loads(key)
    shape = _data.TaskShape(**spec["shape"])
    kwargs = {k: v for k, v in _families.model_kwargs(spec["model"], shape).items() if k != "seed"}
    mode = FakeTensorMode()
    with mode:
        model = _families.builder(spec["model"].get("family", "mlp"))(**kwargs)
    return model, (mode, shape)


_fake_model = functools.lru_cache(maxsize=32)(_fake_model_uncached)


@functools.lru_cache(maxsize=32)
def _kernels(key: str) -> tuple[Kernel, ...]:
    return _capture(key, cached=True)


def _capture(key: str, cached: bool) -> tuple[Kernel, ...]:
    model, (mode, shape) = (_fake_model if cached else _fake_model_uncached)(key)
    spec = json.loads(key)
    batch = spec["batch_size"]
    with mode:
        if shape.tokens:
            x = torch.zeros((batch, shape.max_len), dtype=torch.long)
            y = torch.zeros((batch,) if shape.kind == "classify" else (batch, shape.max_len),
                            dtype=torch.long)
        else:
            x, y = torch.zeros((batch, shape.features)), torch.zeros((batch,), dtype=torch.long)
    loss = _families.loss_for(spec["model"].get("family", "mlp"), model, shape)
    graph = run_pipeline(capture(model, loss, (x, y), method="aot"))
    return build_kernels(graph)[0]


def fit_problems(config: dict, target, pins: dict) -> list[str]:
    """Why the config's kernels cannot be placed on `target`, checked with their kinds' own
    memory models: a pin (kernel-name glob -> Mapping) outside a kernel's unrollable extents or
    over SRAM, a kernel that does not fit however far it is spread, or more cores needed by the
    smallest rectangles than the wafer has."""
    opt = config["optimizer"]
    optimizer = from_hyperparameters(opt["name"], {k: v for k, v in opt.items() if k != "name"})
    found = kernels(config)
    need, problems, too_big = 0, [], []
    for i, kernel in enumerate(found):
        flight = in_flight(i, len(found), kernel.samples)
        pin = next((m for glob, m in pins.items() if fnmatch.fnmatchcase(kernel.name, glob)), None)
        if pin is None:
            try:
                need += minimal_mapping(kernel, i, len(found), target, optimizer).cores
            except WaferFitError as err:
                too_big.append(str(err))
            continue
        problems += _pin_problems(kernel, pin, target, optimizer, flight)
        need += pin.cores
    if too_big:
        problems.append(too_big[0] + (f" ({len(too_big) - 1} more kernel(s) too)" if len(too_big) > 1 else ""))
    if not problems and need > target.cores:
        problems.append(f"the model needs at least {need:,} cores for its weights, gradients, "
                        f"optimizer state and activations, but the {target.name} wafer "
                        f"({target.rows} x {target.cols}) has {target.cores:,}: choose a larger "
                        f"wafer or a smaller model")
    return problems


def _pin_problems(kernel: Kernel, pin, target, optimizer, flight: int) -> list[str]:
    max_r, max_c = kernel.nest.extents
    if pin.rows > max_r or pin.cols > max_c:
        return [f"pinned {pin.rows} x {pin.cols} for kernel {kernel.name!r} exceeds its extents "
                f"{max_r} x {max_c} (the loop dimensions it unrolls over rows and columns)"]
    per_core = kind_of(kernel).memory_per_core(kernel, pin.replica, target, optimizer, flight)
    if per_core > target.sram_bytes:
        return [f"pinned {pin.rows} x {pin.cols} for kernel {kernel.name!r} needs {per_core:,} "
                f"bytes per core but a core has {target.sram_bytes:,}: pin more cores"]
    return []


__all__ = ["kernels", "parameter_count", "fit_problems", "ConfigError"]
