"""``nl-lightning lr-find``: the learning-rate range test on a fit config (Lightning's ``Tuner.lr_find``).

    nl-lightning lr-find --config configs/char_lm.yaml
    nl-lightning lr-find --config configs/classifier.yaml --num_training 60 --output_dir runs/lr_find/clf

Every argument that is not one of the options below is a fit argument (``--config``,
``--trainer.*``, ``--model.*``, ``--data.*``), exactly as for ``nl-lightning fit``. Writes, into
``--output_dir`` (default runs/lr_find/<config name>): ``lr_find.png`` (loss vs rate, suggestion
marked), ``lr_find.json`` (the suggestion and the curve) and ``fit.yaml``: the full fit config with
the suggested rate set at ``--lr_key``, ready for ``nl-lightning fit --config``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

from jsonargparse import ArgumentParser

from nl_lightning.errors import ConfigError
from nl_lightning.tune.lr_find import DEFAULT_LR_KEY
from nl_lightning.commands.help import CommandHelpFormatter

OWN = ("min_lr", "max_lr", "num_training", "mode", "early_stop_threshold", "lr_key", "output_dir")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning lr-find", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--min_lr", type=float, default=1e-6)
    parser.add_argument("--max_lr", type=float, default=1.0)
    parser.add_argument("--num_training", type=int, default=100, help="Steps of the range test.")
    parser.add_argument("--mode", type=Literal["exponential", "linear"], default="exponential")
    parser.add_argument("--early_stop_threshold", type=Optional[float], default=4.0,
                        help="Stop once the loss exceeds this multiple of the best loss (null: never).")
    parser.add_argument("--lr_key", type=str, default=DEFAULT_LR_KEY, help="Fit-config key of the learning rate.")
    parser.add_argument("--output_dir", type=Optional[str], default=None, help="Default runs/lr_find/<config name>.")
    return parser


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our options, fit arguments): ``--name value`` and ``--name=value`` forms, ``-h``/``--help`` ours."""
    own, fit = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if arg in ("-h", "--help") or name in OWN:
            own.append(arg)
            if name in OWN and "=" not in arg and i + 1 < len(argv):
                own.append(argv[i + 1])
                i += 1
        else:
            fit.append(arg)
        i += 1
    return own, fit


def main(argv: list[str] | None = None) -> int:
    own, fit_args = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    if "--config" not in fit_args and not any(a.startswith("--config=") for a in fit_args):
        raise ConfigError("nl-lightning lr-find needs a fit config: --config configs/<name>.yaml (see --help).")
    from nl_lightning.tune.lr_find import find_lr

    config_path = fit_args[fit_args.index("--config") + 1] if "--config" in fit_args else \
        next(a.split("=", 1)[1] for a in fit_args if a.startswith("--config="))
    output_dir = Path(args.output_dir or Path("runs") / "lr_find" / Path(config_path).stem)
    result = find_lr(
        fit_args, output_dir, min_lr=args.min_lr, max_lr=args.max_lr, num_training=args.num_training, mode=args.mode,
        early_stop_threshold=args.early_stop_threshold, lr_key=args.lr_key,
    )
    print(f"suggested learning rate: {result['suggested_lr']:.4g}")
    for name in ("plot", "json", "fit_config"):
        print(f"  wrote {result[name]}")
    print(f"Train with it: nl-lightning fit --config {result['fit_config']}")
    return 0
