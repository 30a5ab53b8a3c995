"""GPT-2 folders: Conv1D weights transposed, learned positions, tanh GELU, biases; logits, greedy
tokens and the round trip through save_pretrained match transformers."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from hf_models import VOCAB, hf_greedy, hf_logits, transformers
from nl_lightning.models import TransformerConfig, TransformerLM
from nl_lightning.pretrained import PretrainedError


def _tokens(batch: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_logits_equal_transformers(activation, hf_folder):
    folder, reference = hf_folder("gpt2", activation_function=activation)
    ours = TransformerLM.from_pretrained(folder).eval()
    assert ours.config.gelu_approximate == ("tanh" if activation == "gelu_new" else "none")
    idx = _tokens(length=64)  # every learned position
    with torch.no_grad():
        assert_close(ours(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_generation_equals_transformers_generate(batch, hf_folder):
    folder, reference = hf_folder("gpt2")
    ours = TransformerLM.from_pretrained(folder)
    prompt = _tokens(batch, 7)
    assert torch.equal(ours.generate(prompt, 32, temperature=0.0, top_k=None), hf_greedy(reference, prompt, 32))


def test_gpt2model_names_and_old_buffers_read_the_same(hf_folder):
    """OpenAI's own files have no ``transformer.`` prefix and older ones hold causal-mask buffers."""
    folder, reference = hf_folder("gpt2")
    state = load_file(folder / "model.safetensors")
    renamed = {name.removeprefix("transformer."): tensor for name, tensor in state.items()}
    renamed["h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    save_file(renamed, folder / "model.safetensors")
    ours = TransformerLM.from_pretrained(folder).eval()
    idx = _tokens()
    with torch.no_grad():
        assert_close(ours(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)


def test_pytorch_model_bin_reads_the_same(hf_folder):
    folder, reference = hf_folder("gpt2")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    ours = TransformerLM.from_pretrained(folder).eval()
    idx = _tokens()
    with torch.no_grad():
        assert_close(ours(idx), hf_logits(reference, idx), atol=1e-4, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_loads_in_transformers_with_equal_logits(tied, tmp_path, seed):
    config = TransformerConfig(vocab_size=VOCAB, n_layers=2, d_model=32, n_heads=4, max_seq_len=32, position="learned",
                               mlp="gelu", gelu_approximate="tanh", norm="layernorm", tie_embeddings=tied)
    ours = TransformerLM(config).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ours.save_pretrained(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    idx = _tokens(length=32)
    with torch.no_grad():
        assert_close(hf_logits(reference, idx), ours(idx), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(activation_function="relu"), r"activation_function='relu' is not supported; GELU variants"),
        (dict(scale_attn_by_inverse_layer_idx=True), r"scale_attn_by_inverse_layer_idx=True is not supported"),
    ],
)
def test_fields_we_cannot_compute_are_refused(overrides, match, hf_folder):
    folder, _ = hf_folder("gpt2")
    config = {**json.loads((folder / "config.json").read_text()), **overrides}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=match):
        TransformerLM.from_pretrained(folder)


def test_gqa_model_is_not_written_as_gpt2(tmp_path):
    config = TransformerConfig(vocab_size=VOCAB, n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, position="learned")
    with pytest.raises(PretrainedError, match=r"gpt2: GPT-2 needs .* this model has \{'n_kv_heads': 2\}"):
        TransformerLM(config).save_pretrained(tmp_path / "out")
