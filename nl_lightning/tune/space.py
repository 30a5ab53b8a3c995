"""Search spaces over fit-config keys: parse and check them, and sample one with an Optuna trial.

A space is a mapping from a parameter name (by default the dotted fit-config key it sets) to a
spec::

    model.init_args.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.init_args.config.n_layers: {type: int, low: 1, high: 4, step: 1}
    model.init_args.optimizer.name: {type: categorical, choices: [adamw, sgd]}
    model.init_args.optimizer.momentum:              # exists only when the optimizer is SGD
      {type: float, low: 0.8, high: 0.99, condition: {model.init_args.optimizer.name: sgd}}

``key:`` sets another config key than the name (two conditional alternatives may set the same key).
Every mistake is a ``ValueError`` that names the parameter, the value and the fix. No lightning
import: this is the part of ``tune`` that runs without a Trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nl_lightning.errors import ConfigError
from nl_lightning.tune.keys import split_key

PARAM_TYPES = ("float", "int", "categorical")
_FIELDS = {
    "float": {"type", "low", "high", "log", "step", "condition", "key"},
    "int": {"type", "low", "high", "log", "step", "condition", "key"},
    "categorical": {"type", "choices", "condition", "key"},
}
_PRIMITIVES = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    """One searched value: its Optuna name, the config key it sets, and its distribution."""

    name: str
    key: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    condition: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """(parameter name, allowed values) pairs that must all hold for this parameter to exist."""

    def suggest(self, trial: Any) -> Any:
        """Ask ``trial`` (an ``optuna.Trial``) for a value of this parameter."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def probe_values(self) -> list[Any]:
        """Values that cover the parameter's types: both ends of a range, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter exists, given the values sampled so far (by name)."""
        return all(name in values and values[name] in allowed for name, allowed in self.condition)


@dataclass(frozen=True)
class SearchSpace:
    """Parameters in file order; a condition may refer only to an earlier parameter."""

    params: tuple[ParamSpec, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> "SearchSpace":
        if not isinstance(mapping, Mapping) or not mapping:
            raise ConfigError(
                f"The search space must be a non-empty mapping of config keys to specs, got {mapping!r}. "
                "Example: space: {model.init_args.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}"
            )
        params: list[ParamSpec] = []
        for name, spec in mapping.items():
            params.append(parse_param(str(name), spec, {p.name: p for p in params}))
        unconditional: dict[str, str] = {}
        for p in params:
            if not p.condition and p.key in unconditional:
                raise ConfigError(
                    f"search space parameters {unconditional[p.key]!r} and {p.name!r} both set {p.key!r} in every trial; "
                    "keep one, or give them exclusive conditions."
                )
            if not p.condition:
                unconditional[p.key] = p.name
        return cls(tuple(params))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def sample(self, trial: Any) -> dict[str, Any]:
        """Suggest every active parameter; returns ``{config key: value}`` in file order."""
        by_name: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for p in self.params:
            if p.active(by_name):
                by_name[p.name] = out[p.key] = p.suggest(trial)
        return out

    def to_keys(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Turn a finished trial's ``{name: value}`` into ``{config key: value}``."""
        return {p.key: params[p.name] for p in self.params if p.name in params}


def parse_param(name: str, spec: Any, earlier: Mapping[str, ParamSpec]) -> ParamSpec:
    """Check one spec; ``earlier`` holds the parameters defined above it (for conditions)."""
    where = f"search space parameter {name!r}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}, got {spec!r}.")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"{where}: type={kind!r} is not supported; use one of {list(PARAM_TYPES)}.")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for type {kind!r}; allowed: {sorted(_FIELDS[kind])}.")
    key = spec.get("key", name)
    try:
        split_key(key)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    condition = _condition(where, spec.get("condition"), earlier)
    if kind == "categorical":
        return ParamSpec(name, key, kind, choices=_choices(where, spec.get("choices")), condition=condition)
    low, high, log, step = _range(where, kind, spec)
    return ParamSpec(name, key, kind, low=low, high=high, log=log, step=step, condition=condition)


def _range(where: str, kind: str, spec: Mapping[str, Any]) -> tuple[Any, Any, bool, Any]:
    number = int if kind == "int" else (int, float)
    for end in ("low", "high"):
        value = spec.get(end)
        if not isinstance(value, number) or isinstance(value, bool) or (kind == "float" and not math.isfinite(value)):
            what = "an integer" if kind == "int" else "a finite number"
            raise ConfigError(f"{where}: {end}={value!r} must be {what} (type {kind}).")
    low, high = spec["low"], spec["high"]
    if low > high:
        raise ConfigError(f"{where}: low={low} > high={high}; swap them.")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log={log!r} must be true or false.")
    if log and low <= 0:
        raise ConfigError(f"{where}: log=true needs low > 0, got low={low}; use a positive low (e.g. 1.0e-5) or log: false.")
    step = spec.get("step")
    if step is not None:
        if not isinstance(step, number) or isinstance(step, bool) or step <= 0:
            raise ConfigError(f"{where}: step={step!r} must be a positive {'integer' if kind == 'int' else 'number'}.")
        if log and (kind == "float" or step != 1):
            raise ConfigError(f"{where}: step={step} cannot be combined with log=true (Optuna samples log ranges without a step).")
    return (float(low), float(high), log, None if step is None else float(step)) if kind == "float" else (low, high, log, step)


def _choices(where: str, choices: Any) -> tuple[Any, ...]:
    if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
        raise ConfigError(f"{where}: choices={choices!r} must be a non-empty list, e.g. choices: [adamw, sgd].")
    for c in choices:
        if not isinstance(c, _PRIMITIVES):
            raise ConfigError(
                f"{where}: choice {c!r} is a {type(c).__name__}; choices must be null, booleans, numbers or strings "
                "(set list or mapping values through several keys or conditions)."
            )
    if len({(type(c), c) for c in choices}) != len(choices):
        raise ConfigError(f"{where}: choices={list(choices)} has duplicates; list each value once.")
    return tuple(choices)


def _condition(where: str, condition: Any, earlier: Mapping[str, ParamSpec]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if condition is None:
        return ()
    if not isinstance(condition, Mapping) or not condition:
        raise ConfigError(f"{where}: condition={condition!r} must be a mapping like {{model.init_args.optimizer.name: sgd}}.")
    out = []
    for ref, allowed in condition.items():
        if ref not in earlier:
            raise ConfigError(
                f"{where}: condition on {ref!r}, which is not a parameter defined above it; "
                f"conditions may refer to earlier parameters: {list(earlier)}."
            )
        values = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        other = earlier[ref]
        if other.type == "categorical":
            missing = [v for v in values if v not in other.choices]
            if missing:
                raise ConfigError(f"{where}: condition value(s) {missing} are not among {ref!r}'s choices {list(other.choices)}.")
        out.append((ref, values))
    return tuple(out)
