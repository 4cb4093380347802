"""Small synthetic data sets made in code (nothing is downloaded)."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from compiler.target import ConfigError

DATASETS = ("blobs", "spirals")


def blobs(samples: int = 1024, features: int = 16, classes: int = 4, seed: int = 0,
          spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters, one per class, with centres drawn on a sphere of radius 3."""
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
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, samples)
    radius = rng.uniform(0.1, 1.0, samples)
    angle = 4.0 * radius + 2 * math.pi * y / classes + noise * rng.normal(size=samples)
    plane = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    basis, _ = np.linalg.qr(rng.normal(size=(features, max(2, features))))
    x = plane @ basis[:, :2].T * 3.0
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def make(name: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; allowed: {', '.join(DATASETS)}")
    return {"blobs": blobs, "spirals": spirals}[name](**kwargs)


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
