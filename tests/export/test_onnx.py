from __future__ import annotations

import onnx
import pytest
import torch

from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.onnx import export_onnx, has_external_data, onnx_files, onnx_opset
from nl_lightning.export.ort import ort_runner, ort_session

ATOL, RTOL = 1e-4, 1e-3  # fp32 graph vs eager: only float reassociation differs (measured ~1e-7)


@pytest.mark.parametrize("name", ["lm", "classifier"])
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("seq_len", [3, 16])
def test_onnx_runtime_matches_eager_at_dynamic_batch_and_sequence(models, onnx_paths, name, batch_size, seq_len):
    model, spec = models[name], signature_of(models[name])
    x = spec.example(batch_size, seq_len, seed=batch_size + seq_len)
    out = ort_runner(ort_session(onnx_paths[name]))(x)
    with torch.inference_mode():
        torch.testing.assert_close(out, model(x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("name", "input_name", "dtype"), [("lm", "idx", 7), ("classifier", "x", 1)])
def test_graph_declares_named_dynamic_axes(onnx_paths, name, input_name, dtype):
    proto = onnx.load(str(onnx_paths[name]))
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == input_name and graph_input.type.tensor_type.elem_type == dtype
    assert [d.dim_param for d in dims[:2]] == ["batch", "seq"]
    assert proto.graph.output[0].name == "logits"
    assert onnx_opset(onnx_paths[name]) == 18


def test_external_data_is_written_beside_the_model_and_loads(fresh_lm, tmp_path):
    model = fresh_lm
    path = export_onnx(model, tmp_path / "lm.onnx", external_data=True)
    files = onnx_files(path)
    assert has_external_data(path) and [f.name for f in files] == ["lm.onnx", "lm.onnx.data"]
    assert files[1].stat().st_size > files[0].stat().st_size  # the weights live in .data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm.onnx", "lm.onnx.data"]  # no temp leftovers
    x = torch.randint(0, 256, (2, 7))
    with torch.inference_mode():
        torch.testing.assert_close(ort_runner(ort_session(path))(x), model(x), atol=ATOL, rtol=RTOL)


def test_signature_reserves_the_cls_position_and_rejects_plain_modules():
    from nl_lightning.models import SequenceClassifier, TransformerConfig

    config = TransformerConfig(vocab_size=32, n_layers=1, d_model=32, max_seq_len=16, position="learned", causal=False)
    spec = signature_of(SequenceClassifier(config, 2, pooling="cls"))
    assert (spec.name, spec.max_seq_len, spec.dtype, spec.task) == ("x", 15, torch.int64, None)  # a bare network
    with pytest.raises(TypeError, match="describe the model with a ModelSignature"):
        signature_of(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="seq_len=16 exceeds what the model accepts"):
        spec.example(1, 16)
    with pytest.raises(ValueError, match="token ids \\(vocab_size\\) or features \\(input_dim\\), not both or neither"):
        ModelSignature("classification", None, None, 8, 2)
