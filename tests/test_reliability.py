"""Every bad input the CLI gets -> one line naming the problem and the fix, and an exit code.

The cases below are the corpus docs/reliability.md shows; this test runs each one through
``nl-lightning`` and renders that table. The committed file must equal what the run gives
(``NL_UPDATE_DOCS=1 pytest tests/test_reliability.py`` rewrites it), so the doc never drifts
from what users see.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from nl_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
CLASSIFIER = str(REPO / "configs" / "classifier.yaml")
QUICK = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
         "--trainer.enable_progress_bar=false", "--data.init_args.num_samples=256"]


@dataclass
class Case:
    what: str
    make: Callable[[Path, dict], list[str]]  # builds the input in tmp, returns the argv
    expect: str  # regex the one line must match
    code: int


def _ckpt_variant(tmp: Path, good: dict, name: str, edit: Callable[[dict], None]) -> str:
    checkpoint = torch.load(good["classifier"], weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, tmp / name)
    return str(tmp / name)


def _naming(tmp: Path, good: dict, name: str, class_path: str) -> str:
    """The classifier checkpoint, saying it was written by ``class_path``."""
    return _ckpt_variant(tmp, good, name, lambda c: c["hyper_parameters"].update(_class_path=class_path))


def _bytes(tmp: Path, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def _h5(tmp: Path, x: np.ndarray, labels: np.ndarray | None = None) -> str:
    import h5py

    with h5py.File(tmp / "train.h5", "w") as f:
        f["x"], f["y"] = x, np.zeros(len(x), dtype=np.int64) if labels is None else labels
    return str(tmp / "train.h5")


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def _npy_dir(tmp: Path, cut: bool) -> str:
    folder = _mkdir(tmp / "arrays")
    np.save(folder / "x.npy", np.ones((16, 16, 8), np.float32))
    np.save(folder / "y.npy", np.zeros(16, np.int64))
    if cut:
        data = (folder / "x.npy").read_bytes()
        (folder / "x.npy").write_bytes(data[: len(data) // 2])
    return str(folder)


def _tune(tmp: Path, *args: str, metric: str = "val/loss") -> list[str]:
    fit = yaml.safe_load(Path(CLASSIFIER).read_text())
    fit["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1, enable_model_summary=False)
    fit["data"]["init_args"]["num_samples"] = 256
    (tmp / "fit.yaml").write_text(yaml.safe_dump(fit))
    tune = {"fit_config": str(tmp / "fit.yaml"), "metrics": {metric: "minimize"}, "n_trials": 1, "launcher": "inline",
            "plots": False, "output_dir": str(tmp / "study"),
            "space": {"model.init_args.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}
    (tmp / "tune.yaml").write_text(yaml.safe_dump(tune))
    return ["tune", "--config", str(tmp / "tune.yaml"), *args]


def _file_config(tmp: Path, path: str, **extra) -> list[str]:
    data = yaml.safe_load((REPO / "configs" / "classifier_hdf5.yaml").read_text())
    data["data"]["init_args"].update({"train_path": path, **extra})
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(data))
    return ["fit", "--config", str(tmp / "cfg.yaml"), "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]


CASES = [
    # Checkpoints given to commands
    Case("checkpoint file that does not exist", lambda t, g: ["generate", "--ckpt_path", str(t / "nope.ckpt")],
         r"Checkpoint not found: .*nope\.ckpt\. Pass the \.ckpt written by", 1),
    Case("empty (0-byte) checkpoint", lambda t, g: ["generate", "--ckpt_path", _bytes(t, "empty.ckpt", b"")],
         r"empty\.ckpt is empty \(0 bytes\): its save was interrupted", 1),
    Case("random bytes named .ckpt", lambda t, g: ["generate", "--ckpt_path", _bytes(t, "noise.ckpt", b"\x07" * 64)],
         r"noise\.ckpt is not a PyTorch checkpoint: it is neither a zip archive", 1),
    Case("truncated checkpoint", lambda t, g: ["generate", "--ckpt_path", _bytes(t, "cut.ckpt", Path(g["lm"]).read_bytes()[:5000])],
         r"cut\.ckpt is truncated or corrupt and cannot be read", 1),
    Case("checkpoint holding a pickled object",
         lambda t, g: ["generate", "--ckpt_path", _save(t / "obj.ckpt", {"state_dict": {}, "x": _Payload()})],
         r"Refusing to load .*obj\.ckpt: it holds a pickled Python object \(print\), not only tensors", 1),
    Case("folder without checkpoints", lambda t, g: ["generate", "--ckpt_path", str(_mkdir(t / "empty_run"))],
         r"empty_run is a folder with no checkpoint in it", 1),
    Case("sharded (FSDP2) checkpoint folder", lambda t, g: ["generate", "--ckpt_path", _dcp(t)],
         r"sharded torch\.distributed\.checkpoint folder .*nl-lightning consolidate .*sharded\.ckpt --output", 1),
    Case("a bare state dict, not a Lightning checkpoint",
         lambda t, g: ["generate", "--ckpt_path", _save(t / "bare.pt", {"weight": torch.zeros(2)})],
         r"bare\.pt is not a Lightning checkpoint \(no 'state_dict'\)", 1),
    Case("crafted class path in a checkpoint (write_json)",
         lambda t, g: ["export", "--ckpt_path", _naming(t, g, "crafted.ckpt", "nl_lightning._io.write_json")],
         r"names the model class 'nl_lightning\._io\.write_json', which is not on nl_lightning's allow-list", 1),
    Case("an LM checkpoint given to a classifier config",
         lambda t, g: ["fit", "--config", CLASSIFIER, "--ckpt_path", g["lm"], *QUICK],
         r"holds a .*TransformerLM but the config's model is .*TransformerClassifier", 1),
    Case("resume with a different architecture",
         lambda t, g: ["fit", "--config", CLASSIFIER, "--ckpt_path", g["classifier"], "--model.init_args.config.d_model=32", *QUICK],
         r"trained with a different architecture than the config \(config\.d_model: config 32 vs checkpoint 64\)", 1),
    Case("resume from weights without training state",
         lambda t, g: ["fit", "--config", CLASSIFIER, "--ckpt_path", _ckpt_variant(t, g, "weights.ckpt", lambda c: c.pop("pytorch-lightning_version")), *QUICK],
         r"no Lightning training state \('pytorch-lightning_version' is missing\)", 1),
    # Config values
    Case("unknown config key", lambda t, g: ["fit", "--config", CLASSIFIER, "--model.init_args.config.n_layerz=3"],
         r"model\.config: (Option 'n_layerz' is not accepted|Unrecognized arguments: --n_layerz=3)", 2),  # new / old jsonargparse
    Case("invalid value", lambda t, g: ["fit", "--config", CLASSIFIER, "--model.init_args.config.n_kv_heads=3"],
         r"TransformerConfig\.n_kv_heads=3 must divide n_heads=4; use one of \[1, 2, 4\]", 1),
    Case("value outside the choices", lambda t, g: ["fit", "--config", CLASSIFIER, "--model.init_args.pooling=max"],
         r"model\.pooling: (Expected a typing\.Literal\['mean', 'cls', 'attention', 'gem', 'pooler'\]\. Got value: max|"
         r"Cannot take a Union of no types)", 2),  # the second: jsonargparse < 4.42
    Case("config file that does not exist", lambda t, g: ["fit", "--config", str(t / "nope.yaml")],
         r"config: File does not exist: .*nope\.yaml", 2),
    Case("misspelled trainer option", lambda t, g: ["fit", "--config", CLASSIFIER, "--trainer.max_stepz=3"],
         r"(?i:unrecognized) arguments: --trainer\.max_stepz=3", 2),
    # Data files
    Case("training file that does not exist", lambda t, g: _file_config(t, str(t / "missing.h5")),
         r"missing\.h5", 1),
    Case("folder named like an HDF5 file", lambda t, g: _file_config(t, str(_mkdir(t / "data.h5"))),
         r"data\.h5' is a folder, but its name says hdf5 file", 1),
    Case("random bytes named .h5", lambda t, g: _file_config(t, _bytes(t, "junk.h5", b"\x01" * 4096)),
         r"junk\.h5", 1),
    Case("NaN in the features (on_bad: raise)",
         lambda t, g: _file_config(t, _h5(t, np.where(np.arange(16 * 16 * 8).reshape(16, 16, 8) == 37, np.nan, 1.0).astype(np.float32))),
         r"train\.h5.* row 0.*NaN", 1),
    Case("wrong feature key", lambda t, g: _file_config(t, _h5(t, np.ones((16, 16, 8), np.float32)), features="/nope"),
         r"'/nope' not found in .*train\.h5", 1),
    # Pretrained model folders
    Case("model folder without config.json", lambda t, g: ["convert", _model_folder(t, drop="config.json"), "--output", str(t / "m.ckpt")],
         r"has no config\.json, so its architecture is unknown .* Copy the model's config\.json next to its weights", 1),
    Case("model type nl_lightning does not compute",
         lambda t, g: ["convert", _model_folder(t, model_type="mixtral"), "--output", str(t / "m.ckpt")],
         r"config\.json: model_type='mixtral' is not supported; supported model types are \['bert', 'gpt2', 'llama'", 1),
    Case("truncated model.safetensors", lambda t, g: ["convert", _model_folder(t, cut=True), "--output", str(t / "m.ckpt")],
         r"model\.safetensors is truncated or corrupt: .* Download or copy the file again", 1),
    Case("labels beyond num_classes (before the model summary)",
         lambda t, g: _file_config(t, _h5(t, np.ones((20, 16, 8), np.float32), labels=np.arange(20) % 10)),
         r"The data's labels \('.*train\.h5' dataset '/y'\) range over 0\.\.9, but the model has num_classes=3 .*"
         r"Set --model\.init_args\.num_classes=10\.", 1),
    Case("a FIFO as the data file", lambda t, g: _file_config(t, _fifo(t / "pipe.h5")),
         r"pipe\.h5' is not a regular file \(a pipe, socket or device\)", 1),
    Case("truncated .npy file", lambda t, g: _file_config(t, _npy_dir(t, cut=True), features="x", targets="y"),
         r"x\.npy' is truncated: its header says \(16, 16, 8\) float32 .* but the file has", 1),
    # Tracking, tuning and the LR finder
    Case("logger off with a LearningRateMonitor", lambda t, g: ["fit", "--config", CLASSIFIER, "--trainer.logger=false", *QUICK],
         r"trainer\.logger is off, but trainer\.callbacks has LearningRateMonitor, which writes to a logger", 1),
    Case("malformed MLflow tracking_uri",
         lambda t, g: ["fit", "--config", CLASSIFIER, "--config", str(REPO / "configs/track/mlflow.yaml"),
                       "--trainer.logger.MLFlowLogger.tracking_uri=http//mlflow:5000", *QUICK],
         r"tracking_uri='http//mlflow:5000' cannot be used by MLflow: ", 1),
    Case("lr-find with --num_training=0", lambda t, g: ["lr-find", "--config", CLASSIFIER, "--num_training=0"],
         r"--num_training=0: the range test needs at least 2 steps", 1),
    Case("tune storage with an unknown scheme", lambda t, g: _tune(t, "--storage", "foo://db"),
         r"storage foo://db: 'foo' is not a database URL SQLAlchemy knows", 1),
    Case("tune storage: PostgreSQL not running",
         lambda t, g: _tune(t, "--storage", "postgresql://user:secret@127.0.0.1:9/db"),
         r"storage postgresql://user:\*\*\*@127\.0\.0\.1:9/db cannot be opened: .*Check that the server runs", 1),
    Case("tune metric the model never logs", lambda t, g: _tune(t, metric="val/accuracy"),
         r"The study optimizes 'val/accuracy', but the model logged no such validation metric", 1),
    # Checkpoints a command should not trust, or cannot use as asked
    Case("sharded checkpoint whose .metadata would run code (consolidate)", lambda t, g: ["consolidate", _crafted_dcp(t)],
         r"\.metadata names builtins\.print, which is not part of torch\.distributed\.checkpoint metadata", 1),
    Case("your own model class, not listed in trust",
         lambda t, g: ["export", "--ckpt_path", _naming(t, g, "mine.ckpt", "mypkg.models.MyModel")],
         r"'mypkg\.models\.MyModel', which is not on nl_lightning's allow-list.*trust: \[mypkg\.models\.MyModel\]", 1),
    Case("a model class defined in a script (__main__)",
         lambda t, g: ["export", "--ckpt_path", _naming(t, g, "script.ckpt", "__main__.MyModel")],
         r"'__main__\.MyModel', defined in the script that saved it, which no other process can import.*Move the class", 1),
    Case("static INT8 export of a checkpoint without its data",
         lambda t, g: ["export", "--ckpt_path", _ckpt_variant(t, g, "nodata.ckpt", lambda c: c.pop("datamodule_hyper_parameters")),
                       "--formats=[onnx,onnx_int8_static]"],
         r"nodata\.ckpt records no DataModule to calibrate static INT8 on.*--random_calibration=true", 1),
    Case("--ckpt_path best of a run that monitors nothing",
         lambda t, g: ["test", "--config", CLASSIFIER, "--ckpt_path", "best", f"--trainer.default_root_dir={_unmonitored_run(t, g)}",
                       *QUICK],
         r"--ckpt_path best: .*last\.ckpt records no monitored best checkpoint", 1),
    # Batch prediction
    Case("predict format that does not exist", lambda t, g: _predict(t, g, "--trainer.callbacks.init_args.format=csv"),
         r"format: (Expected a typing\.Literal\['parquet', 'npy', 'npz', 'jsonl'\]\. Got value: csv|"
         r"Cannot take a Union of no types)", 2),  # the second: jsonargparse < 4.42
    Case("prediction record that is not JSON", lambda t, g: _predict(t, g, records={"part-0-000-000000.npz.json": b'{"path'}),
         r"part-0-000-000000\.npz\.json is not a JSON record of nl_lightning's predictions", 1),
    Case("prediction record naming a file outside its folder",
         lambda t, g: _predict(t, g, records={"part-0-000-000000.npz.json": b'{"path": "../../etc/passwd"}'}),
         r"names the file '\.\./\.\./etc/passwd', not its own shard 'part-0-000-000000\.npz'", 1),
    Case("predict resumed into the folder of another model", lambda t, g: _predict_after_another_model(t, g),
         r"predictions holds predictions of another model \(torch .* then, torch .* now\): resuming would mix", 1),
    Case("predict input longer than the model takes",
         lambda t, g: _predict(t, g, f"--data.init_args.predict_path={_features(t, 20, 'long.npy')}"),
         r"20 steps; the model takes at most max_seq_len=16 \(input rows 0, 1, 2, 3, 4 \.\.\.\); the server answers 422", 1),
]


def _save(path: Path, obj) -> str:
    torch.save(obj, path)
    return str(path)


def _model_folder(tmp: Path, drop: str | None = None, model_type: str | None = None, cut: bool = False) -> str:
    """A tiny Hugging Face (Llama) folder written by save_pretrained, then damaged as asked."""
    from nl_lightning.models import TransformerConfig, TransformerLM

    folder = tmp / "model_folder"
    TransformerLM(TransformerConfig.from_preset("llama", n_layers=1, d_model=16, n_heads=2, n_kv_heads=1)).save_pretrained(folder)
    if drop:
        (folder / drop).unlink()
    if model_type:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    if cut:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    return str(folder)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


PREDICT = str(REPO / "configs" / "predict_files.yaml")


def _features(tmp: Path, steps: int = 16, name: str = "features.npy") -> str:
    """(24, steps, 8) features for the fit classifier (it takes 16 steps), saved as ``name``."""
    np.save(tmp / name, np.random.default_rng(0).standard_normal((24, steps, 8)).astype(np.float32))
    return str(tmp / name)


def _predict(tmp: Path, good: dict, *extra: str, ckpt: str | None = None, records: dict | None = None) -> list[str]:
    """`nl-lightning predict` of the fit classifier on (24, 16, 8) features into tmp/predictions."""
    if not (tmp / "features.npy").exists():
        _features(tmp)
    for name, data in (records or {}).items():
        _bytes(_mkdir(tmp / "predictions" / "_records"), name, data)
    return ["predict", "--config", PREDICT, f"--model.init_args.source={ckpt or good['classifier']}",
            "--data.init_args.predict_path=features.npy", "--data.init_args.batch_size=8",
            "--trainer.callbacks.init_args.rows_per_shard=8", "--trainer.enable_progress_bar=false", *extra]


def _predict_after_another_model(tmp: Path, good: dict) -> list[str]:
    assert main(_predict(tmp, good)) == 0
    (tmp / "predictions" / "manifest.json").unlink()  # as if the job had been killed
    other = _ckpt_variant(tmp, good, "other.ckpt", lambda c: c["state_dict"].update(
        {k: v + 1.0 for k, v in c["state_dict"].items() if v.is_floating_point() and v.dim() == 2}))
    return _predict(tmp, good, ckpt=other)


def _crafted_dcp(tmp: Path) -> str:
    import pickle

    folder = _mkdir(tmp / "crafted.ckpt")
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload()))
    return str(folder)


def _unmonitored_run(tmp: Path, good: dict) -> str:
    """A run whose last.ckpt records no monitored ModelCheckpoint."""
    checkpoint = torch.load(good["classifier"], weights_only=True)
    checkpoint["callbacks"] = {}
    _mkdir(tmp / "run" / "version_0" / "checkpoints")
    torch.save(checkpoint, tmp / "run" / "version_0" / "checkpoints" / "last.ckpt")
    return str(tmp / "run")


def _dcp(tmp: Path) -> str:
    folder = _mkdir(tmp / "sharded.ckpt")
    (folder / ".metadata").write_bytes(b"\x80")
    return str(folder)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """A classifier checkpoint from `nl-lightning fit`, and a small LM checkpoint."""
    import lightning as L

    from nl_lightning.models import TransformerConfig, TransformerLM

    tmp = tmp_path_factory.mktemp("good")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert main(["fit", "--config", CLASSIFIER, *QUICK]) == 0
    finally:
        os.chdir(cwd)
    lm = TransformerLM(TransformerConfig(n_layers=1, d_model=16, n_heads=2, max_seq_len=16))
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(lm)
    trainer.save_checkpoint(tmp / "lm.ckpt")
    return {"classifier": str(tmp / "runs/classifier/version_0/checkpoints/last.ckpt"), "lm": str(tmp / "lm.ckpt")}


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("nl-lightning: error:")], err


_results: dict[str, tuple[str, int]] = {}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.what)
def test_bad_input_gives_one_clear_line(case: Case, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    code, lines, err = _run(case.make(tmp_path, good), capsys)
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one error line, got:\n{err[-3000:]}"
    line = lines[0].removeprefix("nl-lightning: error: ")
    assert re.search(case.expect, line), line
    assert code == case.code
    for folder in (tmp_path, Path(good["lm"]).parent):
        line = line.replace(str(folder), "<tmp>")
    line = re.sub(r"sha256 [0-9a-f]{12}", "sha256 <digest>", line)  # of files that hold their run's paths
    _results[case.what] = (line.replace(str(REPO), "<repo>"), code)


def _bug(*args, **kwargs):
    raise TypeError("an internal bug")


@pytest.mark.parametrize(("core", "argv"), [
    ("nl_lightning.models.transformer.SequenceClassifier.forward", ["fit", "--config", CLASSIFIER, *QUICK]),
    ("nl_lightning.commands.generate.find_checkpoint", ["generate", "--ckpt_path", "runs/x"]),
], ids=["fit", "generate"])
def test_a_bug_prints_its_traceback_and_asks_for_a_report(core, argv, tmp_path, capsys, monkeypatch):
    """A core that raises TypeError (a bug, not bad input): traceback, then the bug line, exit 1."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    monkeypatch.setattr(core, _bug)
    code, lines, err = _run(argv, capsys)
    assert code == 1 and not lines
    assert "Traceback (most recent call last)" in err and "TypeError: an internal bug" in err
    assert err.rstrip().splitlines()[-1].startswith("nl-lightning: this is a bug in nl_lightning, please report it")
    assert err.index("TypeError: an internal bug") < err.index("this is a bug in nl_lightning")


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("k"), AssertionError("invariant"), FileNotFoundError("f")])
def test_builtin_errors_are_bugs_not_user_errors(error, capsys, monkeypatch):
    """Only NLUserError (and parse / Lightning misconfiguration errors) are one line; a bare
    ValueError / KeyError / AssertionError raised anywhere is a bug and keeps its traceback."""
    def raise_it(argv, args):
        raise error

    monkeypatch.setattr("nl_lightning.cli._dispatch", raise_it)
    code, lines, err = _run(["fit"], capsys)
    assert code == 1 and not lines and "Traceback" in err and "this is a bug in nl_lightning" in err


