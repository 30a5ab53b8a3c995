"""Check a fit config and every searched key against LightningCLI's own parser, before any trial.

The fit config (with the study's ``overrides``) is parsed and instantiated once through
``nl_lightning.cli.build_cli`` (as ``nl-lightning fit`` would); then each searched key is parsed
with the values that cover its range (both ends, every choice). Values go in together, one parse
per "column"; only when a column fails is each key parsed alone, to name the one at fault.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nl_lightning.errors import ConfigError, MissingFileError, parse_error_summary
from nl_lightning.tune.keys import with_keys
from nl_lightning.tune.space import SearchSpace


def load_fit_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"fit_config {path} does not exist; name a fit YAML such as configs/classifier.yaml "
            "(a relative path is read beside the tune config first, then from the working directory)."
        )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"fit_config {path} must be a YAML mapping (a LightningCLI fit config), got {type(data).__name__}.")
    return data


def check_fit_config(base: Mapping[str, Any], overrides: Mapping[str, Any], space: SearchSpace, source: str) -> None:
    """Parse and instantiate ``base`` + ``overrides``, then parse every key of ``space`` with the
    values that cover it; raises ``ValueError`` naming the first key or value that does not fit."""
    parser = _fit_parser(base, overrides, source)
    config = with_keys(base, overrides)
    columns = max(len(p.probe_values()) for p in space.params)
    for i in range(columns):
        column = [(p, p.probe_values()[min(i, len(p.probe_values()) - 1)]) for p in space.params]
        if _parses(parser, with_keys(config, {p.key: value for p, value in column})) is None:
            continue
        for p, value in column:
            _check_one(parser, config, p.name, p.key, value, source)


def _fit_parser(base: Mapping[str, Any], overrides: Mapping[str, Any], source: str) -> Any:
    from nl_lightning.cli import build_cli

    for key in overrides:
        with_keys(base, {key: overrides[key]})  # a malformed key fails here with its own message
    try:
        with quiet():
            cli = build_cli(args=with_keys(base, overrides), run=False, parser_kwargs={"exit_on_error": False})
    except Exception as err:
        bad = [k for k in overrides if _parses_alone(base, k, overrides[k])] if overrides else []
        where = f"overrides key {bad[0]!r}" if bad else f"fit config {source}"
        raise ConfigError(f"{where} is not a valid fit config: {explain(err)}") from None
    return cli.parser


def _parses_alone(base: Mapping[str, Any], key: str, value: Any) -> bool:
    """True when ``base`` with only ``key`` set fails to build (the override is at fault)."""
    from nl_lightning.cli import build_cli

    try:
        with quiet():
            build_cli(args=with_keys(base, {key: value}), run=False, parser_kwargs={"exit_on_error": False})
    except Exception:
        return True
    return False


def _check_one(parser: Any, config: Mapping[str, Any], name: str, key: str, value: Any, source: str) -> None:
    err = _parses(parser, with_keys(config, {key: value}))
    if err is None:
        return
    reason = explain(err)
    label = f"search space key {key!r}" + (f" (parameter {name!r})" if name != key else "")
    if _UNKNOWN.search(str(err)):
        raise ConfigError(
            f"{label} is not a setting of the fit config {source}: {reason}. "
            f"See the valid keys with: nl-lightning fit --config {source} --print_config"
        )
    raise ConfigError(f"{label}: value {value!r} ({type(value).__name__}) is not valid in the fit config {source}: {reason}.")


def _parses(parser: Any, config: Mapping[str, Any]) -> Exception | None:
    try:
        with quiet():
            parser.parse_object(dict(config))
    except Exception as err:  # jsonargparse.ArgumentError (exit_on_error=False)
        return err
    return None


# the second line: the same errors as jsonargparse < 4.42 words them
_UNKNOWN = re.compile(r"Option '([^']+)' is not accepted|does not accept option '([^']+)'|No action for key"
                      r"|Key '([^']+)' is not expected|does not accept nested key '([^']+)'")


def explain(err: BaseException) -> str:
    """What is wrong, in one line: jsonargparse's report through the CLI's own cleaner."""
    return parse_error_summary(str(err)) or type(err).__name__


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the Trainer's start-up banner and LightningCLI's args-with-argv warning."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
