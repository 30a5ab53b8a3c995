"""Study plots with Optuna's own ``optuna.visualization``: PNG through its matplotlib backend, HTML
through plotly (when installed; the HTML files share one ``plotly.min.js`` beside them, so they open
offline).

Plots: optimization history, parameter importances, parallel coordinates, intermediate values
(pruning curves) and, with several objectives, the Pareto front. Parameters are labelled by the
last parts of their keys (``optimizer.lr``, not ``model.init_args.optimizer.lr``): Optuna writes the
full key on each axis, and long dotted keys overlap. A plot the study cannot support
yet (importances need two finished trials) is skipped with the reason, never fatal.
"""

from __future__ import annotations

import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from nl_lightning._io import atomic_output, save_figure
from nl_lightning.tune.config import TuneConfig
from nl_lightning.tune.progress import short_names

PLOTLY_AVAILABLE = find_spec("plotly") is not None
MATPLOTLIB_AVAILABLE = find_spec("matplotlib") is not None


def plot_calls(config: TuneConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """Plot name -> (function name in optuna.visualization, kwargs)."""
    first = config.objective_names[0]
    target: dict[str, Any] = {}
    if config.multi_objective:
        target = {"target": lambda t: t.values[0], "target_name": first}
    calls = {
        "optimization_history": ("plot_optimization_history", dict(target)),
        "param_importances": ("plot_param_importances", dict(target)),
        "parallel_coordinate": ("plot_parallel_coordinate", dict(target)),
    }
    if not config.multi_objective:
        calls["intermediate_values"] = ("plot_intermediate_values", {})
    else:
        calls["pareto_front"] = ("plot_pareto_front", {"target_names": config.objective_names})
    return calls


def save_plots(study: optuna.Study, config: TuneConfig, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write ``<name>.png`` and ``<name>.html`` into ``out_dir``; returns (files, skipped reasons)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    skipped: list[str] = []
    if not MATPLOTLIB_AVAILABLE and not PLOTLY_AVAILABLE:
        return files, ["plots need matplotlib or plotly: pip install 'nl-lightning[tune]'"]
    study = readable(study)
    for name, (func, kwargs) in plot_calls(config).items():
        for kind, available in (("png", MATPLOTLIB_AVAILABLE), ("html", PLOTLY_AVAILABLE)):
            if not available:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    files.append(_save(study, func, kwargs, out_dir / f"{name}.{kind}"))
            except Exception as err:  # a plot the study cannot support yet; the others still get written
                skipped.append(f"{name}.{kind}: {err}")
    return files, skipped


def readable(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study``'s finished trials with each parameter named by ``short_names``."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    names = short_names(list(dict.fromkeys(k for t in finished for k in t.params)))
    copy = optuna.create_study(directions=study.directions, study_name=study.study_name)
    copy.add_trials([
        create_trial(state=t.state, values=t.values if t.state == TrialState.COMPLETE else None,
                     params={names[k]: v for k, v in t.params.items()},
                     distributions={names[k]: d for k, d in t.distributions.items()},
                     user_attrs=t.user_attrs, intermediate_values=t.intermediate_values)
        for t in finished
    ])
    return copy


def _save(study: optuna.Study, func: str, kwargs: dict[str, Any], path: Path) -> Path:
    if path.suffix == ".html":
        fig = getattr(optuna.visualization, func)(study, **kwargs)
        with atomic_output(path, durable=False) as tmp:  # plotly.min.js is written beside it and moved too
            fig.write_html(str(tmp), include_plotlyjs="directory")
        return path
    import matplotlib.pyplot as plt

    result = getattr(optuna.visualization.matplotlib, func)(study, **kwargs)
    axes = result.flat[0] if hasattr(result, "flat") else result
    figure = axes.get_figure()
    save_figure(figure, path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
