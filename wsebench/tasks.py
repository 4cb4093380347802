"""Classroom sequence tasks made in code: variable-length samples, deterministic from a seed.

- `parity`: a bit string -> the parity of its ones (classify), the first experiment of Graves
  2016 ("Adaptive Computation Time for Recurrent Neural Networks"), where the steps a network
  needs grow with the input.
- `copy` / `reverse`: a symbol string -> the same string / the string reversed, one label per
  token (tag), the algorithmic tasks of the Universal Transformer paper (Dehghani et al. 2018,
  "Algorithmic tasks") in encoder-only form.
- `longtail`: a symbol string whose length follows a long-tailed distribution (truncated
  lognormal or Zipf) -> its topic (classify): the symbols are split into `classes` groups and the
  label is the group with the most tokens in the sample (a tie goes to the tied group seen
  first), so the label is a function of the content. Most samples are short and a few are
  long, which is what makes padding to the longest costly.

Token id 0 (`PAD_ID`) is reserved for padding; padding goes on the right. Tagging targets at pad
positions are `IGNORE_INDEX`, which cross entropy skips. `collate` pads a list of samples to the
longest one (or to a fixed length: the padded baseline) and returns (x, y, lengths); `batches`
yields shuffled full batches like `wsebench.data.batches`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from compiler.errors import ConfigError

PAD_ID = 0
IGNORE_INDEX = -100
TASKS = ("parity", "copy", "reverse", "longtail")
LENGTH_DISTRIBUTIONS = ("lognormal", "zipf")


@dataclass(frozen=True, eq=False)
class Sample:
    """One sample: token ids [L] (no padding) and its target (0-d for classify, [L] for tag)."""
    tokens: np.ndarray
    target: np.ndarray


@dataclass(frozen=True, eq=False)
class SequenceTask:
    """A data set of variable-length samples. `kind` is "classify" or "tag" (the model's task);
    token ids lie in [0, vocab) with 0 the pad; labels lie in [0, classes)."""
    name: str
    kind: str
    vocab: int
    classes: int
    max_len: int
    samples: tuple[Sample, ...]
    pad_id: int = PAD_ID
    ignore_index: int = IGNORE_INDEX

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s.tokens) for s in self.samples], dtype=np.int64)


class Batch(NamedTuple):
    """Padded token ids [B, T] (int64), targets ([B] or [B, T] with IGNORE_INDEX at pad), and
    the real lengths [B]."""
    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor


# ---- argument checks ----

def _int(name: str, value, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _lengths_range(min_len, max_len) -> tuple[int, int]:
    min_len, max_len = _int("min_len", min_len), _int("max_len", max_len)
    if max_len < min_len:
        raise ConfigError(f"max_len ({max_len}) must be >= min_len ({min_len})")
    return min_len, max_len


def _samples(samples, max_len: int) -> int:
    """`samples` checked, and refused before allocation when they cannot fit in memory."""
    from .limits import check_data
    samples = _int("samples", samples)
    check_data(True, samples, max_len=max_len)
    return samples


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


# ---- the tasks ----

def parity(samples: int = 512, min_len: int = 1, max_len: int = 16, seed: int = 0) -> SequenceTask:
    """Bits as tokens 1 (a zero) and 2 (a one); the label is the number of ones mod 2."""
    min_len, max_len = _lengths_range(min_len, max_len)
    samples = _samples(samples, max_len)
    rng = np.random.default_rng(seed)
    out = []
    for length in rng.integers(min_len, max_len + 1, samples):
        bits = rng.integers(0, 2, length)
        out.append(Sample(bits + 1, np.array(bits.sum() % 2)))
    return SequenceTask("parity", "classify", 3, 2, max_len, tuple(out))


def _symbol_task(name: str, samples, min_len, max_len, symbols, seed, reverse: bool) -> SequenceTask:
    symbols = _int("symbols", symbols, 2)
    min_len, max_len = _lengths_range(min_len, max_len)
    samples = _samples(samples, max_len)
    rng = np.random.default_rng(seed)
    out = []
    for length in rng.integers(min_len, max_len + 1, samples):
        labels = rng.integers(0, symbols, length)         # label k is token k + 1 (0 is the pad)
        target = labels[::-1].copy() if reverse else labels
        out.append(Sample(labels + 1, target))
    return SequenceTask(name, "tag", symbols + 1, symbols, max_len, tuple(out))


def copy(samples: int = 512, min_len: int = 1, max_len: int = 16, symbols: int = 8,
         seed: int = 0) -> SequenceTask:
    """Symbols 1..symbols; the label of position i is the symbol at i (as a class, symbol - 1)."""
    return _symbol_task("copy", samples, min_len, max_len, symbols, seed, reverse=False)


def reverse(samples: int = 512, min_len: int = 1, max_len: int = 16, symbols: int = 8,
            seed: int = 0) -> SequenceTask:
    """Symbols 1..symbols; the label of position i is the symbol at L - 1 - i (symbol - 1)."""
    return _symbol_task("reverse", samples, min_len, max_len, symbols, seed, reverse=True)


def length_pmf(min_len: int, max_len: int, distribution: str = "lognormal", median: float = 6.0,
               sigma: float = 1.0, exponent: float = 1.5) -> np.ndarray:
    """P(L) for L = min_len..max_len, truncated to that range and renormalised.

    lognormal: P(L) ∝ exp(-(ln L - ln median)^2 / (2 sigma^2)) / L (the lognormal density);
    zipf:      P(L) ∝ (L - min_len + 1)^(-exponent) (a Zipf law shifted to start at min_len)."""
    min_len, max_len = _lengths_range(min_len, max_len)
    if distribution not in LENGTH_DISTRIBUTIONS:
        raise ConfigError(f"unknown length distribution {distribution!r}; allowed: "
                          f"{', '.join(LENGTH_DISTRIBUTIONS)}")
    lengths = np.arange(min_len, max_len + 1, dtype=np.float64)
    if distribution == "lognormal":
        mu, s = math.log(_positive_float("median", median)), _positive_float("sigma", sigma)
        weight = np.exp(-(np.log(lengths) - mu) ** 2 / (2 * s * s)) / lengths
    else:
        weight = (lengths - min_len + 1) ** -_positive_float("exponent", exponent)
    return weight / weight.sum()


def longtail(samples: int = 1024, min_len: int = 2, max_len: int = 64, classes: int = 4,
             symbols: int = 16, distribution: str = "lognormal", median: float = 6.0,
             sigma: float = 1.0, exponent: float = 1.5, signal: float = 0.5,
             seed: int = 0) -> SequenceTask:
    """Topic classification with long-tailed lengths (see the module doc and `length_pmf`).

    Each sample draws a topic; each token comes from the topic's group with probability `signal`
    and uniformly from all symbols otherwise. The label is recomputed from the tokens (the group
    with the most tokens), so it never contradicts the content."""
    samples, classes = _int("samples", samples), _int("classes", classes, 2)
    symbols = _int("symbols", symbols, 2)
    if symbols < classes:
        raise ConfigError(f"symbols ({symbols}) must be >= classes ({classes}): each class needs "
                          f"its own group of symbols")
    if isinstance(signal, bool) or not isinstance(signal, (int, float)) or not 0 <= signal <= 1:
        raise ConfigError(f"signal must be a probability in [0, 1], got {signal!r}")
    pmf = length_pmf(min_len, max_len, distribution, median, sigma, exponent)
    _samples(samples, max_len)
    rng = np.random.default_rng(seed)
    group = np.arange(symbols) * classes // symbols            # symbol -> its class group
    members = [np.flatnonzero(group == c) for c in range(classes)]
    out = []
    for length in rng.choice(np.arange(min_len, max_len + 1), size=samples, p=pmf):
        topic = rng.integers(classes)
        on_topic = rng.random(length) < signal
        symbol = np.where(on_topic, rng.choice(members[topic], length), rng.integers(0, symbols, length))
        out.append(Sample(symbol + 1, np.array(_majority(group[symbol], classes))))
    return SequenceTask("longtail", "classify", symbols + 1, classes, max_len, tuple(out))


def _majority(groups: np.ndarray, classes: int) -> int:
    """The most frequent group; among tied groups, the one that occurs first in the sample."""
    counts = np.bincount(groups, minlength=classes)
    tied = np.isin(groups, np.flatnonzero(counts == counts.max()))
    return int(groups[tied][0])


def make(name: str, **kwargs) -> SequenceTask:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return {"parity": parity, "copy": copy, "reverse": reverse, "longtail": longtail}[name](**kwargs)


# ---- batching ----

def collate(samples: Sequence[Sample], pad_to: int | None = None, pad_id: int = PAD_ID,
            ignore_index: int = IGNORE_INDEX) -> Batch:
    """Pad `samples` on the right to the longest of them, or to `pad_to` (a fixed T_max: the
    padded baseline); tag targets are padded with `ignore_index`."""
    if len(samples) == 0:
        raise ConfigError("collate needs at least one sample")
    lengths = np.array([len(s.tokens) for s in samples], dtype=np.int64)
    width = int(lengths.max())
    if pad_to is not None:
        if _int("pad_to", pad_to) < width:
            raise ConfigError(f"pad_to ({pad_to}) is shorter than the longest sample ({width}); "
                              f"use pad_to >= {width} or None (pad to the longest)")
        width = int(pad_to)
    tag = samples[0].target.ndim == 1
    x = np.full((len(samples), width), pad_id, dtype=np.int64)
    y = np.full((len(samples), width), ignore_index, dtype=np.int64) if tag else \
        np.empty(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        x[i, :len(s.tokens)] = s.tokens
        if tag:
            y[i, :len(s.target)] = s.target
        else:
            y[i] = s.target
    return Batch(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths))


def _pad_width(task: SequenceTask, pad_to) -> int | None:
    """None: the longest in each batch; "max": the task's max_len; an int: that length."""
    if pad_to is None:
        return None
    if pad_to == "max":
        return task.max_len
    if isinstance(pad_to, str):
        raise ConfigError(f"pad_to must be None, 'max' or an integer >= {task.max_len}, got {pad_to!r}")
    if _int("pad_to", pad_to) < task.max_len:
        raise ConfigError(f"pad_to ({pad_to}) is shorter than the task's max_len ({task.max_len}); "
                          f"use None, 'max' or an integer >= {task.max_len}")
    return int(pad_to)


def batches(task: SequenceTask, batch_size: int, seed: int = 0, epochs: int | None = None,
            pad_to: int | str | None = None, with_lengths: bool = False) -> Iterator:
    """Shuffled full batches of `task` (the last partial batch is dropped), as (x, y) pairs, or
    `Batch(x, y, lengths)` with `with_lengths=True`. `pad_to`: None pads each batch to its
    longest sample; "max" (or an int) pads every batch to one fixed length, which a compiled
    plan needs (its shapes are fixed)."""
    if not isinstance(task, SequenceTask):
        raise ConfigError(f"batches needs a SequenceTask (wsebench.tasks.make), got "
                          f"{type(task).__name__}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not \
            1 <= batch_size <= len(task):
        raise ConfigError(f"batch_size must be an integer in [1, {len(task)}], got {batch_size!r}")
    if epochs is not None:
        _int("epochs", epochs)
    width = _pad_width(task, pad_to)
    rng = np.random.default_rng(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = rng.permutation(len(task))
        for start in range(0, len(task) - batch_size + 1, batch_size):
            batch = collate([task.samples[i] for i in order[start:start + batch_size]], width,
                            task.pad_id, task.ignore_index)
            yield batch if with_lengths else (batch.x, batch.y)
        epoch += 1


# ---- padding reports ----

def lengths_of(x, pad_id: int = PAD_ID) -> torch.Tensor:
    """Real lengths [B] of right-padded token ids [B, T]."""
    return (torch.as_tensor(x) != pad_id).sum(dim=1)


def padding_fraction(batch, pad_id: int = PAD_ID) -> float:
    """Fraction of the positions of a batch (a `Batch` or token ids [B, T]) that are padding."""
    x = torch.as_tensor(batch.x if isinstance(batch, Batch) else batch)
    if x.dim() != 2 or x.numel() == 0:
        raise ConfigError(f"padding_fraction needs token ids [batch, length], got shape "
                          f"{tuple(x.shape)}")
    return float((x == pad_id).sum()) / x.numel()


def dataset_padding_fraction(task: SequenceTask, batch_size: int | None = None,
                             pad_to: int | str | None = "max", seed: int = 0) -> float:
    """Fraction of padding over a data set: every sample padded to `pad_to` (batch_size None),
    or over one epoch of `batches(task, batch_size, seed, pad_to=pad_to)`."""
    if batch_size is None:
        width = _pad_width(task, pad_to)
        if width is None:
            return 0.0                                   # each sample alone needs no padding
        return 1.0 - float(task.lengths.sum()) / (len(task) * width)
    pads = total = 0
    for x, _ in batches(task, batch_size, seed, epochs=1, pad_to=pad_to):
        pads, total = pads + int((x == task.pad_id).sum()), total + x.numel()
    return pads / total
