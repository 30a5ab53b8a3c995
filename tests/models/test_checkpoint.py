"""Checkpoints are untrusted input: the allow-list, one accurate message per bad file, subclasses."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from nl_lightning.models import CheckpointError, TransformerClassifier, TransformerConfig, TransformerLM, load_checkpoint
from nl_lightning.models.checkpoint import read_checkpoint
from nl_lightning.models.trust import allow_class


def _small_lm() -> TransformerLM:
    return TransformerLM(TransformerConfig(n_layers=1, d_model=16, n_heads=2, max_seq_len=16))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    model = _small_lm()
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp / "lm.ckpt")
    return tmp / "lm.ckpt"


def _forge(saved, tmp_path, name: str, **changes) -> "os.PathLike":
    checkpoint = torch.load(saved, weights_only=True)
    for key, value in changes.items():
        if key == "class_path":
            checkpoint["hyper_parameters"]["_class_path"] = value
        else:
            checkpoint["hyper_parameters"][key] = value
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("class_path", [
    "nl_lightning._io.write_json",   # a function of ours that writes files
    "os.system",
    "subprocess.Popen",
    "nl_lightning.data.text.CharTextDataModule",  # a real class, but not a model
    "nl_lightning.models.../..",
])
def test_crafted_class_path_is_refused_before_anything_runs(saved, tmp_path, class_path):
    target = tmp_path / "pwned.json"
    forged = _forge(saved, tmp_path, "forged.ckpt", class_path=class_path, path=str(target), data={"x": 1})
    with pytest.raises(CheckpointError, match=rf"{class_path.replace('.', '[.]')}.*(allow-list|not a dotted class|not a TaskModule)"):
        load_checkpoint(forged)
    assert not target.exists()


def test_arguments_are_checked_against_the_signature(saved, tmp_path):
    forged = _forge(saved, tmp_path, "args.ckpt", callback="os.system")
    with pytest.raises(CheckpointError, match=r"stored arguments do not fit .*TransformerLM .*unexpected keyword argument 'callback'"):
        load_checkpoint(forged)


class MyClassifier(TransformerClassifier):
    """A user's subclass with an extra argument."""

    def __init__(self, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature


def test_user_subclass_checkpoints_load(tmp_path):
    model = MyClassifier(temperature=2.0, config=TransformerConfig(input_dim=3, n_layers=1, d_model=16, n_heads=2),
                         num_classes=2)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(model)
    path = tmp_path / "mine.ckpt"
    trainer.save_checkpoint(path)
    x = torch.randn(2, 4, 3)
    for loaded in (MyClassifier.load(path), TransformerClassifier.load(path), load_checkpoint(path, expected=MyClassifier)):
        assert type(loaded) is MyClassifier and loaded.temperature == 2.0
        torch.testing.assert_close(loaded(x), model.eval()(x))
    # Without the class, a bare load does not import it on the file's word; the message names the call.
    with pytest.raises(CheckpointError, match=r"test_checkpoint\.MyClassifier'.*not on nl_lightning's allow-list.*MyClassifier\.load\(path\)"):
        load_checkpoint(path)
    allow_class(MyClassifier)
    assert type(load_checkpoint(path)) is MyClassifier


def test_another_models_checkpoint_names_the_right_call(saved):
    with pytest.raises(CheckpointError, match=r"holds a .*TransformerLM, not a TransformerClassifier; load it with TransformerLM\.load\(path\)"):
        TransformerClassifier.load(saved)


# Each bad file gets its own accurate message (and never the handler's own crash).
def test_empty_file(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.ckpt is empty \(0 bytes\): its save was interrupted"):
        read_checkpoint(tmp_path / "empty.ckpt")


@pytest.mark.parametrize("content", [os.urandom(2048).replace(b"\x80", b"\x00").replace(b"PK", b"pk"), b"hello world\n"],
                         ids=["random", "text"])
def test_not_a_checkpoint_is_not_called_unsafe(tmp_path, content):
    path = tmp_path / "noise.ckpt"
    path.write_bytes(b"\x01" + content)
    with pytest.raises(CheckpointError, match=r"noise\.ckpt is not a PyTorch checkpoint: it is neither a zip archive") as err:
        read_checkpoint(path)
    assert "arbitrary code" not in str(err.value) and "weights_only=False" not in str(err.value)


def test_directory_is_named_a_folder(saved, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"run is a folder, not a checkpoint file and holds no checkpoint"):
        read_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(saved.read_bytes())
    with pytest.raises(CheckpointError, match=r"run is a folder, not a checkpoint file; the newest checkpoint in it is .*last\.ckpt"):
        read_checkpoint(tmp_path / "run")


def test_sharded_folder_says_how_to_consolidate(tmp_path):
    (tmp_path / "last.ckpt").mkdir()
    (tmp_path / "last.ckpt" / ".metadata").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"sharded torch\.distributed\.checkpoint folder .*nl-lightning consolidate .*last\.ckpt --output"):
        read_checkpoint(tmp_path / "last.ckpt")


def test_unreadable_file_is_a_permission_problem(saved, monkeypatch):
    """As root (CI) chmod cannot take read access away, so the OS's answer is simulated."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.open", denied)
    with pytest.raises(CheckpointError, match=r"lm\.ckpt cannot be read: permission denied\. Give your user read access"):
        read_checkpoint(saved)


def test_weights_without_training_state_cannot_resume(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": _small_lm().state_dict()}, path)
    assert read_checkpoint(path)["state_dict"]
    with pytest.raises(CheckpointError, match=r"no Lightning training state \('pytorch-lightning_version' is missing\)"):
        read_checkpoint(path, lightning=True)


def test_a_run_folder_loads_its_newest_last_checkpoint(saved, tmp_path):
    (tmp_path / "runs" / "lm" / "version_0" / "checkpoints").mkdir(parents=True)
    target = tmp_path / "runs" / "lm" / "version_0" / "checkpoints" / "last.ckpt"
    target.write_bytes(saved.read_bytes())
    model = TransformerLM.load(tmp_path / "runs" / "lm")
    torch.testing.assert_close(model.state_dict(), load_checkpoint(saved).state_dict())
