"""ModelAPI in one process: decode, group, predict and encode a batch of token-id requests."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from model_files import save

from nl_lightning.models import TransformerClassifier, TransformerConfig
from nl_lightning.serve.api import ModelAPI, WorkerPlan
from nl_lightning.serve.registry import resolve_source
from nl_lightning.serve.runners import TorchRunner


class Live:
    def __init__(self, runner) -> None:
        self.runner = runner

    @contextmanager
    def use(self):
        yield self.runner


def test_a_batch_of_token_requests_of_mixed_lengths(tmp_path):
    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(vocab_size=16, n_layers=1, d_model=16, n_heads=2, max_seq_len=8,
                                                    causal=False), num_classes=2).eval()
    runner = TorchRunner(resolve_source("4", save(model, tmp_path / "m.ckpt")))
    api = ModelAPI(WorkerPlan(str(tmp_path), str(tmp_path), runner.signature, labels=("no", "yes")), max_batch_size=4)
    api.live = Live(runner)
    requests = [{"tokens": [1, 2, 3], "request_id": "a"}, {"tokens": [4, 5], "request_id": "b"},
                {"tokens": [6, 7, 8], "request_id": "c"}]
    items = api.batch([api.decode_request(r) for r in requests])
    assert items[0].x.dtype == np.int64 and items[0].request_id == "a"
    answers = [api.encode_response(out) for out in api.unbatch(api.predict(items))]
    assert api.batch_info == {"version": "4", "size": 3, "errors": 0}
    for request, answer in zip(requests, answers):
        with torch.no_grad():
            probs = model(torch.tensor([request["tokens"]])).softmax(-1)[0]
        np.testing.assert_allclose(answer["probabilities"], probs.numpy(), rtol=1e-6, atol=1e-6)
        assert answer["label_name"] == ("no", "yes")[answer["label"]] and answer["version"] == "4"
