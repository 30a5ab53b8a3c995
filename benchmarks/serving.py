"""Loopback load test of ``nl-lightning serve``: a classifier against bare LitServe and a plain FastAPI
app around the same model, ``/batch_predict``, and an LM's concurrent decoding.

    python benchmarks/serving.py           # full: 10 rounds, 2,000 requests per measurement
    python benchmarks/serving.py --quick   # 1 round, 200 requests (a smoke test, not kept)

Load comes from ``hey`` (Go, Debian package ``hey``; installed by this script with apt-get when it
is missing and the script runs as root), so the client takes no Python thread pool's GIL and leaves
the server the cores. The LM load is one asyncio client (one thread) reading streamed answers.
Each server runs in its own process group on 127.0.0.1 and is stopped (SIGSTOP) while another is
measured; rounds rotate which goes first, so a round's runs are adjacent in time.

Classifier (the ``configs/classifier.yaml`` model: 2 layers, d_model 64, 16 steps of 8 features;
one inference worker, one torch thread, ``max_batch_size=8``, ``batch_timeout=0.005``):

- ``ours``: ``nl-lightning serve`` (schema validation, request ids, Prometheus, versions);
- ``bare``: LitServe's own pattern (``decode_request`` builds a tensor, ``predict``, ``encode_response``);
- ``bare_async_auth``: the same with an async no-op ``LitAPI.authorize`` (LitServe's default key
  check is a sync dependency run in a thread pool per request; ours is async): the fair baseline;
- ``bare_unbatched``: that with ``max_batch_size=1`` (LitServe's unbatched loop, no batch wait): LitServe's
  own floor at concurrency 1, the process hop every LitServe server pays, for the latency verdict's context;
- ``fastapi``: a plain FastAPI + uvicorn app, one process, the model called in the endpoint.

Figures: latency at concurrency 1 (p50 / p95 / p99, all rounds), requests/s at ``--concurrency``
(median of rounds, ratio ours / bare_async_auth with its range), ``/batch_predict`` rows/s, non-200
answers, RSS of ours before and after. LM (2 layers, d_model 128, byte vocabulary, 64 new tokens per
request, greedy): generated tokens/s with 1 and with 8 concurrent streaming clients, and time to
first token. Targets: ours p95 < 10 ms at concurrency 1 and <= 1.5x FastAPI's; ours >= 0.95x
bare_async_auth at 32 concurrent; ``/batch_predict`` >= 10,000 rows/s; LM tokens/s with 8 clients
>= 3x one client; 0 errors; RSS growth < 10%. The last stdout line is JSON
(``benchmarks/results/serving.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import litserve as ls
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

#: Code that runs only in child processes, hashed with each result (``_results.code_files``).
MEASURES = ("nl_lightning/serve", "nl_lightning/predict", "nl_lightning/cli.py", "nl_lightning/commands")

BATCHING = {"max_batch_size": 8, "batch_timeout": 0.005}
KINDS = ("ours", "bare", "bare_async_auth", "bare_unbatched", "fastapi")
STEPS, FEATURES = 16, 8
BATCH_ROWS = 256
LM_NEW_TOKENS, LM_CLIENTS = 64, 8


# ---- models ---------------------------------------------------------------------------------------
def _save(model: Any, path: Path) -> Path:
    import lightning as L

    path.parent.mkdir(parents=True)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def make_checkpoint(folder: Path) -> Path:
    from nl_lightning.models import TransformerClassifier, TransformerConfig

    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(input_dim=FEATURES, n_layers=2, d_model=64, n_heads=4,
                                                    max_seq_len=STEPS, position="none", causal=False), num_classes=3)
    return _save(model, folder / "models" / "1" / "model.ckpt")


def make_lm(folder: Path) -> Path:
    from nl_lightning.models import TransformerConfig, TransformerLM

    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=256, n_layers=2, d_model=128, n_heads=4, max_seq_len=256)
    return _save(TransformerLM(config), folder / "lm" / "1" / "model.ckpt")


# ---- the baselines, run as `serving.py --server KIND PORT CHECKPOINT` -------------------------------
class BareAPI(ls.LitAPI):
    """The baseline: a plain LitAPI around the same checkpoint, as LitServe's docs write one."""

    def __init__(self, checkpoint: str, batching: dict[str, Any] = BATCHING) -> None:
        super().__init__(**batching)
        self.checkpoint = checkpoint

    def setup(self, device: str) -> None:
        from nl_lightning.models import load_checkpoint

        torch.set_num_threads(1)
        self.model = load_checkpoint(self.checkpoint).eval()

    def decode_request(self, request: dict) -> torch.Tensor:
        return torch.tensor(request["features"], dtype=torch.float32)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x).float().softmax(-1)

    def encode_response(self, output: torch.Tensor) -> dict:
        return {"probabilities": output.tolist(), "label": int(output.argmax())}


