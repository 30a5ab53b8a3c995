"""BERT folders as the classifier's encoder: hidden states, pooler and classification logits equal
transformers'; heads that do not fit are named and left out; save_pretrained writes a
BertForSequenceClassification transformers loads with equal outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from hf_models import VOCAB, random_weights, transformers
from nl_lightning.models import TransformerClassifier, TransformerConfig, TransformerLM
from nl_lightning.pretrained import PretrainedError


def _batch(length: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (3, length), generator=g)
    types = torch.randint(0, 2, (3, length), generator=g)
    padding = torch.zeros(3, length, dtype=torch.bool)
    padding[1, 14:] = True
    return idx, types, padding


def test_hidden_states_and_pooler_equal_transformers(hf_folder):
    folder, reference = hf_folder("bert", layer_norm_eps=1e-7)
    ours = TransformerClassifier.from_pretrained(folder, num_classes=3, pooling="pooler").eval()
    assert ours.config.norm_eps == 1e-7
    idx, types, padding = _batch(64)  # every learned position
    with torch.no_grad():
        expected = reference(idx, attention_mask=(~padding).long(), token_type_ids=types)
        hidden = ours.model.transformer(idx, padding, token_type_ids=types)
        assert_close(hidden, expected.last_hidden_state, atol=1e-4, rtol=0)
        assert_close(ours.model.pool(hidden, padding), expected.pooler_output, atol=1e-4, rtol=0)
        plain = reference(idx, attention_mask=(~padding).long()).last_hidden_state  # token types default to 0
        assert_close(ours.model.transformer(idx, padding), plain, atol=1e-4, rtol=0)


@pytest.mark.parametrize("task, labels", [("classification", 3), ("regression", 1)])
def test_sequence_classification_logits_equal_transformers(task, labels, hf_folder):
    problem = "regression" if task == "regression" else "single_label_classification"
    folder, reference = hf_folder("bert", transformers.BertForSequenceClassification, num_labels=labels,
                                  problem_type=problem)
    ours = TransformerClassifier.from_pretrained(folder, num_classes=labels, task=task, pooling="pooler").eval()
    idx, _, padding = _batch()
    with torch.no_grad():
        expected = reference(idx, attention_mask=(~padding).long()).logits
        assert_close(ours(idx, padding), expected, atol=1e-4, rtol=0)


def test_a_head_of_another_size_is_named_and_replaced(hf_folder):
    folder, reference = hf_folder("bert", transformers.BertForSequenceClassification, num_labels=2)
    with pytest.warns(UserWarning, match=r"not loading \['classifier.bias', 'classifier.weight'\]: the folder's "
                                         r"classification head \(it does not fit"):
        ours = TransformerClassifier.from_pretrained(folder, num_classes=5, pooling="pooler")
    assert ours.model.head.weight.shape == (5, 32)
    assert_close(ours.model.pool.dense.weight, reference.bert.pooler.dense.weight)  # the encoder still loads


def test_masked_lm_folder_loads_the_encoder_and_names_the_unused_head(hf_folder):
    folder, reference = hf_folder("bert", transformers.BertForMaskedLM)
    with pytest.warns(UserWarning, match=r"not loading \['cls.predictions.*a masked-LM / next-sentence head"):
        ours = TransformerClassifier.from_pretrained(folder, num_classes=2, pooling="mean").eval()
    idx, _, padding = _batch()
    with torch.no_grad():
        expected = reference.bert(idx, attention_mask=(~padding).long()).last_hidden_state
        assert_close(ours.model.transformer(idx, padding), expected, atol=1e-4, rtol=0)


def test_mean_pooling_leaves_the_pooler_out_with_a_warning(hf_folder):
    folder, _ = hf_folder("bert")
    with pytest.warns(UserWarning, match=r"not loading \['bert.pooler.dense.bias', 'bert.pooler.dense.weight'\]: "
                                         r"BERT's pooler \(used only with pooling='pooler'\)"):
        TransformerClassifier.from_pretrained(folder, num_classes=2, pooling="mean")


def test_old_names_read_the_same(hf_folder):
    """BertModel saves without ``bert.``; old files name LayerNorm parameters gamma / beta."""
    folder, reference = hf_folder("bert")
    state = load_file(folder / "model.safetensors")
    renamed = {name.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): tensor for name, tensor in state.items()}
    assert any(".gamma" in name for name in renamed) and not any(n.startswith("bert.") for n in renamed)
    save_file(renamed, folder / "model.safetensors")
    ours = TransformerClassifier.from_pretrained(folder, num_classes=2, pooling="pooler").eval()
    idx, _, padding = _batch()
    with torch.no_grad():
        expected = reference(idx, attention_mask=(~padding).long()).last_hidden_state
        assert_close(ours.model.transformer(idx, padding), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("task, labels", [("classification", 4), ("regression", 2)])
def test_save_pretrained_loads_in_transformers_with_equal_outputs(task, labels, tmp_path, seed):
    config = TransformerConfig.from_preset("bert", n_layers=2, d_model=32, vocab_size=VOCAB, max_seq_len=32,
                                           type_vocab_size=2, embed_norm=True, norm_eps=1e-12)
    ours = random_weights(TransformerClassifier(config, num_classes=labels, task=task, pooling="pooler"))
    ours.save_pretrained(tmp_path / "out")
    idx, _, padding = _batch()
    with torch.no_grad():
        classifier = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
        assert classifier.config.problem_type == ("regression" if task == "regression" else "single_label_classification")
        assert_close(classifier(idx, attention_mask=(~padding).long()).logits, ours(idx, padding), atol=1e-4, rtol=0)
        encoder = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
        hidden = encoder(idx, attention_mask=(~padding).long()).last_hidden_state
        assert_close(hidden, ours.model.transformer(idx, padding), atol=1e-4, rtol=0)


def test_a_classifier_without_the_pooler_is_not_written(tmp_path):
    config = TransformerConfig.from_preset("bert", n_layers=1, d_model=32, type_vocab_size=2, embed_norm=True)
    with pytest.raises(PretrainedError, match=r"whose head reads BERT's pooler; this model pools with MeanPool\. "
                                              r"Train with pooling='pooler'"):
        TransformerClassifier(config, num_classes=2, pooling="mean").save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(position_embedding_type="relative_key"), r"position_embedding_type='relative_key' is not supported"),
        (dict(is_decoder=True), r"is_decoder=True is not supported; BERT as an encoder"),
        (dict(model_type="roberta"), r"model_type='roberta' is not supported; supported model types are \['bert', "),
        (dict(architectures=["BertForTokenClassification"]),
         r"architectures=\['BertForTokenClassification'\] is not supported; for model_type 'bert' nl_lightning reads"),
    ],
)
def test_fields_we_cannot_compute_are_refused(overrides, match, hf_folder):
    folder, _ = hf_folder("bert")
    config = {**json.loads((folder / "config.json").read_text()), **overrides}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=match):
        TransformerClassifier.from_pretrained(folder, num_classes=2)


def test_each_task_names_the_folders_it_reads(hf_folder):
    bert, _ = hf_folder("bert")
    llama, _ = hf_folder("llama")
    with pytest.raises(PretrainedError, match=r"holds a bert model; TransformerLM reads causal LM folders .* Use "
                                              r"TransformerClassifier"):
        TransformerLM.from_pretrained(bert)
    with pytest.raises(PretrainedError, match=r"holds a llama model; TransformerClassifier reads BERT folders"):
        TransformerClassifier.from_pretrained(llama, num_classes=2)
