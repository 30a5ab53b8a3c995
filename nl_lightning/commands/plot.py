"""``nl-lightning plot RUN_DIR [RUN_DIR ...]``: draw a run's curves (training loss, validation metrics,
learning rate against the step) from what its loggers recorded; several runs are overlaid.

One run folder writes ``<run folder>/curves.png`` (what ``CurvesCallback`` writes at fit end); several
write ``--out`` (default ``curves.png`` in the current folder). ``runs/<name>`` means its newest
``version_N``.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.track.curves import plot_curves, read_scalars, resolve_run_dir
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning plot", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("run_dirs", type=str, nargs="+",
                        help="Run folders: runs/<name>/version_<N>, or runs/<name> for its newest version.")
    parser.add_argument("--out", type=str | None, default=None,
                        help="PNG to write (default: <run folder>/curves.png for one run, ./curves.png for several).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folders = [resolve_run_dir(p) for p in args.run_dirs]
    runs = {_label(folder, folders): read_scalars(folder) for folder in folders}
    out = Path(args.out) if args.out else (folders[0] / "curves.png" if len(folders) == 1 else Path("curves.png"))
    print(plot_curves(runs, out))
    return 0


def _label(folder: Path, folders: list[Path]) -> str:
    """``char_lm/version_3``; the full path when two runs would get the same label."""
    label = f"{folder.parent.name}/{folder.name}"
    same = sum(f"{f.parent.name}/{f.name}" == label for f in folders)
    return str(folder) if same > 1 else label
