"""Small synthetic data sets made in code (nothing is downloaded).

Two kinds, which a config's `data.name` picks from (`DATASETS`):
- vectors: `blobs` and `spirals`, float features [N, features] -> a class (the MLP's data);
- token sequences: the tasks of `wsebench.tasks` (`parity`, `copy`, `reverse`, `longtail`),
  variable-length token ids -> a class per sample ("classify") or per token ("tag"), for the
  transformer families. A compiled plan has fixed shapes, so a config's sequences are padded
  to the task's `max_len` (`pad_to="max"`); the wafer never sends the pad tokens.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from compiler.errors import ConfigError

from . import limits as _limits
from . import tasks as _tasks

VECTOR_DATASETS = ("blobs", "spirals")
SEQUENCE_TASKS = _tasks.TASKS
LENGTH_DISTRIBUTIONS = _tasks.LENGTH_DISTRIBUTIONS
DATASETS = VECTOR_DATASETS + SEQUENCE_TASKS


def blobs(samples: int = 1024, features: int = 16, classes: int = 4, seed: int = 0,
          spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters, one per class, with centres drawn on a sphere of radius 3."""
    _limits.check_data(False, samples, features)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features))
    centres *= 3.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(0, classes, samples)
    x = centres[y] + spread * rng.normal(size=(samples, features))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def spirals(samples: int = 1024, features: int = 16, classes: int = 4, seed: int = 0,
            noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Interleaved 2-D spiral arms (one per class) embedded in `features` dims by a fixed
    random rotation, so the first layer has to undo the embedding."""
    _limits.check_data(False, samples, features)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, samples)
    radius = rng.uniform(0.1, 1.0, samples)
    angle = 4.0 * radius + 2 * math.pi * y / classes + noise * rng.normal(size=samples)
    plane = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    basis, _ = np.linalg.qr(rng.normal(size=(features, max(2, features))))
    x = plane @ basis[:, :2].T * 3.0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def make(name: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector data set `name` as (x, y); a sequence task is made by `sequence_data`."""
    if name not in VECTOR_DATASETS:
        also = " (a token-sequence task: use wsebench.data.sequence_data)" \
            if is_sequence(name) else ""
        raise ConfigError(f"unknown vector data set {name!r}{also}; allowed: "
                          f"{', '.join(VECTOR_DATASETS)}")
    return generator(name)(**kwargs)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0,
            epochs: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled full batches (the last partial batch is dropped: the plan has a fixed shape)."""
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size > len(x):
        raise ConfigError(f"batch_size must be an integer in [1, {len(x)}], got {batch_size!r}")
    gen = torch.Generator().manual_seed(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
        epoch += 1


# ---- token-sequence tasks (wsebench.tasks) as a config's data ----

@dataclass(frozen=True)
class TaskShape:
    """What a model needs to know about a data set: `kind` is "vectors" (float features),
    "classify" (token ids -> one class) or "tag" (a class per token); `vocab` and `max_len`
    are None for vectors, `features` is None for token tasks."""
    name: str
    kind: str
    classes: int
    features: int | None = None
    vocab: int | None = None
    max_len: int | None = None

    @property
    def tokens(self) -> bool:
        return self.kind != "vectors"


def is_sequence(name: str) -> bool:
    return name in SEQUENCE_TASKS


def generator(name: str) -> Callable:
    """The function that makes data set `name` (its keyword arguments are the config's keys)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    if is_sequence(name):
        return getattr(_tasks, name)
    return {"blobs": blobs, "spirals": spirals}[name]


def defaults(name: str) -> dict:
    """The generator's keyword defaults for data set `name`."""
    return {k: p.default for k, p in inspect.signature(generator(name)).parameters.items()
            if p.default is not inspect.Parameter.empty}


def shape(name: str, **kwargs) -> TaskShape:
    """The shape of data set `name` made with `kwargs`, without making all of it: a sequence
    task is made with one sample, which also checks every argument (vocab and classes depend
    only on the arguments, not on the samples drawn)."""
    if not is_sequence(name):
        args = {**defaults(name), **kwargs}
        return TaskShape(name, "vectors", args["classes"], features=args["features"])
    task = generator(name)(**{**kwargs, "samples": 1})
    return TaskShape(name, task.kind, task.classes, vocab=task.vocab, max_len=task.max_len)


def sequence_data(name: str, batch_size: int, **kwargs):
    """A sequence task as a config runs it: (x [N, max_len], y [N] or [N, max_len], batches);
    `kwargs` go to the task, whose `seed` also shuffles the batches (as for vector data).

    Every batch is padded to the task's max_len: a compiled plan has fixed shapes, and the
    wafer charges only the real tokens (DESIGN.md, "Variable sequence length"). y holds
    `tasks.IGNORE_INDEX` at the pad positions of a tag task."""
    task = generator(name)(**kwargs)
    x, y, _ = _tasks.collate(task.samples, pad_to=task.max_len, pad_id=task.pad_id,
                             ignore_index=task.ignore_index)
    return x, y, _tasks.batches(task, batch_size, seed=kwargs.get("seed", 0), pad_to="max")
