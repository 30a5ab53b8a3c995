"""``nl-lightning consolidate``: a sharded (FSDP2) checkpoint folder -> one ordinary checkpoint file.

    nl-lightning consolidate runs/char_lm/version_0/checkpoints/last.ckpt --output last.consolidated.ckpt

The folder is untrusted input: its pickled ``.metadata`` is read with an allow-list of DCP's own
metadata classes and every value with ``weights_only=True``; anything else is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

from nl_lightning.models.consolidate import consolidate_dcp
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning consolidate", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("folder", type=str, help="The sharded checkpoint folder (it holds .metadata).")
    parser.add_argument("--output", type=Optional[str], default=None,
                        help="The file to write (default: <folder>.consolidated.ckpt).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output or f"{args.folder.rstrip('/')}.consolidated.ckpt")
    print(f"consolidated: {consolidate_dcp(args.folder, output)}")
    return 0
