"""PredictAPI in one process: decode, group, predict and encode a LitServe batch of /predict and
/batch_predict requests of token ids."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import torch
from model_files import save

from nl_lightning.models import TransformerClassifier, TransformerConfig
from nl_lightning.serve.api import PredictAPI, WorkerPlan
from nl_lightning.serve.registry import resolve_source
from nl_lightning.serve.runners import TorchRunner


class Live:
    def __init__(self, runner) -> None:
        self.runner = runner

    @contextmanager
    def use(self):
        yield self.runner


def test_a_batch_of_predict_and_batch_predict_requests_of_mixed_lengths(tmp_path):
    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(vocab_size=16, n_layers=1, d_model=16, n_heads=2, max_seq_len=8,
                                                    causal=False), num_classes=2).eval()
    runner = TorchRunner(resolve_source("4", save(model, tmp_path / "m.ckpt")))
    plan = WorkerPlan(str(tmp_path), str(tmp_path), runner.signature, labels=("no", "yes"), rows_per_forward=2)
    api = PredictAPI(plan, max_batch_size=4)
    api.live = Live(runner)
    ids = [[1, 2, 3], [4, 5], [6, 7, 8], [9, 9, 9], [3]]
    # as predict_spec sends them: a /predict input as its validated lists, /batch_predict rows as arrays
    requests = [{"x": ids[0], "request_id": "a"}, {"x": ids[1], "request_id": "b"},
                {"rows": [np.array(t) for t in ids[2:]], "request_id": "c"}]
    jobs = api.batch([api.decode_request(r) for r in requests])
    assert [len(j.items) for j in jobs] == [1, 1, 3] and jobs[2].batch and jobs[0].items[0].request_id == "a"
    assert jobs[0].items[0].x.dtype == np.int64  # the lists become the model's input type in the worker
    answers = [api.encode_response(out) for out in api.unbatch(api.predict(jobs))]
    assert api.batch_info == {"version": "4", "size": 3, "errors": 0}
    assert [status for status, _ in answers] == [200, 200, 200]
    bodies = [json.loads(body) for _, body in answers]
    rows = [bodies[0], bodies[1], *bodies[2]["predictions"]]
    assert bodies[2]["version"] == "4" and "version" not in bodies[2]["predictions"][0]
    for tokens, answer in zip(ids, rows):
        with torch.no_grad():
            probs = model(torch.tensor([tokens])).softmax(-1)[0]
        np.testing.assert_allclose(answer["probabilities"], probs.numpy(), rtol=1e-6, atol=1e-6)
        assert answer["label_name"] == ("no", "yes")[answer["label"]]
