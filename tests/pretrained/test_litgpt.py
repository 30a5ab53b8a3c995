"""LitGPT folders: checked against folders and logits written by LitGPT 0.5.13 itself
(litgpt_reference/, see make_reference.py there); variants are made here, offline, without litgpt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from torch.testing import assert_close

from nl_lightning.models import TransformerLM
from nl_lightning.pretrained import PretrainedError

REFERENCE = Path(__file__).parent / "litgpt_reference"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(REFERENCE / name, tmp_path / name))


@pytest.mark.parametrize("name", ["llama", "neox", "legacy"])
def test_logits_equal_litgpts_own(name):
    reference = torch.load(REFERENCE / name / "reference.pt", weights_only=True)
    ours = TransformerLM.from_pretrained(REFERENCE / name).eval()
    with torch.no_grad():
        assert_close(ours(reference["tokens"]), reference["logits"], atol=1e-4, rtol=0)


def test_config_mapping():
    config = TransformerLM.from_pretrained(REFERENCE / "llama").config
    assert (config.n_kv_heads, config.mlp, config.norm, config.bias, config.qkv_bias) == (2, "swiglu", "rmsnorm", False, True)
    assert config.rope_scaling == {"type": "llama3", "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_seq_len": 16}
    neox = TransformerLM.from_pretrained(REFERENCE / "neox").config
    assert (neox.mlp, neox.gelu_approximate, neox.norm, neox.bias, neox.qkv_bias) == ("gelu", "tanh", "layernorm", True, None)


def test_a_fine_tune_checkpoint_wrapping_the_weights_reads_the_same(tmp_path):
    """LitGPT's fine-tuning scripts save ``{"model": state_dict}``."""
    folder = _copy("neox", tmp_path)
    state = torch.load(folder / "lit_model.pth", weights_only=True)
    torch.save({"model": state}, folder / "lit_model.pth")
    reference = torch.load(folder / "reference.pt", weights_only=True)
    with torch.no_grad():
        assert_close(TransformerLM.from_pretrained(folder).eval()(reference["tokens"]), reference["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("parallel_residual", True, r"parallel_residual=True is not supported; only parallel_residual=False"),
        ("mlp_class_name", "LLaMAMoE", r"mlp_class_name='LLaMAMoE' is not supported; dense MLPs"),
        ("rotary_percentage", 0.25, r"rotary_percentage=0.25 is not supported"),
        ("rope_adjustments", {"factor": 4.0, "beta_fast": 32}, r"rope_adjustments=.* is not supported; None or Llama 3.1"),
        ("name", "Gemma-2b", r"name='Gemma-2b' is not supported; Gemma's unit-offset RMSNorm"),
    ],
)
def test_fields_we_cannot_compute_are_refused(field, value, match, tmp_path):
    folder = _copy("llama", tmp_path)
    config = yaml.safe_load((folder / "model_config.yaml").read_text())
    config[field] = value
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PretrainedError, match=rf"model_config\.yaml: {match}"):
        TransformerLM.from_pretrained(folder)


def test_a_pickled_object_in_lit_model_pth_is_refused(tmp_path):
    folder = _copy("llama", tmp_path)
    torch.save({"model": torch.load(folder / "lit_model.pth", weights_only=True), "args": Path("x")}, folder / "lit_model.pth")
    with pytest.raises(PretrainedError, match=r"Refusing to load .*lit_model.pth: it needs pickle to load \(it holds pathlib"):
        TransformerLM.from_pretrained(folder)
