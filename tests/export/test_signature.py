"""One ModelSignature: read off a model or off its export's manifest, the same for every kind of
positions, and the one definition of what each task predicts."""

from __future__ import annotations

import pytest
import torch

from nl_lightning.export import ExportConfig, export_formats
from nl_lightning.export.inputs import dynamic_shapes
from nl_lightning.export.signature import ModelSignature, signature_from_manifest, signature_of, task_prediction
from nl_lightning.models import TransformerClassifier, TransformerConfig, TransformerLM


def _classifier(position: str, task: str = "classification", pooling: str = "mean") -> TransformerClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, mlp_hidden=32, max_seq_len=8,
                               position=position, causal=False)
    return TransformerClassifier(config, num_classes=3, task=task, pooling=pooling).eval()


@pytest.mark.parametrize("position", ["learned", "rope", "alibi", "none"])
def test_a_model_and_its_export_have_one_signature(position, tmp_path):
    """Before, positions without a table (alibi / none) exported as unbounded: a server of the
    checkpoint refused to swap to its own export. The context is the model's, whatever its positions."""
    model = _classifier(position)
    signature = signature_of(model)
    assert signature == ModelSignature("classification", None, 4, 8, 3)
    config = ExportConfig(formats=["onnx"], parity_batch_sizes=[1], parity_seq_lens=[3, 8])
    manifest = export_formats(model, tmp_path / "export", config)
    assert signature_from_manifest(manifest) == signature
    assert manifest["input"]["max_seq_len"] == 8 and manifest["artifacts"][0]["parity_ok"]


def test_the_context_bounds_the_exported_sequence_axis():
    (axes,) = dynamic_shapes(signature_of(_classifier("none")))
    assert axes[1].max == 8
    cls = signature_of(_classifier("alibi", pooling="cls"))
    assert cls.max_seq_len == 7  # the [CLS] token takes one position


def test_an_lm_is_read_as_one():
    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(vocab_size=32, n_layers=1, d_model=16, n_heads=2, max_seq_len=12, position="alibi"))
    assert signature_of(lm) == ModelSignature("lm", 32, None, 12, 32)
    assert signature_of(lm).name == "idx" and signature_of(lm.model).task == "lm"


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_predict_step_and_the_servers_outputs_are_one_definition(task):
    model = _classifier("none", task=task)
    x = torch.randn(5, 6, 4)
    with torch.no_grad():
        logits, predicted = model(x), model.predict_step((x,), 0)
    outputs = signature_of(model).outputs(logits)
    torch.testing.assert_close(predicted, task_prediction(logits, task))
    if task == "classification":
        torch.testing.assert_close(outputs["probabilities"], logits.softmax(-1))
        torch.testing.assert_close(outputs["label"], logits.argmax(-1))
    else:
        assert set(outputs) == {"values"}
        torch.testing.assert_close(outputs["values"], logits)


def test_lm_prediction_is_the_next_token_distribution():
    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(vocab_size=32, n_layers=1, d_model=16, n_heads=2, max_seq_len=12)).eval()
    idx = torch.randint(0, 32, (2, 5))
    with torch.no_grad():
        logits = lm(idx)
        torch.testing.assert_close(lm.predict_step((idx,), 0), logits[:, -1].log_softmax(-1))
        torch.testing.assert_close(signature_of(lm).outputs(logits)["log_probs"], lm.predict_step((idx,), 0))
