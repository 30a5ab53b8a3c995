"""Crashes a server must survive or clean up after: an inference worker SIGKILLed under load (503 at
once, the worker restarts, no hang, no traceback), and the server itself SIGKILLed (its children
die with it, the port frees, and the next server sweeps the runtime folder it left)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from model_files import classifier, lm, save
from servers import Client, ServerProcess, port_is_free

from nl_lightning.serve.server import RUNTIME_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save(classifier(0), root / "1" / "model.ckpt")
    return root


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_worker_answers_503_at_once_and_is_restarted(model_dir, tmp_path):
    server = ServerProcess(tmp_path, model_dir=str(model_dir), workers_per_device=1).start()
    try:
        client = server.client()
        worker = client.get("/info").json()["workers"][0]["pid"]
        stop, results = threading.Event(), []

        def load(seed: int) -> None:
            c, rng = Client(server.port, timeout=30), np.random.default_rng(seed)
            while not stop.is_set():
                sent = time.monotonic()
                reply = c.post("/predict", {"features": rng.normal(size=(8, 4)).tolist()})
                results.append((sent, time.monotonic(), reply))

        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # Stopped first, the worker surely holds requests when it dies: killed at once, it could fall
        # between requests on a busy machine (CI, 2 cores), and then no request is its own to fail.
        os.kill(worker, signal.SIGSTOP)
        time.sleep(0.3)
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a request hung after its worker died"
        after = [(sent, received, r) for sent, received, r in results if received > killed]
        assert {r.status for _, _, r in after} <= {200, 503} and any(r.status == 503 for _, _, r in after)
        assert max(received - max(sent, killed) for sent, received, _ in after) < 1.0  # answered at once, no hang
        unavailable = next(r for _, _, r in after if r.status == 503)
        # the requests the worker held are failed as its own (one worker sends no per-request START report)
        assert any("inference worker 0 died while answering it" in r.json()["detail"] for _, _, r in after
                   if r.status == 503), [r.json() for _, _, r in after if r.status == 503]
        assert unavailable.json()["detail"].startswith("Service unavailable: ") and "retry in a moment" in \
            unavailable.json()["detail"] and unavailable.headers["retry-after"] == "1"
        wait_for(lambda: client.get("/health").status == 200, 120, "the restarted worker")
        assert client.post("/predict", {"features": [[0.0] * 4]}).status == 200
        assert client.get("/info").json()["workers"][0]["pid"] != worker
        assert server.proc.poll() is None and "Traceback" not in server.log_tail(200_000)
    finally:
        server.kill()


def test_a_killed_server_takes_its_children_along_and_the_next_one_starts(model_dir, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = ServerProcess(tmp_path / "a", model_dir=str(model_dir), workers_per_device=2)
    first.start()
    second = None
    try:
        assert len(first.family) >= 5  # LitServe's manager, 2 HTTP servers, 2 inference workers
        runtime = list(Path(tempfile.gettempdir()).glob(f"{RUNTIME_PREFIX}{first.proc.pid}-*"))
        first.proc.kill()  # SIGKILL: no handler, no cleanup of its own
        first.proc.wait(30)
        assert first.survivors(wait=15) == []
        assert port_is_free(first.port) and runtime[0].exists()
        second = ServerProcess(tmp_path / "b", model_dir=str(model_dir))
        second.port = first.port  # the same port, free again
        second.config.write_text(first.config.read_text())
        second.start()
        assert not runtime[0].exists()  # swept by the next server
        assert second.client().post("/predict", {"features": [[0.0] * 4]}).status == 200
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_a_stream_whose_worker_dies_ends_at_once_with_an_error_event(tmp_path):
    save(lm(0), tmp_path / "lm" / "1" / "model.ckpt")
    (tmp_path / "server").mkdir()
    server = ServerProcess(tmp_path / "server", model_dir=str(tmp_path / "lm"),
                           limits={"max_new_tokens": 4000, "default_new_tokens": 8}).start()
    try:
        worker = server.client().get("/info").json()["workers"][0]["pid"]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body = {"prompt": "x", "max_new_tokens": 4000, "stream": True}
        conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.readline())["tokens"]
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        lines = [json.loads(line) for line in response.read().splitlines() if line]
        assert time.monotonic() - killed < 3.0  # ended at once, not after 4000 tokens or a timeout
        assert server.client().get("/health").status == 503  # not ready until the worker is back
        assert lines[-1]["status"] == 503 and "inference worker 0 died" in lines[-1]["error"], lines[-1]
        wait_for(lambda: server.client().get("/health").status == 200, 120, "the restarted worker")
        assert server.client().post("/predict", {"prompt": "y", "max_new_tokens": 2}).status == 200
    finally:
        server.kill()
