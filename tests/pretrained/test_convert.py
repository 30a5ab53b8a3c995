"""``nl-lightning convert`` both ways, and the whole path: a transformers folder -> fine-tune through
the CLI -> ``nl-lightning generate`` -> back to a folder transformers loads with equal logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from hf_models import hf_logits, transformers
from nl_lightning.cli import main
from nl_lightning.models import TransformerClassifier, TransformerLM, load_checkpoint

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["nl-lightning"])


def test_folder_to_checkpoint_and_back(hf_folder, tmp_path, capsys):
    folder, reference = hf_folder("qwen2")
    assert main(["convert", str(folder), "--output", str(tmp_path / "qwen.ckpt")]) == 0
    assert f"converted: {tmp_path / 'qwen.ckpt'}" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "qwen.ckpt", weights_only=True)
    assert checkpoint["nl_lightning"]["pretrained"]["path"] == str(folder.resolve())
    model = load_checkpoint(tmp_path / "qwen.ckpt")
    idx = torch.randint(0, 96, (2, 16))
    with torch.no_grad():
        assert_close(model(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)
    assert main(["convert", str(tmp_path / "qwen.ckpt"), "--output", str(tmp_path / "back")]) == 0
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert_close(hf_logits(again, idx), hf_logits(reference, idx), atol=1e-5, rtol=0)


def test_bert_folder_takes_its_head_or_needs_num_classes(hf_folder, tmp_path, capsys):
    with_head, _ = hf_folder("bert", transformers.BertForSequenceClassification, num_labels=3)
    assert main(["convert", str(with_head), "--output", str(tmp_path / "clf.ckpt")]) == 0
    model = load_checkpoint(tmp_path / "clf.ckpt")
    assert isinstance(model, TransformerClassifier) and model.num_classes == 3
    encoder, _ = hf_folder("bert")
    assert main(["convert", str(encoder), "--output", str(tmp_path / "enc.ckpt")]) == 1
    assert "holds a BERT encoder without a classification head: pass --num_classes N" in capsys.readouterr().err
    assert not (tmp_path / "enc.ckpt").exists()


def test_unsupported_folder_is_one_line_and_writes_nothing(hf_folder, tmp_path, capsys):
    folder, _ = hf_folder("llama")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mixtral"}))
    assert main(["convert", str(folder), "--output", str(tmp_path / "out.ckpt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nl-lightning: error: ") and "model_type='mixtral' is not supported" in err
    assert err.count("\n") == 1 and not (tmp_path / "out.ckpt").exists()


def test_fine_tune_through_the_cli_then_generate_then_export(hf_folder, tmp_path, monkeypatch, capsys):
    """A transformers Llama with a byte vocabulary, fine-tuned by configs/finetune_lm.yaml."""
    folder, reference = hf_folder("llama", vocab_size=256, max_position_embeddings=256)
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "finetune_lm.yaml"), f"--model.init_args.pretrained={folder}",
            "--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--data.init_args.batch_size=2",
            "--data.init_args.seq_len=32", "--trainer.enable_progress_bar=false", "--model.init_args.optimizer.lr=0.01"]
    assert main(args) == 0
    last = next(tmp_path.glob("runs/finetune_lm/version_0/checkpoints/last.ckpt"))
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["hyper_parameters"]["pretrained"] is None  # the checkpoint stands alone
    assert checkpoint["nl_lightning"]["pretrained"]["path"] == str(folder.resolve())
    before = TransformerLM.from_pretrained(folder)
    assert not torch.equal(load_checkpoint(last).model.lm_head.weight, before.model.lm_head.weight)  # it did train
    with pytest.warns(UserWarning, match=r"the checkpoint's values replace the config's for pretrained"):
        assert main([*args, "--trainer.max_steps=4", "--ckpt_path", "last"]) == 0  # resumes from the checkpoint alone
    tuned = load_checkpoint(tmp_path / "runs/finetune_lm/version_1/checkpoints/last.ckpt")
    capsys.readouterr()
    assert main(["generate", "--ckpt_path", "runs/finetune_lm", "--prompt", "def ", "--max_new_tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- sample 0 ---\ndef ") and len(out.splitlines()[1]) > len("def ")
    assert main(["convert", "runs/finetune_lm", "--output", "exported"]) == 0
    exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    idx = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        assert_close(hf_logits(exported, idx), tuned(idx), atol=1e-4, rtol=0)
