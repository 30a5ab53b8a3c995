"""``nl-lightning tune``: Optuna search over any fit config's keys (see configs/tune/ and docs/tuning.md).

    nl-lightning tune --config configs/tune/classifier.yaml
    nl-lightning tune --config configs/tune/classifier.yaml --n_workers 2
    nl-lightning tune --config configs/tune/char_lm.yaml --storage postgresql://user@host/db

Re-running the same command resumes the study. At the end it prints the best trial(s) and writes
best.yaml (runnable with `nl-lightning fit --config`), trials.csv, summary.json and plots/ into
the study folder (runs/tune/<study_name> by default).
"""

from __future__ import annotations

import sys
from typing import Literal, Optional

from jsonargparse import ArgumentParser

from nl_lightning.commands.help import CommandHelpFormatter

# Flags that replace the tune config's top-level key of the same name when given.
OVERRIDABLE = (
    "fit_config", "n_trials", "timeout", "n_workers", "study_name", "output_dir", "storage", "launcher", "seed",
    "trial_timeout", "plots",
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning tune", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", type=str, required=True, help="Tune YAML: fit_config, space, metrics, ...")
    parser.add_argument("--fit_config", type=Optional[str], default=None, help="Another fit YAML to tune.")
    parser.add_argument("--n_trials", type=Optional[int], default=None, help="Trials in the whole study.")
    parser.add_argument("--timeout", type=Optional[float], default=None, help="Seconds to keep starting trials.")
    parser.add_argument("--n_workers", type=Optional[int], default=None, help="Worker processes on this machine.")
    parser.add_argument("--study_name", type=Optional[str], default=None)
    parser.add_argument("--output_dir", type=Optional[str], default=None, help="Default runs/tune/<study_name>.")
    parser.add_argument("--storage", type=Optional[str], default=None,
                        help="SQLAlchemy URL, e.g. postgresql://user:pass@host/db (default: SQLite in output_dir).")
    parser.add_argument("--launcher", type=Optional[Literal["auto", "forkserver", "subprocess", "inline"]], default=None)
    parser.add_argument("--seed", type=Optional[int], default=None)
    parser.add_argument("--trial_timeout", type=Optional[float], default=None, help="Kill a trial after this many seconds.")
    parser.add_argument("--plots", type=Optional[bool], default=None, help="Write PNG/HTML plots (default true).")
    parser.add_argument("--report_only", type=bool, default=False,
                        help="Only write the summary, best.yaml, trials.csv and plots of the stored study.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    import optuna

    from nl_lightning.tune.config import load_tune_config
    from nl_lightning.tune.study import tune

    overrides = {key: args[key] for key in OVERRIDABLE if args[key] is not None}
    config = load_tune_config(args.config, **overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from ProgressLine
    _, _, interrupted = tune(config, source=args.config, report_only=args.report_only,
                             out=lambda line: print(line, flush=True))
    return 130 if interrupted else 0