def test_lightning_misconfiguration_is_one_line(capsys, monkeypatch):
    """Lightning raises MisconfigurationException for Trainer settings this machine or model cannot
    honour (``--trainer.accelerator=gpu`` without a GPU): the user's choice, so one line."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    def raise_it(argv, args):
        raise MisconfigurationException("No supported gpu backend found!")

    monkeypatch.setattr("nl_lightning.cli._dispatch", raise_it)
    code, lines, err = _run(["fit"], capsys)
    assert code == 1 and "Traceback" not in err
    assert lines == ["nl-lightning: error: MisconfigurationException: No supported gpu backend found!"]


def test_debug_raises_a_bug_as_it_is(monkeypatch):
    monkeypatch.setattr("nl_lightning.cli._dispatch", lambda argv, args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["fit", "--debug"])


def test_every_user_error_class_is_an_nl_user_error():
    """The error classes the package defines for bad input all derive from NLUserError (and keep
    the built-in base a Python caller catches)."""
    from nl_lightning.callbacks.grad_stats import NonFiniteGradientError
    from nl_lightning.callbacks.run_lock import RunDirInUseError
    from nl_lightning.data.readers.base import MissingKeyError
    from nl_lightning.data.validate import DataValidationError
    from nl_lightning.errors import NLUserError
    from nl_lightning.export.manifest import ManifestError
    from nl_lightning.export.parity import ParityError
    from nl_lightning.models.checkpoint import CheckpointError
    from nl_lightning.models.trust import UntrustedClassError
    from nl_lightning.serve.registry import VersionNotFoundError
    from nl_lightning.serve.rollout import RolloutError
    from nl_lightning.predict.manifest import ShardError
    from nl_lightning.track.backends import TrackingSetupError
    from nl_lightning.tune.objective import StudyConfigError
    from nl_lightning.tune.pruning import MetricNotLoggedError

    pairs = [(NonFiniteGradientError, FloatingPointError), (RunDirInUseError, FileExistsError), (MissingKeyError, KeyError),
             (DataValidationError, ValueError), (ManifestError, ValueError), (ParityError, AssertionError),
             (CheckpointError, ValueError), (UntrustedClassError, ValueError), (VersionNotFoundError, LookupError),
             (RolloutError, RuntimeError), (ShardError, ValueError), (TrackingSetupError, ValueError),
             (StudyConfigError, ValueError), (MetricNotLoggedError, ValueError)]
    for cls, builtin in pairs:
        assert issubclass(cls, NLUserError) and issubclass(cls, builtin), cls


def test_debug_shows_the_traceback(tmp_path):
    from nl_lightning.models import CheckpointError

    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        main(["generate", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--debug"])


def render(results: dict[str, tuple[str, int]]) -> str:
    rows = ["| bad input | what `nl-lightning` prints (one line, on stderr) | exit code |", "|---|---|---|"]
    for case in CASES:
        line, code = results[case.what]
        rows.append(f"| {case.what} | `{line.replace('|', '/')}` | {code} |")
    return "\n".join(rows) + "\n"


def test_docs_table_is_what_users_see():
    """Runs last in this file: the table in docs/reliability.md equals what the cases above printed."""
    if len(_results) != len(CASES):
        pytest.skip("runs only after every case above ran in the same session (run the whole file)")
    table = render(_results)
    text = DOC.read_text()
    start, end = "<!-- table:cli-errors -->\n", "<!-- /table:cli-errors -->"
    head, _, rest = text.partition(start)
    current, _, tail = rest.partition(end)
    if os.environ.get("NL_UPDATE_DOCS"):
        DOC.write_text(head + start + table + end + tail)
        return
    assert current == table, "docs/reliability.md is out of date: run NL_UPDATE_DOCS=1 pytest tests/test_reliability.py"
