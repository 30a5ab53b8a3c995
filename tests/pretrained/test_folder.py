"""Model folders: what makes one readable, and folders written whole or not at all."""

from __future__ import annotations

import json

import pytest
import torch

import nl_lightning.pretrained.folder as folder_module
from nl_lightning.models import TransformerConfig, TransformerLM
from nl_lightning.pretrained import PretrainedError, open_folder


def test_missing_folder(tmp_path):
    with pytest.raises(PretrainedError, match=r"Pretrained model folder not found: .*nope. Pass a folder holding config.json"):
        TransformerLM.from_pretrained(tmp_path / "nope")


def test_folder_without_config_json(pretrained_folder):
    folder = pretrained_folder("lm")
    (folder / "config.json").unlink()
    with pytest.raises(PretrainedError, match=r"has no config.json, so its architecture is unknown .* Copy the model's "
                                              r"config.json next to its weights"):
        TransformerLM.from_pretrained(folder)


def test_unparsable_config_json(pretrained_folder):
    folder = pretrained_folder("lm")
    (folder / "config.json").write_text("{'single': quotes}")
    with pytest.raises(PretrainedError, match=r"config.json cannot be parsed: .* Restore it from the model's source"):
        open_folder(folder)


@pytest.mark.parametrize(
    "edit, match",
    [
        (dict(num_attention_heads=5, head_dim=None), r"config.json describes a model nl_lightning cannot build: TransformerConfig.n_heads=5 "
                                      r"must divide d_model=32"),
        (dict(hidden_size=None), r"config.json has no 'hidden_size'"),
        (dict(num_hidden_layers=-1), r"config.json: num_hidden_layers=-1 must be a positive integer"),
        (dict(model_type=None), r"config.json: model_type=None is not supported; supported model types are"),
    ],
)
def test_config_json_values_are_checked(edit, match, pretrained_folder):
    folder = pretrained_folder("lm")
    config = {**json.loads((folder / "config.json").read_text()), **edit}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=match):
        open_folder(folder)


def _tiny(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig.from_preset("llama", n_layers=1, d_model=32, vocab_size=64, **overrides))


def test_save_pretrained_writes_extra_files(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"model": {}}')
    _tiny().save_pretrained(tmp_path / "out", extra_files={"tokenizer.json": tokenizer, "README.md": "# tiny",
                                                           "blob.bin": b"\x00\x01"})
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["README.md", "blob.bin", "config.json", "model.safetensors", "tokenizer.json"]
    assert (tmp_path / "out" / "tokenizer.json").read_text() == '{"model": {}}'
    assert (tmp_path / "out" / "blob.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("name", ["config.json", "../escape.txt", "sub/dir.txt"])
def test_extra_files_may_not_replace_or_escape(name, tmp_path):
    with pytest.raises(PretrainedError, match=r"extra_files name .* must be a plain file name other than"):
        _tiny().save_pretrained(tmp_path / "out", extra_files={name: "x"})
    assert not (tmp_path / "out").exists()


def test_a_failed_save_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    _tiny().save_pretrained(tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(folder_module, "save_file", broken)
    model = _tiny(rope_base=500000.0)  # another config.json, written before the weights fail
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
