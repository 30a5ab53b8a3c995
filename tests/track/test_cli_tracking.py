"""The tracking switch from YAML: every configs/track fragment composes with a fit config; a run with
all three backends is read back from TensorBoard files, the MLflow SQLite store and the W&B offline
run; bad settings fail before the first step with the setting and the fix in the message."""

from __future__ import annotations

import re
import shutil
import socket
import warnings
from pathlib import Path

import pytest
import yaml

from nl_lightning import _imports
from nl_lightning.cli import build_cli, main
from nl_lightning.track import TrackingSetupError
from tracking_utils import mlflow_uri
from wandb_records import history

REPO = Path(__file__).resolve().parents[2]
CHAR_LM, CLASSIFIER = REPO / "configs" / "char_lm.yaml", REPO / "configs" / "classifier.yaml"
TRACK = REPO / "configs" / "track"
TINY = ["--model.init_args.config.n_layers=1", "--model.init_args.config.d_model=32",
        "--model.init_args.config.n_heads=2", "--model.init_args.config.max_seq_len=32",
        "--data.init_args.seq_len=32", "--data.init_args.batch_size=16", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=2"]
EXPECTED_LOGGERS = {
    "tensorboard": [("TensorBoardLogger", "char_lm")],
    "csv": [("CSVLogger", "char_lm")],
    "mlflow": [("CSVLogger", "char_lm"), ("MLFlowLogger", "char_lm")],
    "wandb": [("CSVLogger", "char_lm"), ("WandbLogger", "char_lm")],
    "all": [("TensorBoardLogger", "char_lm"), ("MLFlowLogger", "char_lm"), ("WandbLogger", "char_lm")],
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # fragments write under runs/ in the working directory
    mlflow_uri(tmp_path / "runs")  # runs/mlflow.db: an already-migrated empty store (saves seconds per test)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    monkeypatch.setenv("WANDB_SILENT", "true")


def _name(logger) -> str:
    return {"MLFlowLogger": "_experiment_name", "WandbLogger": "_project"}.get(type(logger).__name__, "name")


@pytest.mark.parametrize("backend", sorted(EXPECTED_LOGGERS))
def test_each_backend_fragment_composes_with_a_fit_config(backend, tmp_path):
    cli = build_cli(["--config", str(CHAR_LM), "--config", str(TRACK / f"{backend}.yaml")], run=False)
    loggers = [(type(lg).__name__, getattr(lg, _name(lg))) for lg in cli.trainer.loggers]
    assert loggers == EXPECTED_LOGGERS[backend]
    assert Path(cli.trainer.loggers[0].log_dir) == Path("runs/char_lm/version_0")  # the run folder layout
    for logger in cli.trainer.loggers:
        if type(logger).__name__ == "MLFlowLogger":
            assert logger._tracking_uri == "sqlite:///runs/mlflow.db"
        if type(logger).__name__ == "WandbLogger":
            assert logger._offline  # W&B offline mode: nothing reaches the network


def test_monitor_fragments_append_to_the_shipped_callbacks():
    cli = build_cli(["--config", str(CLASSIFIER), "--config", str(TRACK / "monitors.yaml"),
                     "--config", str(TRACK / "confusion_matrix.yaml"), "--config", str(TRACK / "registry.yaml")],
                    run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    shipped = [c["class_path"].rsplit(".", 1)[-1] for c in yaml.safe_load(CLASSIFIER.read_text())["trainer"]["callbacks"]]
    added = ["GradientMonitor", "HistogramMonitor", "DeviceStatsMonitor", "TaskThroughputMonitor", "RunMetadata",
             "CurvesCallback", "ConfusionMatrixMonitor", "ModelRegistryCallback"]
    assert all(n in names for n in shipped + added)


def test_all_backends_and_monitors_read_back(tmp_path):
    histograms = tmp_path / "histograms.yaml"
    histograms.write_text(yaml.safe_dump({"trainer": {"callbacks+": [
        {"class_path": "nl_lightning.callbacks.HistogramMonitor", "init_args": {"every_n_steps": 4}}]}}))
    main(["fit", "--config", str(CHAR_LM), "--config", str(TRACK / "all.yaml"), "--config", str(TRACK / "monitors.yaml"),
          "--config", str(histograms), *TINY, "--trainer.max_steps=8", "--trainer.val_check_interval=4",
          "--trainer.log_every_n_steps=2"])
    run_dir = tmp_path / "runs" / "char_lm" / "version_0"
    assert {"curves.png", "config.yaml", "run_metadata.json"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert scalars["train/loss"] == scalars["grad/norm"] == [1, 3, 5, 7]
    assert scalars["val/loss"] == [3, 7]
    # throughput counters (rates need the 20-batch window: tests/callbacks/test_throughput.py), system stats, LR
    assert {"train/lengths", "train/samples", "DeviceStatsMonitor.on_train_batch_end/cpu_percent",
            "lr-AdamW/pg1"} <= set(scalars)
    assert "params/model.lm_head.weight" in acc.Tags()["histograms"]
    assert [e.step for e in acc.Histograms("grads/model.lm_head.weight")] == [3, 7]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///runs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("char_lm").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 3, 5, 7]
    assert "params/model.lm_head.weight/mean" in run.data.metrics  # MLflow's histogram fallback
    assert run.data.params["run/seed"] == "42"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "run")} == {"run/run_metadata.json", "run/config.yaml"}
    tb_loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    for m in client.get_metric_history(run.info.run_id, "train/loss"):
        assert m.value == pytest.approx(tb_loss[m.step], rel=1e-6)

    import wandb

    # What the end of the `nl-lightning` process does (wandb's atexit hook): finish the run, then
    # wait for W&B's service process to exit. wandb.finish() alone returns before that process has
    # written the run's last records to the offline file (measured: 0 to 78 of 80 rows at times).
    wandb.finish()
    wandb.teardown()
    (wandb_run,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    rows = history(wandb_run)
    assert [r["trainer/global_step"] for r in rows if "train/loss" in r] == [1, 3, 5, 7]
    assert [r["train/loss"] for r in rows if "train/loss" in r] == pytest.approx([tb_loss[s] for s in (1, 3, 5, 7)], rel=1e-6)
    hist_rows = [r for r in rows if "grads/model.lm_head.weight/_type" in r]  # W&B stores a histogram nested
    assert [r["trainer/global_step"] for r in hist_rows] == [3, 7]
    assert {r["grads/model.lm_head.weight/_type"] for r in hist_rows} == {"histogram"}
    assert sum(hist_rows[0]["params/model.lm_head.weight/values"]) == 256 * 32  # every weight counted once


GRAPH_RUNS = {
    "lm": (CHAR_LM, ["--data.init_args.seq_len=32"], "runs/char_lm/version_0", "TransformerLM/CausalLM[model]",
           [1, 32, 256]),
    "classifier": (CLASSIFIER, ["--data.init_args.num_samples=64"], "runs/classifier/version_0",
                   "TransformerClassifier/SequenceClassifier[model]", [1, 3]),
}


@pytest.mark.parametrize("task", sorted(GRAPH_RUNS))
def test_tensorboard_fragment_writes_the_model_graph(task, tmp_path):
    """configs/track/tensorboard.yaml sets log_graph: the traced network (TaskModule.example_input_array:
    one sample at the model's length) is in the event file, every block of it, input to output."""
    config, data, folder, root, out_shape = GRAPH_RUNS[task]
    model = ["--model.init_args.config.n_layers=2", "--model.init_args.config.d_model=32",
             "--model.init_args.config.n_heads=2", "--model.init_args.config.max_seq_len=32"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--config", str(config), "--config", str(TRACK / "tensorboard.yaml"), *model, *data,
                     "--trainer.max_steps=1", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                     "--trainer.enable_model_summary=false"]) == 0
    import torch

    # drawn quietly: no "Could not log computational graph", no TracerWarning about our shape checks
    assert not [str(w.message) for w in caught if "graph" in str(w.message) or w.category is torch.jit.TracerWarning]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / folder))
    acc.Reload()
    assert acc.Tags()["graph"]
    nodes = {node.name: node for node in acc.Graph().node}
    shape = lambda node: [d.size for d in node.attr["_output_shapes"].list.shape[0].dim]  # noqa: E731
    (inputs,) = [n for name, n in nodes.items() if name.startswith("input/")]
    (output,) = [n for name, n in nodes.items() if name.startswith("output/")]
    assert shape(inputs)[:2] == [1, 32] and shape(output) == out_shape
    assert output.input[0].startswith(root)
    blocks = {name.split("TransformerBlock[")[1].split("]")[0] for name in nodes if "TransformerBlock[" in name}
    assert blocks == {"0", "1"}


