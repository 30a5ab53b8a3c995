"""Optuna samplers and pruners by name: ``tpe`` / ``random`` / ``nsga2``; ``median`` / ``hyperband`` / ``none``.

A spec is a name or ``{name: ..., **kwargs}``; the kwargs go to Optuna's own class and are checked
against its signature first, so a typo is an error naming the argument and the valid ones.
No lightning import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from nl_lightning.errors import ConfigError

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}
_CONSTRAINED = ("tpe", "nsga2")  # samplers that take constraints_func


def split_spec(spec: str | Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    """``"tpe"`` or ``{name: tpe, seed: 1}`` -> ``("tpe", {"seed": 1})``."""
    if isinstance(spec, str):
        return spec.lower(), {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        kwargs = dict(spec)
        return kwargs.pop("name").lower(), kwargs
    raise ConfigError(f"{what}={spec!r} must be a name or a mapping with a 'name', e.g. {what}: {{name: median}}.")


def sampler_name(spec: str | Mapping[str, Any], n_objectives: int) -> str:
    name, _ = split_spec(spec, "sampler")
    if name == "auto":
        return "nsga2" if n_objectives > 1 else "tpe"
    if name not in SAMPLERS:
        raise ConfigError(f"sampler={name!r} is not supported; choose one of {['auto', *SAMPLERS]}.")
    return name


def pruner_name(spec: str | Mapping[str, Any], n_objectives: int) -> str:
    name, _ = split_spec(spec, "pruner")
    if name == "auto":
        return "none" if n_objectives > 1 else "median"
    if name not in PRUNERS:
        raise ConfigError(f"pruner={name!r} is not supported; choose one of {['auto', *PRUNERS]}.")
    if name != "none" and n_objectives > 1:
        raise ConfigError(
            f"pruner={name!r} needs a single objective (Optuna cannot prune multi-objective trials); "
            "use pruner: none with several metrics."
        )
    return name


def build_sampler(
    spec: str | Mapping[str, Any], n_objectives: int, seed: int | None = None,
    constraints_func: Callable[[optuna.trial.FrozenTrial], Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler named by ``spec``, seeded with ``seed`` unless the spec sets its own."""
    name = sampler_name(spec, n_objectives)
    kwargs = split_spec(spec, "sampler")[1]
    kwargs.setdefault("seed", seed)
    if constraints_func is not None and name in _CONSTRAINED:
        kwargs.setdefault("constraints_func", constraints_func)
    return SAMPLERS[name](**_checked(SAMPLERS[name], kwargs, f"sampler {name!r}"))


def build_pruner(spec: str | Mapping[str, Any], n_objectives: int) -> optuna.pruners.BasePruner:
    name = pruner_name(spec, n_objectives)
    kwargs = split_spec(spec, "pruner")[1]
    return PRUNERS[name](**_checked(PRUNERS[name], kwargs, f"pruner {name!r}"))


def check_specs(sampler: str | Mapping[str, Any], pruner: str | Mapping[str, Any], n_objectives: int) -> None:
    """Build both once (cheap), so bad names or arguments fail before any trial."""
    build_sampler(sampler, n_objectives, seed=0)
    build_pruner(pruner, n_objectives)


def _checked(cls: type, kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"{what}: unknown argument(s) {unknown}; {cls.__name__} takes {valid}.")
    return kwargs
