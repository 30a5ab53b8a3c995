"""consolidate_dcp: a sharded checkpoint folder -> one file, without running code the folder names."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from nl_lightning.cli import main
from nl_lightning.models.checkpoint import CheckpointError, read_checkpoint
from nl_lightning.models.consolidate import consolidate_dcp, read_dcp_metadata


def _ran(marker: str) -> str:
    Path(marker).write_text("code from the checkpoint folder ran")
    return "ran"


class _Payload:
    """Unpickling this calls ``_ran``: what a crafted folder would do with ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_ran, (self.marker,))


def _state() -> dict:
    """What Lightning's ModelParallelStrategy saves: weights, optimizer state and plain values."""
    return {"state_dict": {"model.w": torch.randn(3, 4), "model.b": torch.zeros(2, dtype=torch.bfloat16)},
            "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0)}},
                                  "param_groups": [{"lr": 0.1, "params": [0], "betas": (0.9, 0.99)}]}],
            "epoch": 2, "global_step": 10}


def _save(folder: Path, state: dict) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
        dcp.save(state, checkpoint_id=folder, no_dist=True)
    return folder


def test_a_sharded_folder_becomes_one_checkpoint_with_the_same_values(tmp_path):
    state = _state()
    folder = _save(tmp_path / "last.ckpt", state)
    torch.save({"hyper_parameters": {"lr": 0.1}, "pytorch-lightning_version": "2.6.6"}, folder / "meta.pt")
    out = consolidate_dcp(folder, tmp_path / "one.ckpt")
    checkpoint = read_checkpoint(out)  # weights_only=True
    torch.testing.assert_close(checkpoint["state_dict"], state["state_dict"], rtol=0, atol=0)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert checkpoint["global_step"] == 10 and checkpoint["hyper_parameters"] == {"lr": 0.1}


def test_crafted_metadata_is_refused_before_anything_runs(tmp_path, capsys):
    folder = _save(tmp_path / "crafted.ckpt", _state())
    marker = tmp_path / "ran.txt"
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"\.metadata names test_consolidate\._ran, which is not part of "
                                              r"torch\.distributed\.checkpoint metadata; unpickling it could run code"):
        consolidate_dcp(folder, tmp_path / "out.ckpt")
    assert main(["consolidate", str(folder), "--output", str(tmp_path / "out.ckpt")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("nl-lightning: error:") == 1 and "_ran" in err
    assert not marker.exists() and not (tmp_path / "out.ckpt").exists()


def test_a_crafted_non_tensor_value_is_refused_before_it_runs(tmp_path):
    """Metadata that is genuine, but a value in the shards whose (torch.save) pickle runs code."""
    marker = tmp_path / "ran.txt"
    folder = _save(tmp_path / "crafted.ckpt", {**_state(), "callbacks": _Payload(marker)})
    with pytest.raises(CheckpointError, match=r"value 'callbacks' holds a pickled Python object, not plain data"):
        consolidate_dcp(folder, tmp_path / "out.ckpt")
    assert not marker.exists()


def test_metadata_pointing_at_a_file_outside_the_folder_is_refused(tmp_path):
    folder = _save(tmp_path / "crafted.ckpt", _state())
    metadata = read_dcp_metadata(folder)
    for info in metadata.storage_data.values():
        info.relative_path = "../../secret"
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"points at a shard '\.\./\.\./secret' outside its folder"):
        consolidate_dcp(folder, tmp_path / "out.ckpt")
