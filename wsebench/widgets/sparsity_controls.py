"""The Sparsity panel's controls over the config's `sparsity:` section (wsebench.sparsity keys).

The panel edits, by sub-key:
- `relu.on` / `relu.at`: ReLU insertion on or off, and the module globs (comma-separated text);
- `drop.fraction` (0 = no rule), `drop.at`, `drop.schedule`, `drop.steps`, `drop.where`,
  `drop.gradient`: the FIRST drop rule (`sparsity.drop[0]`); further rules are kept untouched;
- `weights.algorithm` ("none" = off) and `weights.sparsity`: the weight masks.

What is switched off is remembered (the globs, the rule, the weight settings), so switching it
back on restores it. A section given as a YAML path or string is turned into the dict it means
on the first edit; nothing changes the section until a control is set, so any config reads back
exactly as it was given.
"""
from __future__ import annotations

import copy

from .controls import FAMILIES, NO_WEIGHT_SPARSITY, family_of, first_drop, sparsity_section

DEFAULT_RULE = {"where": "forward", "schedule": "constant"}
DEFAULT_LEVEL = 0.5


def globs(text) -> list[str]:
    """'act*, fc1' -> ['act*', 'fc1'] (a list is kept as it is)."""
    if isinstance(text, (list, tuple)):
        return [str(g) for g in text]
    return [g.strip() for g in str(text or "").split(",") if g.strip()]


class SparsityControls:
    def __init__(self, config: dict):
        self._config = config                       # the state's dict, edited in place
        at = FAMILIES[family_of(config)].sparse_at if family_of(config) in FAMILIES else "*"
        section = self._section()
        self._relu_at = globs(section.get("relu")) or [at]
        rule = first_drop(config)
        self._rule = copy.deepcopy(rule) if rule else {"targets": [at], **DEFAULT_RULE}
        weights = section.get("weights")
        self._weights = copy.deepcopy(weights) if isinstance(weights, dict) and weights else {}

    # the section ----------------------------------------------------------------------------
    def _section(self) -> dict:
        return sparsity_section(self._config)

    def _write(self, **changes) -> None:
        """Set (or, with None, remove) keys of the section (a YAML one becomes its dict)."""
        section = dict(self._section())
        for key, value in changes.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
        self._config["sparsity"] = section

    # get --------------------------------------------------------------------------------------
    def get(self, sub: str):
        section = self._section()
        rule = first_drop(self._config) or self._rule
        weights = section.get("weights") or self._weights
        if sub == "relu.on":
            return bool(section.get("relu"))
        if sub == "relu.at":
            return ", ".join(globs(section.get("relu")) or self._relu_at)
        if sub == "drop.fraction":
            return float(rule["fraction"]) if first_drop(self._config) and \
                rule.get("fraction") is not None else 0.0
        if sub == "drop.at":
            return ", ".join(globs(rule.get("targets")))
        if sub in ("drop.schedule", "drop.where", "drop.gradient"):
            name = sub.split(".")[1]
            return rule.get(name, {"schedule": "constant", "where": "forward",
                                   "gradient": "masked"}[name])
        if sub == "drop.steps":
            return rule.get("steps") or self._config.get("steps", 1)
        if sub == "weights.algorithm":
            return section["weights"].get("algorithm", "static") if section.get("weights") \
                else NO_WEIGHT_SPARSITY
        if sub == "weights.sparsity":
            level = weights.get("sparsity", DEFAULT_LEVEL)
            return level.get("final", DEFAULT_LEVEL) if isinstance(level, dict) else level
        raise KeyError(f"no sparsity control {sub!r}")

    # set --------------------------------------------------------------------------------------
    def set(self, sub: str, value) -> None:
        if sub == "relu.on":
            if not value and self._section().get("relu"):
                self._relu_at = globs(self._section()["relu"])
            return self._write(relu=list(self._relu_at) if value else None)
        if sub == "relu.at":
            self._relu_at = globs(value)
            if self._section().get("relu"):
                self._write(relu=list(self._relu_at) or None)
            return
        if sub.startswith("drop."):
            return self._set_drop(sub.split(".", 1)[1], value)
        if sub.startswith("weights."):
            return self._set_weights(sub.split(".", 1)[1], value)
        raise KeyError(f"no sparsity control {sub!r}")

    def _set_drop(self, name: str, value) -> None:
        rule = copy.deepcopy(first_drop(self._config) or self._rule)
        if name == "fraction":
            if value == 0 and not isinstance(value, bool):
                self._rule = rule
                return self._write_rule(None)
            rule.pop("threshold", None)
            rule["fraction"] = value
            return self._write_rule(rule)
        if name == "at":
            rule["targets"] = globs(value)
        elif name == "schedule":
            rule["schedule"] = value
            if value == "constant":
                rule.pop("steps", None)
                rule.pop("initial", None)
            else:
                rule.setdefault("steps", self._rule.get("steps") or self._config.get("steps", 1))
        else:
            rule[name] = value
        self._rule = copy.deepcopy(rule)
        if first_drop(self._config) is not None:
            self._write_rule(rule)

    def _write_rule(self, rule: "dict | None") -> None:
        drop = self._section().get("drop") or []
        rest = list(drop[1:]) if isinstance(drop, (list, tuple)) else []
        rules = ([rule] if rule is not None else []) + rest
        self._write(drop=rules or None)

    def _set_weights(self, name: str, value) -> None:
        current = self._section().get("weights")
        weights = copy.deepcopy(current or self._weights or {"sparsity": DEFAULT_LEVEL})
        if name == "sparsity":
            weights["sparsity"] = value
            self._weights = weights
            if current:
                self._write(weights=weights)
            return
        if value == NO_WEIGHT_SPARSITY:
            if current:
                self._weights = weights
            return self._write(weights=None)
        weights["algorithm"] = value
        weights.setdefault("sparsity", DEFAULT_LEVEL)
        self._fit_algorithm(weights)
        self._weights = weights
        self._write(weights=weights)

    def _fit_algorithm(self, weights: dict) -> None:
        """Keys the algorithm does not take go; rigl gets the update stop it needs (the run's
        steps: its drop fraction decays to zero there, Evci et al. 2020)."""
        algorithm = weights["algorithm"]
        if algorithm == "static":
            weights.pop("update", None)
        if algorithm in ("static", "gmp"):
            weights.pop("drop_fraction", None)
        if algorithm == "rigl":
            update = dict(weights.get("update") or {})
            update.setdefault("stop", self._config.get("steps", 1))
            weights["update"] = update
        if algorithm != "gmp" and isinstance(weights.get("sparsity"), dict):
            weights["sparsity"] = weights["sparsity"].get("final", DEFAULT_LEVEL)

    # a family switch --------------------------------------------------------------------------
    def retarget(self, old: str, new: str) -> None:
        """Globs that were the old family's default module glob become the new family's."""
        def swap(items):
            return [new if g == old else g for g in globs(items)]
        self._relu_at = swap(self._relu_at)
        self._rule["targets"] = swap(self._rule.get("targets"))
        section = self._section()
        if section.get("relu"):
            self._write(relu=swap(section["relu"]))
        rule = first_drop(self._config)
        if rule is not None:
            self._write_rule({**rule, "targets": swap(rule.get("targets"))})

    def warnings(self) -> list[str]:
        drop = self._section().get("drop")
        extra = len(drop) - 1 if isinstance(drop, (list, tuple)) and drop else 0
        if extra > 0:
            return [f"the config has {extra} more drop rule(s) than the controls show (they edit "
                    "the first); they are kept"]
        return []
