"""The cyclic collector kept off the request path: paused while a body is parsed, start-up objects
frozen in the server and in each inference worker (serve/heap.py)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from model_files import save
from pydantic import field_validator

from nl_lightning.models import TransformerClassifier, TransformerConfig
from nl_lightning.serve.heap import freeze_startup_objects, gc_paused
from nl_lightning.serve.schemas import ServeRequest


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def test_gc_paused_resumes_even_on_error_and_leaves_a_pause_it_did_not_make():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("a bad body")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # the caller's pause stands
    finally:
        gc.enable()


def test_freeze_startup_objects_exempts_what_exists(unfrozen):
    assert gc.get_freeze_count() == 0
    freeze_startup_objects()
    assert gc.get_freeze_count() > 1000


def test_parse_body_validates_with_the_collector_paused(parse_json):
    seen: list[tuple[str, bool]] = []

    def probe(tag: str, refuse_negative: bool) -> type[ServeRequest]:
        class Probe(ServeRequest):
            x: int

            @field_validator("x")
            @classmethod
            def _seen(cls, value: int) -> int:
                seen.append((tag, gc.isenabled()))
                if refuse_negative and value < 0:
                    raise ValueError("the twin refuses; the schema words it")
                return value

        return Probe

    Probe, FastProbe = probe("schema", False), probe("twin", True)
    Probe.fast_twin = FastProbe

    assert type(parse_json(Probe, {"x": 1})) is FastProbe
    assert type(parse_json(Probe, {"x": -1})) is Probe
    assert seen == [("twin", False), ("twin", False), ("schema", False)]
    assert gc.isenabled()


def test_an_inference_worker_freezes_once_its_model_is_loaded(tmp_path: Path, monkeypatch, unfrozen):
    from nl_lightning.serve.api import PredictAPI, WorkerPlan
    from nl_lightning.serve.registry import resolve_source
    from nl_lightning.serve.rollout import Rollout
    from nl_lightning.serve.runners import TorchRunner

    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(vocab_size=16, n_layers=1, d_model=16, n_heads=2, max_seq_len=8,
                                                    causal=False), num_classes=2).eval()
    save(model, tmp_path / "models" / "1" / "model.ckpt")
    signature = TorchRunner(resolve_source("1", tmp_path / "models" / "1" / "model.ckpt")).signature
    Rollout(tmp_path / "state").begin("1")
    api = PredictAPI(WorkerPlan(str(tmp_path / "models"), str(tmp_path / "state"), signature, task="classification"),
                     max_batch_size=2)
    monkeypatch.setattr(api, "_count_version", lambda previous, runner: None)  # Prometheus needs its folder
    assert gc.get_freeze_count() == 0
    api.setup("cpu")
    try:
        assert gc.get_freeze_count() > 1000
        with api.live.use() as runner:
            assert runner.version == "1"
    finally:
        api.live.close()


def test_the_server_process_freezes_before_it_forks_its_http_servers(tmp_path: Path, monkeypatch, unfrozen):
    from nl_lightning.serve import server as server_module
    from nl_lightning.serve.config import ServeConfig

    frozen: list[int] = []

    class Server:
        def run(self, **kwargs) -> None:
            frozen.append(gc.get_freeze_count())

    monkeypatch.setattr(server_module, "build_server", lambda config, state_dir: Server())
    monkeypatch.setattr(server_module, "forks_die_with_parent", lambda: None)
    monkeypatch.setattr(server_module, "_stop_children", lambda timeout: None)
    monkeypatch.setattr(server_module, "check_port", lambda host, port: None)
    assert server_module.serve(ServeConfig(model_dir=str(tmp_path))) == 0
    assert len(frozen) == 1 and frozen[0] > 1000
