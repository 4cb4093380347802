"""A sweep's grid: its points (the cartesian product of dotted config keys' values), each with
its full validated config, its seed (derived from the base seed and the point's values unless
the grid sets one) and its store key (the hash of that config). See `wsebench.sweeps`."""
from __future__ import annotations

import copy
import hashlib
import itertools
from dataclasses import dataclass

from compiler import ConfigError

from .limits import check_config_size
from .store import canonical, config_key, dumps

SEED_MODES = ("derived", "base")
MAX_POINTS = 10_000            # points (grid points x repeats) one sweep may hold


@dataclass(frozen=True)
class Point:
    index: int
    values: dict        # the grid's values for this point (dotted keys), plus "repeat" if repeats > 1
    repeat: int
    seed: int
    config: dict        # the full, validated config (plain JSON data), seed included
    key: str            # store key: hash of `config`


# ----------------------------------------------------------------------------- the grid

def expand_grid(grid: dict | None) -> list[dict]:
    """The cartesian product of `grid` ({dotted key: [values]}), first key varying slowest."""
    if grid is None:
        return [{}]
    if not isinstance(grid, dict):
        raise ConfigError(f"a grid must be a mapping of dotted config keys to lists of values, "
                          f"got {type(grid).__name__}")
    check_config_size(grid, "the grid")
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"grid keys must be dotted config keys like 'model.hidden', got {key!r}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        seen = [dumps(v, sort_keys=True) for v in values]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"grid[{key!r}] repeats a value ({list(values)!r}); use repeats=N "
                              "for several runs of one point")
    keys = list(grid)
    count = 1
    for k in keys:
        count *= len(grid[k])
    if count > MAX_POINTS:
        raise ConfigError(f"the grid has {count:,} points, more than the {MAX_POINTS:,} one sweep "
                          f"may hold; split it into several sweeps")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def set_key(config: dict, dotted: str, value) -> None:
    """Set `config[a][b]... = value` for "a.b...". A wafer given as a preset name becomes
    {"preset": name}, and mapping "auto" becomes {}; "mapping.<glob>" takes the rest as the glob."""
    from .config import TOP_LEVEL
    top, _, rest = dotted.partition(".")
    if top not in TOP_LEVEL:
        raise ConfigError(f"grid key {dotted!r}: {top!r} is not a config key; allowed: "
                          f"{', '.join(TOP_LEVEL)}")
    parts = [top] + ([rest] if top == "mapping" and rest else rest.split(".") if rest else [])
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None or (depth == 0 and part == "mapping" and child == "auto"):
            child = {}
        elif depth == 0 and part == "wafer" and isinstance(child, str):
            child = {"preset": child}
        elif not isinstance(child, dict):
            raise ConfigError(f"grid key {dotted!r}: config {'.'.join(parts[:depth + 1])!r} is "
                              f"{child!r}, not a mapping")
        node[part] = child = dict(child)
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def derive_seed(base_seed: int, values: dict, repeat: int = 0) -> int:
    """A seed in [0, 2**31 - 1) determined by the base seed, the point's values and the repeat."""
    payload = dumps({"base_seed": base_seed, "point": canonical(values), "repeat": repeat},
                    sort_keys=True)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") % (2**31 - 1)


def plan_points(base_config: dict | None, grid: dict | None, repeats: int = 1,
                seeds: str = "derived") -> list[Point]:
    """Every point of the sweep with its full config, seed and key; checks every config."""
    from .config import default_config, validate
    base = default_config() if base_config is None else base_config
    check_config_size(base, "the base config")     # before anything copies it
    base = validate(canonical(base))
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
    if seeds not in SEED_MODES:
        raise ConfigError(f"seeds must be one of {', '.join(SEED_MODES)}, got {seeds!r}")
    grid_points = expand_grid(grid)
    if len(grid_points) * repeats > MAX_POINTS:
        raise ConfigError(f"{len(grid_points):,} grid points x {repeats} repeats is more than the "
                          f"{MAX_POINTS:,} points one sweep may hold; split the sweep")
    if repeats > 1 and (seeds == "base" or "seed" in grid_points[0]):
        raise ConfigError("repeats > 1 needs a seed per repeat: leave 'seed' out of the grid "
                          "and use seeds='derived'")
    points, keys = [], {}
    for values, repeat in itertools.product(grid_points, range(repeats)):
        config = copy.deepcopy(base)
        for dotted, value in values.items():
            set_key(config, dotted, value)
        if "seed" not in values:
            config["seed"] = base["seed"] if seeds == "base" else derive_seed(base["seed"], values,
                                                                               repeat)
        try:
            config = canonical(validate(config))
        except ConfigError as err:
            raise ConfigError(f"grid point {dumps(values)}: {err}") from None
        key = config_key(config)
        if key in keys:
            raise ConfigError(f"grid points {dumps(keys[key])} and {dumps(values)} give the same "
                              "experiment")
        shown = {**values, "repeat": repeat} if repeats > 1 else values
        keys[key] = shown
        points.append(Point(len(points), shown, repeat, config["seed"], config, key))
    return points
