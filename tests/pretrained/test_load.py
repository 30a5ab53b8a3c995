"""Loading checks every tensor (missing, unexpected, wrong shape) before using any, builds the
network without random weights, and never writes to the folder's files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import nl_lightning.models.transformer as transformer_module
from nl_lightning._io import path_sha256
from nl_lightning.models import TransformerClassifier, TransformerLM
from nl_lightning.pretrained import PretrainedError


def _rewrite(folder, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(pretrained_folder):
    folder = pretrained_folder("lm")
    _rewrite(folder, lambda state: state.pop("model.layers.0.mlp.up_proj.weight"))
    with pytest.raises(PretrainedError, match=r"missing tensor\(s\) \['model.layers.0.mlp.up_proj.weight'\] that "
                                              r"LlamaForCausalLM as .*config.json describes it needs"):
        TransformerLM.from_pretrained(folder)


def test_unexpected_tensor_is_named(pretrained_folder):
    folder = pretrained_folder("lm")
    _rewrite(folder, lambda state: state.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(8)}))
    with pytest.raises(PretrainedError, match=r"model.safetensors: unexpected tensor\(s\) "
                                              r"\['model.layers.0.self_attn.q_norm.weight'\]: LlamaForCausalLM as"):
        TransformerLM.from_pretrained(folder)


def test_wrong_shape_names_the_tensor_and_both_shapes(pretrained_folder):
    folder = pretrained_folder("lm")
    _rewrite(folder, lambda state: state.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(12, 32)}))
    with pytest.raises(PretrainedError, match=r"model.safetensors: tensor 'model.layers.0.self_attn.k_proj.weight' "
                                              r"has shape \(12, 32\) but .*config.json implies \(16, 32\)"):
        TransformerLM.from_pretrained(folder)


def test_nothing_is_initialized_at_random_when_the_folder_holds_every_weight(pretrained_folder, monkeypatch):
    """The network is built on the meta device; only a classifier's new head is a real random init."""
    folder = pretrained_folder("lm")
    devices = []
    original = transformer_module._init_weights

    def spy(module):
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            devices.append(module.weight.device.type)
        original(module)

    monkeypatch.setattr(transformer_module, "_init_weights", spy)
    TransformerLM.from_pretrained(folder)
    assert devices and set(devices) == {"meta"}


def test_training_in_place_never_writes_the_folder(pretrained_folder):
    """Weights are memory-mapped copy-on-write: the optimizer's updates stay in this process."""
    folder = pretrained_folder("lm")
    before = path_sha256(folder)
    model = TransformerLM.from_pretrained(folder)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    del model
    assert path_sha256(folder) == before
    assert torch.equal(load_file(folder / "model.safetensors")["model.norm.weight"],
                       TransformerLM.from_pretrained(folder).model.transformer.norm.weight.detach())


def test_tied_embeddings_stay_one_parameter(tmp_path):
    from nl_lightning.models import TransformerConfig

    config = TransformerConfig.from_preset("llama", n_layers=1, d_model=32, vocab_size=64, tie_embeddings=True)
    TransformerLM(config).save_pretrained(tmp_path / "tied")
    model = TransformerLM.from_pretrained(tmp_path / "tied")
    assert model.model.lm_head.weight is model.model.transformer.embed.weight
    assert len(list(model.parameters())) == len({id(p) for p in model.parameters()})


def test_classifier_head_is_new_when_the_folder_has_none(pretrained_folder):
    folder = pretrained_folder("classifier", num_classes=3)
    loaded = TransformerClassifier.from_pretrained(folder, num_classes=3, pooling="pooler")
    with pytest.warns(UserWarning, match=r"not loading \['classifier.bias', 'classifier.weight'\]"):
        fresh = TransformerClassifier.from_pretrained(folder, num_classes=4, pooling="pooler")
    assert torch.equal(fresh.model.pool.dense.weight, loaded.model.pool.dense.weight)
    assert fresh.model.head.weight.shape == (4, 32) and not fresh.model.head.weight.is_meta
    assert torch.equal(loaded.model.head.weight, load_file(folder / "model.safetensors")["classifier.weight"])
