"""``nl-lightning``: LightningCLI (fit / validate / test / predict) plus nl_lightning's own subcommands.

Models and DataModules are chosen by ``class_path`` (subclass mode), so any LightningModule or
LightningDataModule, ours or the user's, works from YAML. Extra subcommands (``generate``,
``export``, ``profile``, ...) live in their own modules and are dispatched by name below.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import lightning as L
from jsonargparse import ArgumentError
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from nl_lightning.errors import NLUserError, parse_error_summary, wrapped_user_error

# name -> "module:function"; each function takes argv (list[str]) and returns an exit code.
EXTRA_COMMANDS: dict[str, str] = {
    "generate": "nl_lightning.commands.generate:main",
    "export": "nl_lightning.commands.export:main",
    "profile": "nl_lightning.commands.profile:main",
    "serve": "nl_lightning.commands.serve:main",
    "tune": "nl_lightning.commands.tune:main",
    "lr-find": "nl_lightning.commands.lr_find:main",
    "plot": "nl_lightning.commands.plot:main",
    "consolidate": "nl_lightning.commands.consolidate:main",
    "convert": "nl_lightning.commands.convert:main",
    "tokenizer": "nl_lightning.commands.tokenizer:main",
}


class NLArgumentParser(LightningArgumentParser):
    """A config error is one message naming the key, not a page of usage (``--help`` has it)."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        if not self.exit_on_error:
            super().error(message, ex)
        self.logger.error(message)
        sys.stderr.write(f"nl-lightning: error: {parse_error_summary(str(message))} (see {self.prog} --help)\n")
        sys.exit(2)


class NLLightningCLI(LightningCLI):
    """LightningCLI with nl_lightning's defaults; see ``configs/`` for complete examples."""

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path``: resolved (``last``, run folders), read with the safe loader, its model class
        allow-listed and its architecture compared with the config (``nl_lightning/resume.py``)."""
        from nl_lightning.resume import check_checkpoint_against_config, resolve_ckpt_path

        subcommand = self.config.get("subcommand")
        section = self.config[subcommand] if subcommand else None
        if section is None or not section.get("ckpt_path"):
            return
        root = (section.get("trainer") or {}).get("default_root_dir")
        section["ckpt_path"] = path = resolve_ckpt_path(str(section["ckpt_path"]), root)
        if path in ("hpc", "registry") or path.startswith("registry:"):
            return  # Lightning's own meanings, resolved by the Trainer
        strategy = str((section.get("trainer") or {}).get("strategy") or "")
        if Path(path).is_dir() and (Path(path) / ".metadata").is_file() and "ModelParallel" in strategy:
            return  # a sharded checkpoint, resumed by the strategy that wrote it
        check_checkpoint_against_config(path, section.get("model"), subcommand, section.get("trust") or ())
        super()._parse_ckpt_path()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--trust [mypkg.models.MyModel]``: your own classes a checkpoint may name (``models/trust.py``)."""
        parser.add_argument(
            "--trust", type=Optional[list[str]], default=None,
            help="Your own model classes a checkpoint may name (--ckpt_path, or the Predictor's source), e.g. "
                 "[mypkg.models.MyModel]: importable (installed or on PYTHONPATH). Only these are imported.")

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """An unknown ``--config configs/track/<backend>.yaml`` is named as a backend, not a missing file;
        loggers and callbacks of several ``--config`` files compose (``config_lists.py``)."""
        from nl_lightning.config_lists import compose_lists
        from nl_lightning.track.cli_config import check_track_fragments

        argv = sys.argv[1:] if args is None else args if isinstance(args, list) else None
        check_track_fragments(argv or [])
        composed = compose_lists(list(argv)) if argv is not None else None
        if composed is None or composed == argv:
            super().parse_arguments(parser, args)
            return
        self.config = parser.parse_args(composed)  # what LightningCLI does, without its args-and-argv warning

    def before_instantiate_classes(self) -> None:
        """Tracking: logger packages present, fragment loggers named after the run (``track/cli_config.py``)."""
        from nl_lightning.track.cli_config import prepare_loggers

        section = self.config[self.subcommand] if self.subcommand else self.config
        prepare_loggers(section)
        _pass_trust(section)
        _place_evaluation_logs(section, self.subcommand)

    def before_fit(self) -> None:
        """Check every logger's folder / tracking URI before the first step (``track.check_loggers``),
        lock the run folder against a second live run writing into it (``callbacks/run_lock.py``),
        write checkpoints atomically (``models/checkpoint_io.py``), keep ``last.ckpt`` the final
        state (``callbacks/last_checkpoint.py``), and record run metadata and curves.png for every run."""
        from nl_lightning.callbacks.curves import CurvesCallback
        from nl_lightning.callbacks.last_checkpoint import LastCheckpoint
        from nl_lightning.callbacks.run_lock import RunLock
        from nl_lightning.callbacks.run_metadata import RunMetadata
        from nl_lightning.models.checkpoint_io import install
        from nl_lightning.track.backends import check_logging_callbacks, check_loggers

        check_loggers(self.trainer.loggers)
        check_logging_callbacks(self.trainer)
        install(self.trainer)
        # Every `nl-lightning fit` locks its run folder, records its metadata and draws curves.png
        # at the end, whether or not the config lists these callbacks.
        for callback in (RunLock, LastCheckpoint, RunMetadata, CurvesCallback):
            if not any(isinstance(cb, callback) for cb in self.trainer.callbacks):
                self.trainer.callbacks.append(callback())


