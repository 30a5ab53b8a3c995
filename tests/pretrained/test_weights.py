"""Weight files of a folder: sharded safetensors read like one file; truncated, corrupt, missing
or pickled files are refused with the file named and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nl_lightning.models import TransformerLM
from nl_lightning.pretrained import PretrainedError


def _shard(folder: Path) -> dict[str, str]:
    """Split model.safetensors into two shards with an index, as transformers writes them."""
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, part in halves.items():
        save_file({name: state[name] for name in part}, folder / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weight_map


def test_sharded_folder_loads_the_same_weights(pretrained_folder):
    folder = pretrained_folder("lm")
    whole = TransformerLM.from_pretrained(folder).eval()
    _shard(folder)
    sharded = TransformerLM.from_pretrained(folder).eval()
    idx = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        assert torch.equal(sharded(idx), whole(idx))


def test_index_naming_a_missing_shard(pretrained_folder):
    folder = pretrained_folder("lm")
    _shard(folder)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"model.safetensors.index.json names the shard "
                                              r"'model-00002-of-00002.safetensors', which is not in .* Copy every shard"):
        TransformerLM.from_pretrained(folder)


def test_index_shard_outside_the_folder_is_refused(pretrained_folder):
    folder = pretrained_folder("lm")
    weight_map = _shard(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": dict.fromkeys(weight_map, "../x")}))
    with pytest.raises(PretrainedError, match=r"names the shard '../x'; shards must be plain file names"):
        TransformerLM.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_safetensors(damage, pretrained_folder):
    folder = pretrained_folder("lm")
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x20" + bytes(7) + b"{not json" * 4,
                      "empty": b""}[damage])
    with pytest.raises(PretrainedError, match=r"model.safetensors is truncated or corrupt: .* Download or copy the file again"):
        TransformerLM.from_pretrained(folder)


def test_pytorch_model_bin_that_needs_pickle_is_refused(pretrained_folder):
    folder = pretrained_folder("lm")
    state = load_file(folder / "model.safetensors")
    torch.save({**state, "args": Path("/tmp")}, folder / "pytorch_model.bin")  # a pickled object besides tensors
    (folder / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"Refusing to load .*pytorch_model.bin: it needs pickle to load "
                                              r"\(it holds pathlib.*Ask for the model in safetensors"):
        TransformerLM.from_pretrained(folder)


def test_corrupt_pytorch_model_bin(pretrained_folder):
    folder = pretrained_folder("lm")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PretrainedError, match=r"pytorch_model.bin is truncated or corrupt and cannot be read"):
        TransformerLM.from_pretrained(folder)


def test_folder_without_weights(pretrained_folder):
    folder = pretrained_folder("lm")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"has no weights: expected one of \['model.safetensors.index.json', "):
        TransformerLM.from_pretrained(folder)
