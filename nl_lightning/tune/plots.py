"""Study plots with Optuna's own ``optuna.visualization``: PNG through its matplotlib backend, HTML
through plotly (when installed; the HTML files share one ``plotly.min.js`` beside them, so they open
offline).

Plots: optimization history, parameter importances, parallel coordinates, intermediate values
(pruning curves) and, with several objectives, the Pareto front. A plot the study cannot support
yet (importances need two finished trials) is skipped with the reason, never fatal.
"""

from __future__ import annotations

import warnings
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import optuna

from nl_lightning._io import atomic_output, save_figure
from nl_lightning.tune.config import TuneConfig

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