class BareAsyncAuthAPI(BareAPI):
    """The baseline with LitServe's ``authorize`` hook as an async no-op (no thread-pool hop per request)."""

    async def authorize(self) -> None:
        return None


class BareUnbatchedAPI(BareAsyncAuthAPI):
    """The async-authorize baseline unbatched: one request, one forward (``predict`` gets one row)."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return super().predict(x[None])[0]


def run_baseline(kind: str, port: int, checkpoint: str) -> None:
    if kind == "fastapi":
        return run_fastapi(port, checkpoint)
    if kind == "bare_unbatched":
        api = BareUnbatchedAPI(checkpoint, {"max_batch_size": 1})
    else:
        api = (BareAsyncAuthAPI if kind == "bare_async_auth" else BareAPI)(checkpoint)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


def run_fastapi(port: int, checkpoint: str) -> None:
    """A plain FastAPI + uvicorn app (one process) calling the same model in its endpoint."""
    import uvicorn
    from fastapi import FastAPI

    from nl_lightning.models import load_checkpoint

    torch.set_num_threads(1)
    model = load_checkpoint(checkpoint).eval()
    app = FastAPI()

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.post("/predict")
    def predict(request: dict) -> dict:
        with torch.inference_mode():
            probs = model(torch.tensor([request["features"]], dtype=torch.float32)).float().softmax(-1)[0]
        return {"probabilities": probs.tolist(), "label": int(probs.argmax())}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, model_dir: Path, workdir: Path, extra: list[str] = ()) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LIT_SERVER_API_KEY", None)
    if kind in ("ours", "lm"):
        args = ["-m", "nl_lightning", "serve", "--model_dir", str(model_dir), "--port", str(port),
                "--workers_per_device", "1", "--accelerator", "cpu", *extra]
    else:
        args = [__file__, "--server", kind, str(port), str(model_dir / "1" / "model.ckpt")]
    log = open(workdir / f"{kind}.log", "wb")
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=workdir)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {(workdir / f'{kind}.log').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{kind} server not ready")


def pause(proc: subprocess.Popen) -> None:
    """Stop a server's process group: an idle server must not take CPU from the one measured."""
    os.killpg(proc.pid, signal.SIGSTOP)


