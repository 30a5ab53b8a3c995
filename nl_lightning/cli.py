"""``nl-lightning``: LightningCLI (fit / validate / test / predict) plus nl_lightning's own subcommands.

Models and DataModules are chosen by ``class_path`` (subclass mode), so any LightningModule or
LightningDataModule, ours or the user's, works from YAML. Extra subcommands (``generate``,
``export``, ``profile``, ...) live in their own modules and are dispatched by name below.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI

# name -> "module:function"; each function takes argv (list[str]) and returns an exit code.
EXTRA_COMMANDS: dict[str, str] = {
    "generate": "nl_lightning.commands.generate:main",
    "export": "nl_lightning.commands.export:main",
    "profile": "nl_lightning.commands.profile:main",
    "serve": "nl_lightning.commands.serve:main",
    "tune": "nl_lightning.commands.tune:main",
    "lr-find": "nl_lightning.commands.lr_find:main",
    "plot": "nl_lightning.commands.plot:main",
}


class NLLightningCLI(LightningCLI):
    """LightningCLI with nl_lightning's defaults; see ``configs/`` for complete examples."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """An unknown ``--config configs/track/<backend>.yaml`` is named as a backend, not a missing file."""
        from nl_lightning.track.cli_config import check_track_fragments

        check_track_fragments(sys.argv[1:] if args is None else args if isinstance(args, list) else [])
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """Tracking: logger packages present, fragment loggers named after the run (``track/cli_config.py``)."""
        from nl_lightning.track.cli_config import prepare_loggers

        prepare_loggers(self.config[self.subcommand] if self.subcommand else self.config)

    def before_fit(self) -> None:
        """Check every logger's folder / tracking URI before the first step (``track.check_loggers``)."""
        from nl_lightning.track.backends import check_loggers

        check_loggers(self.trainer.loggers)


def build_cli(args: list[str] | None = None, run: bool = True, **kwargs: Any) -> NLLightningCLI:
    return NLLightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        **kwargs,
    )


def main(args: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        module_name, _, func = EXTRA_COMMANDS[argv[0]].partition(":")
        return int(getattr(importlib.import_module(module_name), func)(argv[1:]) or 0)
    if argv and argv[0] in ("-h", "--help"):
        print(f"Extra subcommands: {', '.join(EXTRA_COMMANDS)} (each takes --help).\n")
    build_cli(args)  # None: LightningCLI reads sys.argv itself (passing both makes it warn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
