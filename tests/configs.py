"""Small experiment configs for every test folder (`from tests.configs import tiny_config`)."""
from __future__ import annotations

from wsebench import config as cfg

# Token families at the smallest sizes that still exercise every kernel kind: one encoder block
# (or the UT's shared block over 3 steps), d_model 16 with 2 heads, sequences of at most 6-8.
_TINY_FAMILY = {
    "transformer": {
        "model": {"d_model": 16, "heads": 2, "layers": 1, "ffn": 32},
        "data": {"name": "copy", "samples": 64, "batch_size": 8, "max_len": 6, "symbols": 4,
                 "seed": 0}},
    "universal_transformer": {
        "model": {"d_model": 16, "heads": 2, "ffn": 32, "max_steps": 3},
        "data": {"name": "parity", "samples": 64, "batch_size": 8, "max_len": 8, "seed": 0}},
}


def tiny_config(hidden: int = 24, depth: int = 3, samples: int = 256, batch_size: int = 32,
                steps: int = 4, **overrides) -> dict:
    """A run that compiles and trains in about a second: small MLP, a few steps, NumPy."""
    c = cfg.default_config()
    c["model"].update(hidden=hidden, depth=depth)
    c["data"].update(samples=samples, batch_size=batch_size)
    c["steps"] = steps
    c["backend"] = "numpy"
    c.update(overrides)
    return c


def tiny_family_config(family: str, steps: int = 3, **overrides) -> dict:
    """A transformer (copy: a tag task) or Universal Transformer (parity, ACT on) run that
    compiles in a few seconds and steps in a fraction of one, on NumPy."""
    c = cfg.default_config(family)
    tiny = _TINY_FAMILY[family]
    c["model"].update(tiny["model"])
    c["data"] = dict(tiny["data"])
    c["steps"] = steps
    c["backend"] = "numpy"
    c.update(overrides)
    return c