@contextmanager
def running(proc: subprocess.Popen) -> Iterator[None]:
    os.killpg(proc.pid, signal.SIGCONT)
    time.sleep(0.2)  # every process scheduled again before the first request
    try:
        yield
    finally:
        pause(proc)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def tree_rss_mib(root: int) -> float:
    """RSS of ``root`` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# ---- load: hey ------------------------------------------------------------------------------------
def ensure_hey() -> str:
    """The ``hey`` binary; installed with apt-get (Debian's package) when missing and running as root."""
    found = shutil.which("hey")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing the load generator: apt-get install -y hey", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "hey"], check=False, stdout=subprocess.DEVNULL)
        if shutil.which("hey") is None:  # the package lists may be missing on a fresh image
            subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", "hey"], check=True, stdout=subprocess.DEVNULL)
        return shutil.which("hey")
    raise SystemExit("benchmarks/serving.py needs the load generator `hey`: `sudo apt-get install hey` (Debian / "
                     "Ubuntu) or `go install github.com/rakyll/hey@latest`.")


def hey(binary: str, port: int, path: str, body: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """About ``requests`` POSTs (hey sends ``requests // concurrency`` per connection) from ``concurrency``
    keep-alive connections: how many were sent, their latencies, non-200s and the seconds they spanned."""
    out = subprocess.run([binary, "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
                          "-D", str(body), "-o", "csv", f"http://127.0.0.1:{port}{path}"],
                         check=True, capture_output=True, text=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {"sent": len(rows), "latencies": [float(r["response-time"]) for r in rows],
            "errors": sum(r["status-code"] != "200" for r in rows),
            "seconds": max(float(r["offset"]) + float(r["response-time"]) for r in rows)}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# ---- load: streamed generations -------------------------------------------------------------------
async def _generate(port: int, prompt: str) -> tuple[float, int]:
    """One streamed /predict: (time to first token, tokens received)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"prompt": prompt, "max_new_tokens": LM_NEW_TOKENS, "temperature": 0, "stream": True}).encode()
    writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    started, first, tokens = time.perf_counter(), None, 0
    await writer.drain()
    buffer = b""
    while chunk := await reader.read(65536):
        buffer += chunk
        count = buffer.count(b'"tokens": [') - buffer.count(b'"tokens": []')
        if count and first is None:
            first = time.perf_counter() - started
        tokens = count
    writer.close()
    if b" 200 OK" not in buffer.split(b"\r\n", 1)[0]:
        return first or 0.0, -1
    return first or 0.0, tokens


async def _lm_round(port: int, clients: int, requests_each: int) -> dict[str, Any]:
    async def client(i: int) -> list[tuple[float, int]]:
        return [await _generate(port, f"def f{i}_{j}(x):") for j in range(requests_each)]

    started = time.perf_counter()
    results = [r for rs in await asyncio.gather(*(client(i) for i in range(clients))) for r in rs]
    wall = time.perf_counter() - started
    good = [r for r in results if r[1] >= 0]
    return {"tokens_per_s": sum(t for _, t in good) / wall, "ttft": [f for f, _ in good],
            "errors": len(results) - len(good)}


# ---- the run --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--server", nargs=3, metavar=("KIND", "PORT", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        return run_baseline(args.server[0], int(args.server[1]), args.server[2])
    binary = ensure_hey()
    torch.set_num_threads(1)
    requests = args.requests or (200 if args.quick else 2000)
    rounds = args.rounds or (1 if args.quick else 10)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        figures = classifier_figures(binary, workdir, requests, args.concurrency, rounds)
        figures["lm"] = lm_figures(workdir, 1 if args.quick else 3, rounds)
    figures["targets_met"] = targets(figures)
    print(render(figures))
    write_result("serving", figures, args, quick=args.quick)


def classifier_figures(binary: str, workdir: Path, requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    model_dir = make_checkpoint(workdir).parents[1]
    row = {"features": [[0.1 * (i % 7) - 0.3] * FEATURES for i in range(STEPS)]}
    (workdir / "one.json").write_text(json.dumps(row))
    (workdir / "rows.json").write_text(json.dumps({"rows": [row] * BATCH_ROWS}))
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    stats: dict[str, dict[str, Any]] = {k: {"c1": [], "rps": [], "errors": 0} for k in KINDS}
    batch_rps: list[float] = []
    try:
        for kind in KINDS:
            extra = ["--max_batch_size", "8", "--batch_timeout", "0.005", "--max_payload_size", "10MB"]
            servers[kind] = start(kind, model_dir, workdir, extra)
            pause(servers[kind][0])
        for kind, (proc, port) in servers.items():  # warm-up: first batches, lazy imports, allocator
            with running(proc):
                hey(binary, port, "/predict", workdir / "one.json", 4 * concurrency, concurrency)
                if kind == "ours":
                    hey(binary, port, "/batch_predict", workdir / "rows.json", 8, 2)
            stats[kind]["rss_before"] = tree_rss_mib(proc.pid)
        for r in range(rounds):
            for kind in KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]:
                proc, port = servers[kind]
                with running(proc):
                    one = hey(binary, port, "/predict", workdir / "one.json", requests, 1)
                    many = hey(binary, port, "/predict", workdir / "one.json", requests, concurrency)
                    if kind == "ours":
                        rows = hey(binary, port, "/batch_predict", workdir / "rows.json", max(8, requests // 50), 2)
                        batch_rps.append(BATCH_ROWS * rows["sent"] / rows["seconds"])
                        stats[kind]["errors"] += rows["errors"]
                stats[kind]["c1"] += one["latencies"]
                stats[kind]["rps"].append(many["sent"] / many["seconds"])
                stats[kind]["errors"] += one["errors"] + many["errors"]
                print(f"round {r} {kind:16s} c=1 p50 {1000 * statistics.median(one['latencies']):6.2f} ms, "
                      f"c={concurrency} {stats[kind]['rps'][-1]:7.1f} req/s", flush=True)
        for kind, (proc, _) in servers.items():
            stats[kind]["rss_after"] = tree_rss_mib(proc.pid)
    finally:
        stop_all([p for p, _ in servers.values()])
    figures: dict[str, Any] = {"requests": requests, "concurrency": concurrency, "rounds": rounds, **BATCHING,
                               "batch_rows": BATCH_ROWS}
    for kind, s in stats.items():
        figures[kind] = {
            "c1_p50_ms": round(1000 * percentile(s["c1"], 50), 2), "c1_p95_ms": round(1000 * percentile(s["c1"], 95), 2),
            "c1_p99_ms": round(1000 * percentile(s["c1"], 99), 2), "rps": round(statistics.median(s["rps"]), 1),
            "errors": s["errors"], "rss_before_mib": round(s["rss_before"], 1), "rss_after_mib": round(s["rss_after"], 1),
            "rss_growth": round(s["rss_after"] / s["rss_before"] - 1, 4),
        }
    pairs = [o / b for o, b in zip(stats["ours"]["rps"], stats["bare_async_auth"]["rps"])]
    figures["rps_ratio"] = round(statistics.median(pairs), 3)
    figures["rps_ratio_range"] = [round(min(pairs), 3), round(max(pairs), 3)]
    figures["c1_p95_ratio_fastapi"] = round(figures["ours"]["c1_p95_ms"] / figures["fastapi"]["c1_p95_ms"], 3)
    figures["c1_p95_ratio_fastapi_floor"] = round(figures["bare_unbatched"]["c1_p95_ms"] / figures["fastapi"]["c1_p95_ms"], 3)
    figures["batch_predict_rows_per_s"] = round(statistics.median(batch_rps), 1)
    return figures


def lm_figures(workdir: Path, requests_each: int, rounds: int) -> dict[str, Any]:
    model_dir = make_lm(workdir).parents[1]
    proc, port = start("lm", model_dir, workdir, ["--max_batch_size", str(LM_CLIENTS), "--limits.max_new_tokens",
                                                  str(LM_NEW_TOKENS), "--limits.max_prompt_tokens", "64"])
    one, eight, ttft, errors = [], [], [], 0
    try:
        asyncio.run(_lm_round(port, 2, 1))  # warm-up
        rss_before = tree_rss_mib(proc.pid)
        for r in range(rounds):
            for clients in ((1, LM_CLIENTS) if r % 2 == 0 else (LM_CLIENTS, 1)):
                result = asyncio.run(_lm_round(port, clients, requests_each))
                (one if clients == 1 else eight).append(result["tokens_per_s"])
                ttft += result["ttft"] if clients == LM_CLIENTS else []
                errors += result["errors"]
            print(f"round {r} lm: 1 client {one[-1]:7.1f} tok/s, {LM_CLIENTS} clients {eight[-1]:7.1f} tok/s", flush=True)
        rss_after = tree_rss_mib(proc.pid)
    finally:
        stop_all([proc])
    ratios = [e / o for o, e in zip(one, eight)]
    return {"new_tokens": LM_NEW_TOKENS, "clients": LM_CLIENTS, "tokens_per_s_1": round(statistics.median(one), 1),
            f"tokens_per_s_{LM_CLIENTS}": round(statistics.median(eight), 1),
            "ratio": round(statistics.median(ratios), 2), "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "ttft_p50_ms": round(1000 * percentile(ttft, 50), 1), "ttft_p95_ms": round(1000 * percentile(ttft, 95), 1),
            "errors": errors, "rss_growth": round(rss_after / rss_before - 1, 4)}


def targets(f: dict[str, Any]) -> dict[str, bool]:
    lm = f["lm"]
    return {
        "c1_p95_lt_10ms": f["ours"]["c1_p95_ms"] < 10.0,
        "c1_p95_le_1.5x_fastapi": f["c1_p95_ratio_fastapi"] <= 1.5,
        "rps_ge_0.95x_bare_async_auth": f["rps_ratio"] >= 0.95,
        "batch_predict_ge_10000_rows_per_s": f["batch_predict_rows_per_s"] >= 10_000,
        "lm_8_clients_ge_3x_one": lm["ratio"] >= 3.0,
        "zero_errors": f["ours"]["errors"] == 0 and lm["errors"] == 0,
        "rss_growth_lt_10pct": f["ours"]["rss_growth"] < 0.10 and lm["rss_growth"] < 0.10,
    }


def render(f: dict[str, Any]) -> str:
    if "fastapi" not in f:
        return _render_thread_pool_results(f)
    rows = ["| server | c=1 p50 ms | c=1 p95 ms | c=1 p99 ms | req/s at c=" + str(f["concurrency"])
            + " | errors | RSS before → after (MiB) |", "|---|---|---|---|---|---|---|"]
    names = {"ours": "`nl-lightning serve`", "bare": "bare LitServe `LitAPI`",
             "bare_async_auth": "bare `LitAPI`, async no-op `authorize`",
             "bare_unbatched": "bare `LitAPI`, async `authorize`, unbatched", "fastapi": "plain FastAPI + uvicorn"}
    for kind, name in names.items():
        if kind not in f:  # results from before the unbatched baseline
            continue
        s = f[kind]
        rows.append(f"| {name} | {s['c1_p50_ms']} | {s['c1_p95_ms']} | {s['c1_p99_ms']} | {s['rps']} | {s['errors']} | "
                    f"{s['rss_before_mib']} → {s['rss_after_mib']} ({100 * s['rss_growth']:+.1f}%) |")
    lm, met = f["lm"], f["targets_met"]
    low, high = f["rps_ratio_range"]
    verdict = "; ".join(f"{name} {'met' if ok else '**not met**'}" for name, ok in met.items())
    return "\n".join(rows) + (
        f"\n\nhey, {f['requests']} requests per measurement x {f['rounds']} rounds; max_batch_size "
        f"{f['max_batch_size']}, batch_timeout {f['batch_timeout']} s. Ours / bare with async authorize at "
        f"{f['concurrency']} concurrent: **{f['rps_ratio']}x** (range {low}–{high}); ours / FastAPI p95 at "
        f"concurrency 1: **{f['c1_p95_ratio_fastapi']}x**{_floor(f)}; `/batch_predict` ({f['batch_rows']} rows per request): "
        f"**{f['batch_predict_rows_per_s']:.0f} rows/s**. LM ({lm['new_tokens']} new tokens, greedy, streamed): "
        f"{lm['tokens_per_s_1']} tokens/s with 1 client, {lm[f'tokens_per_s_{LM_CLIENTS}']} with {lm['clients']} "
        f"(**{lm['ratio']}x**, range {lm['ratio_range'][0]}–{lm['ratio_range'][1]}), time to first token p50 "
        f"{lm['ttft_p50_ms']} ms / p95 {lm['ttft_p95_ms']} ms with {lm['clients']} clients. Targets: {verdict}.")


def _floor(f: dict[str, Any]) -> str:
    """LitServe's own floor at concurrency 1 (the unbatched bare server) against FastAPI, where measured."""
    if "bare_unbatched" not in f:
        return ""
    return (f" (LitServe's own floor, the unbatched bare `LitAPI`: p95 {f['bare_unbatched']['c1_p95_ms']} ms, "
            f"{f['c1_p95_ratio_fastapi_floor']}x FastAPI's)")


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    verdict = "met" if all(figures["targets_met"].values()) else "**not met**"
    if "fastapi" not in figures:  # the results of this script's first version
        return ("`nl-lightning serve` vs a bare LitServe `LitAPI`, requests/s",
                f"{figures['throughput_ratio']}x, {figures['ours']['errors']} errors (targets: {verdict})")
    return ("`nl-lightning serve`: p95 at concurrency 1, vs bare LitServe at 32 concurrent, LM 8 clients vs 1",
            f"{figures['ours']['c1_p95_ms']} ms, {figures['rps_ratio']}x, {figures['lm']['ratio']}x (targets: {verdict})")


def _render_thread_pool_results(figures: dict[str, Any]) -> str:
    """Results of this script's first version (a Python thread-pool client), rendered as it did until a new run."""
    rows = ["| server | req/s | p50 ms | p95 ms | p99 ms | errors | RSS before → after (MiB) |", "|---|---|---|---|---|---|---|"]
    for kind, name in (("ours", "`nl-lightning serve`"), ("bare", "bare LitServe `LitAPI`"),
                       ("bare_async_auth", "bare `LitAPI`, async no-op `authorize`")):
        if kind not in figures:
            continue
        f = figures[kind]
        rows.append(f"| {name} | {f['rps']} | {f['p50_ms']} | {f['p95_ms']} | {f['p99_ms']} | {f['errors']} | "
                    f"{f['rss_before_mib']} → {f['rss_after_mib']} ({100 * f['rss_growth']:+.1f}%) |")
    met = figures["targets_met"]
    low, high = figures.get("throughput_ratio_range", [figures["throughput_ratio"]] * 2)
    verdict = "; ".join(f"{name} {'met' if ok else '**not met**'}" for name, ok in (
        ("0 errors", met["zero_errors"]), (">= 0.9x bare throughput", met["throughput_ratio_ge_0.9"]),
        ("RSS growth < 10%", met["rss_growth_lt_10pct"])))
    return "\n".join(rows) + (
        f"\n\n{figures['requests']} requests x {figures['rounds']} rounds, {figures['concurrency']} concurrent, "
        f"max_batch_size {figures['max_batch_size']}, batch_timeout {figures['batch_timeout']} s: ours / bare "
        f"throughput **{figures['throughput_ratio']}x** (median of the rounds' ratios; range "
        f"{low}–{high}). Targets: {verdict}." + _features_line_v1(figures))


def _features_line_v1(figures: dict[str, Any]) -> str:
    if "features_ratio" not in figures:
        return ""
    low, high = figures["features_ratio_range"]
    return (f" Against the bare server with an async no-op `authorize` (LitServe's default key check is a sync "
            f"dependency, run in a thread pool per request; ours is async), ours is **{figures['features_ratio']}x** "
            f"(range {low}–{high}): the cost of schema validation, request ids, Prometheus and versions.")


if __name__ == "__main__":
    main()