#: Loggers that create ``<save_dir>/<name>/version_<N>/`` (a folder ``serve`` would list as a version).
_VERSIONED_LOGGERS = ("TensorBoardLogger", "CSVLogger")


def _place_evaluation_logs(section: Any, subcommand: str | None) -> None:
    """``validate`` / ``test`` / ``predict`` log beside what they evaluate, not as a new version of the
    run (a ``version_N`` without checkpoints, which ``serve`` would list and fail to load): into
    ``<run>/<subcommand>/`` of the checkpoint's run, else ``<save_dir>/<name>-<subcommand>/``."""
    from nl_lightning.models.runs import run_of_checkpoint

    if subcommand not in ("validate", "test", "predict"):
        return
    loggers = (section.get("trainer") or {}).get("logger")
    run = run_of_checkpoint(section.get("ckpt_path"))
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = logger.get("init_args") if hasattr(logger, "get") else None
        if init_args is None or not str(logger.get("class_path", "")).endswith(_VERSIONED_LOGGERS):
            continue
        if run is not None:
            init_args["save_dir"], init_args["name"] = str(run), subcommand
        else:
            init_args["name"] = f"{init_args.get('name') or 'lightning_logs'}-{subcommand}"


def _pass_trust(section: Any) -> None:
    """``--trust`` reaches a model that loads checkpoints itself (``Predictor(trust=...)``)."""
    trust = section.get("trust")
    init_args = (section.get("model") or {}).get("init_args") if hasattr(section.get("model"), "get") else None
    if trust and init_args is not None and "trust" in init_args:
        init_args["trust"] = list(dict.fromkeys([*(init_args["trust"] or []), *trust]))


def build_cli(args: list[str] | None = None, run: bool = True, **kwargs: Any) -> NLLightningCLI:
    return NLLightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_class=NLArgumentParser,
        args=args,
        run=run,
        **kwargs,
    )


def main(args: list[str] | None = None) -> int:
    """Run a subcommand. A user error (``USER_ERRORS``) prints one line, the message and the fix,
    and exits 1; anything else is a bug in nl_lightning: its traceback and a line asking for a
    report. ``--debug`` (anywhere) raises every error as it is, with its traceback."""
    from nl_lightning._noise import quiet_third_party

    quiet_third_party()
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
        args = argv
        sys.argv = [sys.argv[0], *argv]
    try:
        return _dispatch(argv, args)
    except KeyboardInterrupt:
        print("nl-lightning: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        user_error = _user_error(err)
        if user_error is not None:
            print(f"nl-lightning: error: {_message(user_error)}", file=sys.stderr)
        else:
            traceback.print_exc()
            print(bug_line(), file=sys.stderr)
        return 1


def _dispatch(argv: list[str], args: list[str] | None) -> int:
    if argv and argv[0] in EXTRA_COMMANDS:
        module_name, _, func = EXTRA_COMMANDS[argv[0]].partition(":")
        return int(getattr(importlib.import_module(module_name), func)(argv[1:]) or 0)
    if argv and argv[0] in ("-h", "--help"):
        print(f"Extra subcommands: {', '.join(EXTRA_COMMANDS)} (each takes --help). "
              "Add --debug to see the traceback of an error.\n")
    build_cli(args)  # None: LightningCLI reads sys.argv itself (passing both makes it warn)
    return 0


#: Errors shown as one line: ours (``nl_lightning.errors.NLUserError``), jsonargparse's parse errors,
#: and Lightning's ``MisconfigurationException``, which Lightning raises for Trainer flags, strategies
#: and accelerators that the config asks for and this machine or model cannot provide (a user's
#: choice, whose message names it). Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (NLUserError, ArgumentError, MisconfigurationException)


def _user_error(err: BaseException) -> BaseException | None:
    """The innermost user error in ``err``'s chain of causes, or None (a bug). jsonargparse re-raises
    what a class's ``__init__`` raised as ``ValueError(...) from err``; the cause is what to show."""
    found, outer = None, err
    while err is not None:
        if isinstance(err, USER_ERRORS):
            found = err
        err = err.__cause__
    return found if found is not None else wrapped_user_error(outer)


def bug_line() -> str:
    """What ``nl-lightning`` prints after the traceback of an error that is not a user error."""
    import torch

    from nl_lightning import __version__

    return (f"nl-lightning: this is a bug in nl_lightning, please report it to the nl_lightning issue tracker "
            f"with the traceback above, the command you ran and these versions: nl_lightning {__version__}, "
            f"lightning {L.__version__}, torch {torch.__version__}.")


def _message(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = parse_error_summary(str(text)) or type(err).__name__
    return text if type(err).__module__.startswith("nl_lightning") else f"{type(err).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
