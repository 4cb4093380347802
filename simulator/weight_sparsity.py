"""Weight sparsity with masks, configured like Cerebras' ``cstorch.sparse`` (DESIGN.md, "Sparsity").

    WeightSparsity.from_dict({"algorithm": "rigl", "sparsity": 0.9, "init_method": "random",
                              "update": {"freq": 100, "start": 100, "stop": 7500},
                              "param_filter": "fc*.weight", "seed": 0})

Keys (anything else is refused with ConfigError):
- ``algorithm``: ``static`` (the mask drawn at construction is never changed), ``gmp``
  (gradual magnitude pruning, Zhu & Gupta 2017, "To prune, or not to prune"), ``set`` (sparse
  evolutionary training, Mocanu et al. 2018) or ``rigl`` (Evci et al. 2020, "Rigging the Lottery").
- ``sparsity``: the fraction of each selected tensor held at zero, a float in [0, 1). ``gmp``
  also takes a schedule ``{"type": "linear" | "cosine" | "cubic" | "constant", "init": a,
  "final": b, "begin": step, "end": step}`` (init defaults to 0, begin to 0); ``cubic`` is Zhu &
  Gupta's ``s_t = s_f + (s_i - s_f) (1 - (t - begin) / (end - begin))^3``. Before ``begin`` the
  schedule gives ``init``, after ``end`` it gives ``final``. ``constant`` takes only ``final``.
- ``init_method``: ``random`` (a uniformly random subset, drawn from ``seed``) or ``topk`` (the
  largest magnitudes of the initial weights).
- ``update``: ``{"freq": n, "start": s, "stop": e}``; the mask is updated after the optimizer
  step of every step ``t`` (counted from 1) with ``start <= t``, ``t < stop`` (no end when
  ``stop`` is None) and ``(t - start) % freq == 0``. Defaults ``freq=1, start=1, stop=None``;
  ``static`` takes none; ``rigl`` needs ``stop``, where its drop fraction has decayed to zero.
- ``drop_fraction`` (``set`` and ``rigl`` only, default 0.3, the papers' value): the fraction of
  active weights replaced at each update. RigL decays it as ``d/2 (1 + cos(pi t / stop))``.
- ``param_filter``: a glob or list of globs over parameter names (``fnmatch``). The default
  selects weights with at least 2 dimensions that are not embeddings or norms: no name segment
  contains ``emb`` or ``norm`` and none is ``pos``, ``wpe``, ``wte`` or starts with ``ln``/``bn``;
  when the caller knows which parameters feed a matmul kernel (the Trainer does), the default is
  further limited to those, which is what excludes an embedding whatever its name.
- ``seed``: seeds the random initial mask and SET's random regrowth (host RNG, so NumPy and CuPy
  draw the same masks).

Every selected tensor keeps exactly ``numel - round(sparsity * numel)`` weights. A weight that is
masked stays exactly zero: after every optimizer update the engine zeros masked weights and the
optimizer state at the same positions. SET and RigL regrow as many weights as they drop; every
regrown weight starts at zero with zero optimizer state (RigL's Algorithm 1: candidates are all
positions outside the surviving set, so a weight just dropped may be regrown, and starts at zero).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import ConfigError

ALGORITHMS = ("static", "gmp", "set", "rigl")
INIT_METHODS = ("random", "topk")
SCHEDULES = ("constant", "linear", "cosine", "cubic")
KEYS = ("algorithm", "sparsity", "init_method", "update", "param_filter", "seed", "drop_fraction")
_NOT_WEIGHTS = ("pos", "wpe", "wte")


def _fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def _int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _known(d: dict, allowed, what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a dict, got {type(d).__name__}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class Schedule:
    """Sparsity as a function of the step; a float sparsity is ``Schedule("constant", final=s)``."""
    type: str = "constant"
    final: float = 0.0
    init: float = 0.0
    begin: int = 0
    end: int = 0

    @classmethod
    def parse(cls, value) -> "Schedule":
        if not isinstance(value, dict):
            return cls(final=_fraction(value, "sparsity"))
        _known(value, ("type", "init", "final", "begin", "end"), "sparsity schedule")
        kind = value.get("type", "constant")
        if kind not in SCHEDULES:
            raise ConfigError(f"unknown sparsity schedule type {kind!r}; allowed: {', '.join(SCHEDULES)}")
        if "final" not in value:
            raise ConfigError("a sparsity schedule needs 'final', the sparsity it ends at")
        final = _fraction(value["final"], "sparsity schedule 'final'")
        if kind == "constant":
            extra = sorted(set(value) - {"type", "final"})
            if extra:
                raise ConfigError(f"a constant sparsity schedule takes only 'final', got {extra}")
            return cls(final=final)
        if "end" not in value:
            raise ConfigError(f"a {kind} sparsity schedule needs 'end', the step it reaches 'final'")
        begin = _int(value.get("begin", 0), "sparsity schedule 'begin'", 0)
        end = _int(value["end"], "sparsity schedule 'end'", 0)
        if end <= begin:
            raise ConfigError(f"sparsity schedule 'end' ({end}) must be after 'begin' ({begin})")
        return cls(kind, final, _fraction(value.get("init", 0.0), "sparsity schedule 'init'"), begin, end)

    def at(self, step: int) -> float:
        if self.type == "constant":
            return self.final
        p = min(max((step - self.begin) / (self.end - self.begin), 0.0), 1.0)
        if self.type == "linear":
            return self.init + (self.final - self.init) * p
        if self.type == "cosine":
            return self.final + (self.init - self.final) * 0.5 * (1 + math.cos(math.pi * p))
        return self.final + (self.init - self.final) * (1 - p) ** 3   # Zhu & Gupta 2017, eq. 1

    def to_value(self):
        if self.type == "constant":
            return self.final
        return {"type": self.type, "init": self.init, "final": self.final, "begin": self.begin,
                "end": self.end}


@dataclass(frozen=True)
class Update:
    freq: int = 1
    start: int = 1
    stop: int | None = None

    @classmethod
    def parse(cls, value) -> "Update":
        _known(value, ("freq", "start", "stop"), "update")
        freq = _int(value.get("freq", 1), "update 'freq'", 1)
        start = _int(value.get("start", 1), "update 'start'", 0)
        stop = value.get("stop")
        if stop is not None and _int(stop, "update 'stop'", 0) <= start:
            raise ConfigError(f"update 'stop' ({stop}) must be after 'start' ({start}), or None")
        return cls(freq, start, None if stop is None else int(stop))

    def due(self, step: int) -> bool:
        return step >= self.start and (self.stop is None or step < self.stop) \
            and (step - self.start) % self.freq == 0


@dataclass(frozen=True)
class WeightSparsity:
    """A validated weight-sparsity config (see the module docstring); build with ``from_dict``."""
    algorithm: str = "static"
    sparsity: Schedule = field(default_factory=Schedule)
    init_method: str = "random"
    update: Update | None = None
    param_filter: tuple[str, ...] = ()
    seed: int = 0
    drop_fraction: float = 0.3

    @classmethod
    def from_dict(cls, d: dict) -> "WeightSparsity":
        _known(d, KEYS, "weight sparsity")
        algorithm = d.get("algorithm", "static")
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown weight sparsity algorithm {algorithm!r}; allowed: "
                              f"{', '.join(ALGORITHMS)}")
        if "sparsity" not in d:
            raise ConfigError("weight sparsity needs 'sparsity': a float in [0, 1) (or, for gmp, a schedule)")
        schedule = Schedule.parse(d["sparsity"])
        if schedule.type != "constant" and algorithm != "gmp":
            raise ConfigError(f"a sparsity schedule needs algorithm 'gmp'; {algorithm} takes a "
                              "float sparsity")
        init_method = d.get("init_method", "random")
        if init_method not in INIT_METHODS:
            raise ConfigError(f"unknown init_method {init_method!r}; allowed: {', '.join(INIT_METHODS)}")
        if algorithm == "static" and d.get("update") is not None:
            raise ConfigError("algorithm 'static' never updates its mask: remove 'update' or "
                              "choose gmp, set or rigl")
        update = None if algorithm == "static" else Update.parse(d.get("update") or {})
        if algorithm == "rigl" and update.stop is None:
            raise ConfigError("rigl decays its drop fraction to zero at update 'stop' (Evci et al. "
                              "2020): give update {'stop': step}")
        if "drop_fraction" in d and algorithm not in ("set", "rigl"):
            raise ConfigError(f"drop_fraction applies to set and rigl only, not {algorithm}")
        drop = d.get("drop_fraction", 0.3)
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 < drop <= 1:
            raise ConfigError(f"drop_fraction must be a number in (0, 1], got {drop!r}")
        return cls(algorithm, schedule, init_method, update, _globs(d.get("param_filter")),
                   _int(d.get("seed", 0), "weight sparsity 'seed'", 0), float(drop))

    def to_dict(self) -> dict:
        """A dict that ``from_dict`` reads back to an equal config (for checkpoints)."""
        d = {"algorithm": self.algorithm, "sparsity": self.sparsity.to_value(),
             "init_method": self.init_method, "param_filter": list(self.param_filter), "seed": self.seed}
        if self.update is not None:
            d["update"] = {"freq": self.update.freq, "start": self.update.start, "stop": self.update.stop}
        if self.algorithm in ("set", "rigl"):
            d["drop_fraction"] = self.drop_fraction
        if not self.param_filter:
            del d["param_filter"]
        return d

    def select(self, param_shapes: dict[str, tuple], maskable=None) -> list[str]:
        """Names of the parameters to sparsify, in ``param_shapes`` order. ``maskable``
        (optional) names the parameters a kernel holds as a maskable weight (its kind's
        `weight_view`: a matmul's resident weight)."""
        names = list(param_shapes)
        if not self.param_filter:
            chosen = [n for n in names if _default_weight(n, param_shapes[n])
                      and (maskable is None or n in maskable)]
            if not chosen:
                raise ConfigError(f"weight sparsity: no parameter is a multi-dimensional non-"
                                  f"embedding, non-norm weight among {names}; set param_filter")
            return chosen
        for glob in self.param_filter:
            if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                raise ConfigError(f"weight sparsity param_filter {glob!r} matches no parameter; "
                                  f"the parameters are {names}")
        return [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in self.param_filter)]