def _error(capsys, args: list[str]) -> str:
    """``nl-lightning ARGS`` fails with exit code 1 and one line on stderr: that line."""
    assert main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("nl-lightning: error: ")
    return lines[-1]


def test_unknown_backend_is_named_with_the_choices(capsys):
    line = _error(capsys, ["fit", "--config", str(CHAR_LM), "--config", str(TRACK / "mlfow.yaml")])
    assert re.search(r"Unknown tracking backend 'mlfow' \(--config .*track/mlfow.yaml\)\. "
                     r"Choose one of tensorboard, csv, mlflow, wandb, all", line)
    with pytest.raises(TrackingSetupError, match="Monitor fragments there: confusion_matrix, monitors, registry"):
        main(["fit", "--config", str(CHAR_LM), "--config", str(TRACK / "mlfow.yaml"), "--debug"])


def test_unwritable_log_dir_fails_before_training(tmp_path, capsys):
    shutil.rmtree("runs")
    Path("runs").write_text("a file where the run folder should go")
    line = _error(capsys, ["fit", "--config", str(CHAR_LM), "--config", str(TRACK / "tensorboard.yaml"), *TINY])
    assert re.search(r"trainer.logger\[0\] TensorBoardLogger save_dir='runs/char_lm' is not writable .*"
                     r"Point trainer.logger\[0\] TensorBoardLogger save_dir at a folder you can write to", line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing written, no step taken


def test_unreachable_mlflow_server_fails_before_training(tmp_path, capsys):
    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = yaml.safe_load((TRACK / "mlflow.yaml").read_text())
    remote["trainer"]["logger"][1]["init_args"]["tracking_uri"] = f"http://127.0.0.1:{port}"
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(remote))
    line = _error(capsys, ["fit", "--config", str(CHAR_LM), "--config", str(tmp_path / "remote.yaml"), *TINY])
    assert re.search(rf"trainer.logger MLFlowLogger tracking_uri='http://127.0.0.1:{port}' cannot be reached .*"
                     r"Start the server .* or track locally with tracking_uri: sqlite:///runs/mlflow.db", line)
    assert not list(tmp_path.glob("runs/char_lm/*/checkpoints"))


def test_missing_track_extra_names_the_install(monkeypatch):
    monkeypatch.setattr(_imports, "TENSORBOARD_AVAILABLE", False)
    with pytest.raises(ModuleNotFoundError, match=r"trainer.logger TensorBoardLogger needs the `tensorboard` package.*"
                                                   r"pip install 'nl-lightning\[track\]'"):
        build_cli(["--config", str(CHAR_LM)], run=False)
