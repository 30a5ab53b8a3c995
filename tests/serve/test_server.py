"""A real classifier server (two inference workers, three versions) on 127.0.0.1, over real HTTP:
``/predict``, ``/batch_predict``, errors, CORS, docs, metrics, hot reload.

One server for the module (they start slowly); each test leaves it serving. The last test stops
it with SIGTERM and checks that no process is left and the port is free. All but the first test are
``slow``: ``make test-fast`` keeps one real server answering over HTTP (~15 s with its start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from model_files import classifier, fit_normalized, raw_features, save
from servers import ADMIN_KEY, Client, ServerProcess, listening_addresses, port_is_free

from nl_lightning._io import file_sha256
from nl_lightning.models import load_checkpoint
from nl_lightning.serve.server import RUNTIME_PREFIX, sweep_stale_runtimes

LABELS = ["low", "mid", "high"]
PAYLOAD = "64KB"
ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save(classifier(0), root / "1" / "model.ckpt")
    save(classifier(1), root / "2" / "model.ckpt")
    _, trainer, datamodule = fit_normalized(root / "3" / "model.ckpt")  # newest: served first
    return root, trainer, datamodule


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    root, _, _ = models
    process = ServerProcess(tmp_path_factory.mktemp("server"), model_dir=str(root), workers_per_device=2,
                            max_batch_size=8, batch_timeout=0.01, max_payload_size=PAYLOAD, labels=LABELS,
                            cors_origins=[ORIGIN], limits={"max_batch_rows": 16}, rows_per_forward=4)
    try:
        yield process.start()
    finally:
        process.kill()


def serve_version(client: Client, version: str) -> None:
    if client.get("/info").json()["version"] != version:
        reply = client.admin("/admin/reload", {"version": version})
        assert reply.status == 200, reply


def model_probabilities(path, x: np.ndarray) -> np.ndarray:
    model = load_checkpoint(path)
    with torch.no_grad():
        return model(torch.from_numpy(x)).float().softmax(-1).numpy()


def test_predict_matches_the_checkpoint(server, client, models):
    root = models[0]
    serve_version(client, "3")
    for steps in (8, 5, 1):  # one server, requests of every allowed length
        x = raw_features(3, seed=steps, steps=steps)
        expected = model_probabilities(root / "3" / "model.ckpt", x)
        for row, probs in zip(x, expected):
            reply = client.post("/predict", {"features": row.tolist()})
            assert reply.status == 200, reply
            body = reply.json()
            np.testing.assert_allclose(body["probabilities"], probs, rtol=1e-5, atol=1e-6)
            assert body["label"] == int(probs.argmax()) and body["label_name"] == LABELS[body["label"]]
            assert body["version"] == "3"
            assert re.fullmatch(r"[0-9a-f]{32}", reply.headers["x-request-id"])


@pytest.mark.slow
def test_server_computes_what_training_predicts_on_raw_features(server, client, models):
    """Normalization lives in the model: the server, fed raw features, answers what
    ``Trainer.predict`` on the training DataModule (normalize=True) answers."""
    _, trainer, datamodule = models
    serve_version(client, "3")
    expected = torch.cat(trainer.predict(trainer.lightning_module, datamodule=datamodule)).numpy()
    raw = datamodule.arrays["predict"][0]
    served = np.array([client.post("/predict", {"features": row.tolist()}).json()["probabilities"] for row in raw])
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


BIG = {"features": [[1.0] * 4] * 8, "pad": "x" * 70_000}
BAD_REQUESTS = [
    # (id, raw body or JSON, content type, status, message)
    ("malformed-json", b'{"features": [[1, 2, 3,', None, 400,
     "body: malformed JSON (EOF while parsing a value at line 1 column 23)"),
    ("empty-body", b"", None, 400, "the request body is empty; send a JSON object with the fields ['features']"),
    ("not-an-object", [1, 2], None, 422, "body: the body must be a JSON object with the fields ['features']"),
    ("missing-field", {}, None, 422, "features: required field is missing"),
    ("unknown-field", {"features": [[0.0] * 4], "temperature": 1}, None, 422,
     "temperature: unknown field; this endpoint takes ['features']"),
    ("wrong-width", {"features": [[0.0] * 4, [0.0] * 3]}, None, 422,
     "features[1] has 3 values; the model takes input_dim=4 features per step"),
    ("too-long", {"features": [[0.0] * 4] * 9}, None, 422, "features: List should have at most 8 items"),
    ("empty-sequence", {"features": []}, None, 422, "features: List should have at least 1 item"),
    ("string-value", {"features": [[0.0, "1.5", 0.0, 0.0]]}, None, 422, "features[0][1]: Input should be a valid number"),
    ("bool-value", {"features": [[0.0, True, 0.0, 0.0]]}, None, 422, "features[0][1]: Input should be a valid number"),
    ("flat-row", {"features": [0.0, 1.0, 2.0, 3.0]}, None, 422,
     "features: got a flat list of 4 numbers; this model takes [[f1, ..., f4], ...]: 1 to 8 steps of input_dim=4 "
     "features (input_schema in GET /info)"),
    ("nan", b'{"features": [[0.0, NaN, 0.0, 0.0]]}', None, 422, "features[0][1]: must be a finite number"),
    ("infinity", b'{"features": [[0.0, 0.0, -Infinity, 0.0]]}', None, 422, "features[0][2]: must be a finite number"),
    ("float32-overflow", {"features": [[0.0, 0.0, 0.0, 1e39]]}, None, 422,
     "features[0][3]: 1e+39 is outside the float32 range"),
    ("payload-too-large", BIG, None, 413, "Request body exceeds max_payload_size=64000 bytes"),
    ("form-encoded", b"features=1", "application/x-www-form-urlencoded", 415,
     "Send the body as JSON with Content-Type: application/json"),
    ("no-content-type", json.dumps({"features": [[0.0] * 4]}).encode(), None, 415,
     "Send the body as JSON with Content-Type: application/json (the request has no Content-Type header)."),
]


@pytest.mark.slow
@pytest.mark.parametrize("body, content_type, status, message", [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_a_4xx_naming_the_field_and_limit(client, body, content_type, status, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if content_type is None and status != 415:
        headers = {}  # the client's default, application/json
    reply = client.request("POST", "/predict", raw=raw, headers=headers)
    assert reply.status == status, reply
    detail = reply.json()["detail"]
    assert message in detail, detail
    assert reply.json()["request_id"] == reply.headers["x-request-id"]


@pytest.mark.slow
def test_bad_requests_never_reach_a_worker(client):
    before = batches(client)
    for _, body, content_type, status, _ in BAD_REQUESTS:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {} if content_type is None and status != 415 else {"Content-Type": content_type}
        assert client.request("POST", "/predict", raw=raw, headers=headers).status >= 400
    assert batches(client) == before


@pytest.mark.slow
def test_model_error_is_a_500_with_request_id_and_the_worker_survives(server, client):
    """1e30 is a valid float32, but the model overflows to NaN: a model error, not a client error."""
    pids = sorted(w["pid"] for w in client.get("/info").json()["workers"])
    poison = {"features": [[1e30, 1.0, 1.0, 1.0]] * 8}
    good = {"features": [[1.0, 1.0, 1.0, 1.0]] * 8}
    with ThreadPoolExecutor(8) as pool:  # one bad request among good ones, batched together
        replies = list(pool.map(lambda body: Client(server.port).post("/predict", body), [poison] + [good] * 7))
    bad = replies[0]
    assert bad.status == 500, bad
    request_id = bad.headers["x-request-id"]
    assert bad.json()["request_id"] == request_id and request_id in bad.json()["detail"]
    assert "returned NaN or Inf" in bad.json()["detail"] and bad.json()["version"]
    assert [r.status for r in replies[1:]] == [200] * 7, replies  # its batch neighbours are answered
    deadline = time.monotonic() + 10
    while request_id not in server.log_tail(200_000) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert request_id in server.log_tail(200_000), "the failure is logged with its request id"
    assert client.post("/predict", good).status == 200
    assert sorted(w["pid"] for w in client.get("/info").json()["workers"]) == pids


@pytest.mark.slow
def test_batch_predict_answers_each_row_as_predict_does(client):
    """Rows of three lengths in one request (run as model batches of at most rows_per_forward=4) get
    what /predict gives each alone, in order, from one version."""
    serve_version(client, "3")
    rng = np.random.default_rng(3)
    rows = [{"features": rng.normal(size=(steps, 4)).tolist()} for steps in (8, 3, 8, 8, 1, 8, 3, 8, 8, 8)]
    reply = client.post("/batch_predict", {"rows": rows})
    assert reply.status == 200, reply
    body = reply.json()
    assert body["version"] == "3" and len(body["predictions"]) == len(rows)
    for row, answer in zip(rows, body["predictions"]):
        alone = client.post("/predict", row).json()
        np.testing.assert_allclose(answer["probabilities"], alone["probabilities"], rtol=1e-5, atol=1e-6)
        assert (answer["label"], answer["label_name"]) == (alone["label"], alone["label_name"])
        assert set(answer) == {"probabilities", "label", "label_name"}


@pytest.mark.slow
@pytest.mark.parametrize("body, status, message", [
    ({"rows": [{"features": [[0.0] * 4]}, {"features": [[0.0] * 3]}]}, 422,
     "rows[1].features: features[0] has 3 values; the model takes input_dim=4 features per step"),
    ({"rows": [{"features": [[0.0] * 4], "temperature": 1}]}, 422,
     "rows[0].temperature: unknown field; each row takes ['features']"),
    ({"rows": [{"features": [[0.0] * 4]}] * 17}, 422, "rows: List should have at most 16 items"),
    ({"rows": []}, 422, "rows: List should have at least 1 item"),
    ({"features": [[0.0] * 4]}, 422, "features: unknown field; this endpoint takes ['rows']"),
])
def test_a_bad_batch_row_is_named_by_its_index(client, body, status, message):
    reply = client.post("/batch_predict", body)
    assert reply.status == status and message in reply.json()["detail"], reply


@pytest.mark.slow
@pytest.mark.parametrize("origin, allowed", [(ORIGIN, True), ("https://evil.example.com", False)])
def test_cors_preflight_is_allowed_for_a_listed_origin_only(client, origin, allowed):
    reply = client.request("OPTIONS", "/predict", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert reply.status == (200 if allowed else 400), reply
    assert reply.headers.get("access-control-allow-origin") == (origin if allowed else None)
    answer = client.post("/predict", {"features": [[0.0] * 4]}, headers={"Origin": origin})
    assert answer.headers.get("access-control-allow-origin") == (origin if allowed else None)


@pytest.mark.slow
def test_docs_list_the_model_routes_and_hide_the_admin_ones(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/batch_predict", "/info", "/metrics", "/health"} <= set(paths)
    assert not [p for p in paths if p.startswith("/admin")]
    batch = paths["/batch_predict"]["post"]
    assert batch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchResponse"}
    assert batch["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    assert paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FeaturesRequest"}
    components = client.get("/openapi.json").json()["components"]["schemas"]
    assert components["FeaturesRequest"]["properties"]["features"]["maxItems"] == 8
    assert components["BatchRequest"]["properties"]["rows"]["items"] == {"$ref": "#/components/schemas/FeaturesRequest"}
    assert client.get("/docs").status == 200 and b"swagger" in client.get("/docs").body.lower()


@pytest.mark.slow
@pytest.mark.parametrize("headers, status, message", [
    ({}, 401, "Admin routes need the X-Admin-Key header."),
    ({"X-Admin-Key": "wrong-key-wrong-key"}, 401, "Invalid X-Admin-Key."),
])
def test_admin_routes_need_the_admin_key(client, headers, status, message):
    for path in ("/admin/reload", "/admin/rollback"):
        reply = client.post(path, headers=headers)
        assert (reply.status, reply.json()["detail"]) == (status, message)
    assert client.get("/admin/versions", headers=headers).status == status


@pytest.mark.slow
def test_info_describes_the_live_model(client, models):
    root = models[0]
    serve_version(client, "3")
    info = client.get("/info").json()
    assert info["task"] == "classification" and info["labels"] == LABELS and info["version"] == "3"
    assert info["signature"] == {"task": "classification", "vocab_size": None, "input_dim": 4, "max_seq_len": 8,
                                 "num_outputs": 3, "inputs": "features"}
    assert info["input_schema"]["properties"]["features"]["maxItems"] == 8
    assert set(info["output_schema"]["properties"]) == {"probabilities", "label", "label_name", "version"}
    predict = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert predict["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NamedClassificationResponse"}
    assert info["sha256"] == file_sha256(root / "3" / "model.ckpt") and info["backend"] == "torch"
    assert [w["version"] for w in info["workers"]] == ["3", "3"]
    assert info["batching"]["max_batch_size"] == 8 and info["batching"]["max_payload_bytes"] == 64_000


@pytest.mark.slow
def test_health_is_litserves_and_only_localhost_listens(server, client):
    reply = client.get("/health")
    assert (reply.status, reply.body) == (200, b"ok")
    assert listening_addresses(server.port) == ["127.0.0.1"]  # the default host, not every interface


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def batches(client: Client) -> float:
    return metric(client.get("/metrics").body.decode(), "nl_serve_batch_size_count")


@pytest.mark.slow
def test_metrics_add_up_across_processes(server, client):
    serve_version(client, "3")
    before = client.get("/metrics").body.decode()
    body = {"features": [[0.5] * 4] * 4}
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: Client(server.port).post("/predict", body).status, range(40)))
    assert statuses == [200] * 40
    after = client.get("/metrics").body.decode()
    delta = lambda name, **kw: metric(after, name, **kw) - metric(before, name, **kw)  # noqa: E731
    assert delta("nl_serve_requests_total", route="/predict", status="200") == 40
    assert delta("nl_serve_request_duration_seconds_count", route="/predict") == 40
    assert metric(after, "nl_serve_requests_in_flight", route="/predict") == 0  # every one came back
    assert metric(after, "nl_serve_requests_in_flight", route="/metrics") == 1  # the request reading them
    assert delta("nl_serve_batch_size_sum") == 40  # requests summed over both workers' batches
    assert delta("nl_serve_inference_duration_seconds_count", version="3") == delta("nl_serve_batch_size_count")
    assert metric(after, "nl_serve_model_version", version="3", backend="torch") == 2  # one per worker


@pytest.mark.slow
def test_hot_reload_under_load_fails_no_request(server, client):
    """Reload twice and roll back while 4 clients keep predicting: every request succeeds, and
    each answer comes from a version that was live while that request was in flight."""
    serve_version(client, "3")
    stop, results = threading.Event(), []

    def load(seed: int) -> None:
        c, rng = Client(server.port), np.random.default_rng(seed)
        while not stop.is_set():
            body = {"features": rng.normal(size=(int(rng.integers(1, 9)), 4)).tolist()}
            sent = time.monotonic()
            reply = c.post("/predict", body)
            results.append((sent, time.monotonic(), reply.status, reply.json().get("version")))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    switches = [(float("-inf"), float("-inf"), "3")]
    try:
        for action, body in (("reload", {"version": "1"}), ("reload", {"version": "2"}), ("rollback", None)):
            time.sleep(0.5)
            started = time.monotonic()
            reply = client.admin(f"/admin/{action}", body)
            assert reply.status == 200, reply
            switches.append((started, time.monotonic(), reply.json()["version"]))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert [s[2] for s in switches] == ["3", "1", "2", "1"]
    failed = [r for r in results if r[2] != 200]
    assert not failed and len(results) > 40, failed[:5]
    for sent, received, _, version in results:
        live = {v for i, (start, _, v) in enumerate(switches)  # live from its switch's start to the next one's end
                if start <= received and (i + 1 == len(switches) or switches[i + 1][1] >= sent)}
        assert version in live, (sent, received, version, switches)
    assert {r[3] for r in results} == {"3", "1", "2"}
    assert client.get("/admin/versions", headers={"X-Admin-Key": ADMIN_KEY}).json() == {
        "live": "1", "history": ["3"], "available": ["1", "2", "3"]}


@pytest.mark.slow
def test_reload_refuses_unknown_broken_and_incompatible_versions(client, models):
    root = models[0]
    serve_version(client, "2")
    reply = client.admin("/admin/reload", {"version": "9"})
    assert reply.status == 404 and "Version '9' is not in model_dir" in reply.json()["detail"]
    assert "available: 1, 2, 3" in reply.json()["detail"]
    save(classifier(5, input_dim=5), root / "4" / "model.ckpt")  # another input size: the schema would lie
    (root / "5").mkdir()
    (root / "5" / "model.ckpt").write_bytes(b"not a checkpoint")
    try:
        reply = client.admin("/admin/reload", {"version": "4"})
        assert reply.status == 409 and "does not fit this server's request schema (input_dim: serving 4, new 5)" in \
            reply.json()["detail"] and "Version '2' stays live" in reply.json()["detail"]
        reply = client.admin("/admin/reload", {"version": "5"})
        assert reply.status == 409 and "failed to load in worker" in reply.json()["detail"]
        assert "CheckpointError" in reply.json()["detail"]
        assert client.post("/predict", {"features": [[0.0] * 4]}).json()["version"] == "2"
        reply = client.admin("/admin/reload")  # no body: the newest version, found on disk now
        assert reply.status == 409 and "Version '5'" in reply.json()["detail"]
    finally:
        shutil.rmtree(root / "4")
        shutil.rmtree(root / "5")
    assert client.admin("/admin/reload").json()["version"] == "3"


@pytest.mark.slow
def test_sigterm_stops_every_process_and_frees_the_port(server):
    """LitServe's own SIGTERM handling leaves workers behind; ours must not (nor its runtime folder)."""
    assert len(server.family) >= 5  # 2 HTTP servers, 2 inference workers, LitServe's manager...
    runtime = list(Path(tempfile.gettempdir()).glob(f"{RUNTIME_PREFIX}{server.proc.pid}-*"))
    assert len(runtime) == 1 and (runtime[0] / "prometheus").is_dir()
    assert server.stop(signal.SIGTERM) == 0
    assert server.survivors() == []
    assert port_is_free(server.port)
    assert not runtime[0].exists()


@pytest.mark.slow
def test_runtime_folders_of_dead_servers_are_swept(tmp_path):
    """A SIGKILLed server cannot clean up; the next server removes what it left, and nothing else."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, other = (tmp_path / f"{RUNTIME_PREFIX}{dead.pid}-x1", tmp_path / f"{RUNTIME_PREFIX}{os.getpid()}-x2",
                          tmp_path / f"{RUNTIME_PREFIX}hot-swap")
    for folder in (stale, live, other):
        (folder / "prometheus").mkdir(parents=True)
    assert sweep_stale_runtimes(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