def _globs(value) -> tuple[str, ...]:
    if value is None:
        return ()
    globs = (value,) if isinstance(value, str) else value
    if not isinstance(globs, (list, tuple)) or not globs or \
            not all(isinstance(g, str) and g for g in globs):
        raise ConfigError(f"param_filter must be a glob or a non-empty list of globs, got {value!r}")
    return tuple(globs)


def _default_weight(name: str, shape: tuple) -> bool:
    parts = name.lower().split(".")
    return len(shape) >= 2 and not any(
        "emb" in p or "norm" in p or p in _NOT_WEIGHTS or p.startswith(("ln", "bn")) for p in parts)


def keep_count(numel: int, sparsity: float) -> int:
    return numel - int(round(sparsity * numel))


def _top(xp, scores, k: int):
    """Boolean mask of the `k` largest `scores` (ties broken by position, for determinism)."""
    flat = scores.reshape(-1)
    order = xp.argsort(flat, kind="stable") if xp is np else xp.argsort(flat)
    mask = xp.zeros(flat.shape, dtype=bool)
    if k > 0:
        mask[order[flat.size - k:]] = True
    return mask.reshape(scores.shape)


class WeightSparsityEngine:
    """Masks for the selected parameters, updated on the config's schedule, applied in place."""

    def __init__(self, config: WeightSparsity, xp, params: dict, maskable=None):
        self.config, self.xp = config, xp
        self.names = config.select({k: tuple(v.shape) for k, v in params.items()}, maskable)
        self.rng = np.random.default_rng(config.seed)
        s0 = config.sparsity.at(0)
        self.targets = {n: s0 for n in self.names}
        self.masks = {n: self._initial(params[n], s0) for n in self.names}
        self.survivors = dict(self.masks)   # positions whose values the last step kept

    def _initial(self, param, sparsity: float):
        k = keep_count(param.size, sparsity)
        if self.config.init_method == "topk":
            return _top(self.xp, self.xp.abs(param.astype(self.xp.float64)), k)
        return _top(self.xp, self.xp.asarray(self.rng.random(param.shape)), k)

    def apply(self, params: dict, opt_state: dict) -> None:
        """Zero each masked weight and its optimizer state (``dict``s updated in place)."""
        from .optim import mask_state
        xp = self.xp
        for n in self.names:
            keep = self.survivors[n]
            params[n] = xp.where(keep, params[n], xp.zeros((), dtype=params[n].dtype))
            if n in opt_state:
                opt_state[n] = mask_state(xp, opt_state[n], keep)

    def after_update(self, step: int, params: dict, opt_state: dict, grads: dict) -> bool:
        """After the optimizer's step `step` (from 1): update the masks if due, then apply them.
        Returns whether the masks changed. `grads` (fqn -> dense gradient) is read by RigL."""
        due = self.config.update is not None and self.config.update.due(step)
        if due:
            for n in self.names:
                self.masks[n], self.survivors[n] = self._updated(n, step, params[n], grads.get(n))
        else:
            self.survivors = dict(self.masks)
        self.apply(params, opt_state)
        return due

    def _updated(self, name: str, step: int, param, grad):
        xp, cfg, mask = self.xp, self.config, self.masks[name]
        active = int(xp.count_nonzero(mask))
        magnitude = xp.where(mask, xp.abs(param.astype(xp.float64)), -xp.inf)
        if cfg.algorithm == "gmp":
            # pruned weights stay pruned: only ever shrink the active set (Zhu & Gupta 2017)
            self.targets[name] = target = cfg.sparsity.at(step)
            keep = min(active, keep_count(param.size, target))
            new = _top(xp, magnitude, keep) if keep < active else mask
            return new, new
        fraction = cfg.drop_fraction
        if cfg.algorithm == "rigl":   # Evci et al. 2020, eq. 1: cosine decay to zero at stop
            fraction *= 0.5 * (1 + math.cos(math.pi * step / cfg.update.stop))
        drop = int(round(fraction * active))
        kept = _top(xp, magnitude, active - drop)
        if cfg.algorithm == "set":    # Mocanu et al. 2018: regrow uniformly at random
            score = xp.asarray(self.rng.random(param.shape))
        else:                         # RigL: regrow where the dense gradient is largest
            score = xp.abs(grad.astype(xp.float64))
        grown = _top(xp, xp.where(kept, -xp.inf, score), drop)
        return kept | grown, kept

    def density(self, params: dict) -> dict[str, dict[str, float]]:
        """Per parameter: ``target`` density (1 - the sparsity the mask was last set to),
        ``actual`` (the mask's kept fraction) and ``nonzero`` (non-zero weights: regrown weights
        are kept but may still be zero)."""
        xp = self.xp
        return {n: {"target": 1.0 - self.targets[n],
                    "actual": float(xp.count_nonzero(self.masks[n])) / self.masks[n].size,
                    "nonzero": float(xp.count_nonzero(params[n])) / params[n].size}
                for n in self.names}

    def state(self) -> tuple[dict, dict]:
        """(JSON-able metadata, fqn -> NumPy bool mask) to checkpoint; ``restore`` reads them."""
        from .backend import to_numpy
        meta = {"config": self.config.to_dict(), "targets": dict(self.targets),
                "rng": self.rng.bit_generator.state}
        return meta, {n: to_numpy(self.masks[n]) for n in self.names}

    def restore(self, meta: dict, masks: dict) -> None:
        missing = [n for n in self.names if n not in masks]
        if missing:
            raise ValueError(f"saved weight sparsity state lacks masks for {missing}")
        self.masks = {n: self.xp.asarray(masks[n], dtype=bool) for n in self.names}
        self.survivors = dict(self.masks)
        self.targets = {n: float(meta["targets"][n]) for n in self.names}
        self.rng.bit_generator.state = meta["rng"]
