"""Loopback load test: ``nl-lightning serve`` vs a bare LitServe ``LitAPI`` around the same model.

    python benchmarks/serving.py           # 2,000 requests, 32 concurrent, 10 rounds per server
    python benchmarks/serving.py --quick   # 200 requests, 8 concurrent, 1 round (< 1 min)

The servers run on 127.0.0.1, each in its own process group, and are stopped (SIGSTOP) while
another is measured (an idle LitServe worker polls its queue every millisecond). Each serves the
same checkpoint (the ``configs/classifier.yaml`` model: 2 layers, d_model 64, 16 steps of 8
features) with one inference worker, one torch thread, ``max_batch_size=8``,
``batch_timeout=0.005``. The bare server is the LitServe example pattern (``decode_request``
builds a tensor from the JSON, ``batch`` stacks, softmax in ``predict``); ours adds schema
validation, request ids, Prometheus and version bookkeeping. A third server, ``bare_async_auth``,
is the bare one with an ``async`` no-op ``LitAPI.authorize``: LitServe's default key check is a
sync function, which FastAPI runs in a thread pool on every request, and ours is async, so
ours / bare_async_auth is the cost of our features alone. Rounds rotate which server goes first,
so a round's runs are adjacent in time. A round sends ``--requests`` POSTs from
``--concurrency`` client threads (keep-alive ``http.client``; every request a valid 16 x 8
feature sequence) and stops by itself. Figures: requests/s per round (median over rounds), each
throughput ratio as the median of the rounds' ratios with their range (this VM's speed drifts by
20% within a minute, so only runs close in time compare), latency percentiles over all rounds,
non-200 answers, and the RSS of each server's whole process tree before the first round (after a
warm-up) and after the last. Targets: 0 errors, ours >= 0.9x bare throughput, RSS growth < 10%.
The last stdout line is JSON (``benchmarks/results/serving.json``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import litserve as ls
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result  # noqa: E402

BATCHING = {"max_batch_size": 8, "batch_timeout": 0.005}
KINDS = ("ours", "bare", "bare_async_auth")
STEPS, FEATURES = 16, 8


def make_checkpoint(folder: Path) -> Path:
    import lightning as L

    from nl_lightning.models import TransformerClassifier, TransformerConfig

    torch.manual_seed(0)
    model = TransformerClassifier(TransformerConfig(input_dim=FEATURES, n_layers=2, d_model=64, n_heads=4,
                                                    max_seq_len=STEPS, position="none", causal=False), num_classes=3)
    path = folder / "models" / "1" / "model.ckpt"
    path.parent.mkdir(parents=True)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


class BareAPI(ls.LitAPI):
    """The baseline: a plain LitAPI around the same checkpoint, as LitServe's docs write one."""

    def __init__(self, checkpoint: str) -> None:
        super().__init__(**BATCHING)
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


def bare_server(port: int, checkpoint: str, async_auth: bool = False) -> None:
    api = (BareAsyncAuthAPI if async_auth else BareAPI)(checkpoint)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, checkpoint: Path, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kind == "ours":
        args = ["-m", "nl_lightning", "serve", "--model_dir", str(checkpoint.parents[1]), "--port", str(port),
                "--max_batch_size", str(BATCHING["max_batch_size"]), "--batch_timeout", str(BATCHING["batch_timeout"]),
                "--workers_per_device", "1", "--accelerator", "cpu"]
    else:
        args = [__file__, "--bare-server", str(port), str(checkpoint), kind]
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
    """Stop a server's whole process group: an idle LitServe worker polls its queue every millisecond,
    which would take CPU from the server being measured on a 2-core machine."""
    os.killpg(proc.pid, signal.SIGSTOP)


@contextmanager
def running(proc: subprocess.Popen) -> Iterator[None]:
    os.killpg(proc.pid, signal.SIGCONT)
    time.sleep(0.2)  # every process scheduled again before the first request
    try:
        yield
    finally:
        pause(proc)


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


def load(port: int, requests: int, concurrency: int, body: bytes) -> tuple[float, list[float], int]:
    """Send ``requests`` POSTs from ``concurrency`` threads; (wall seconds, latencies, non-200 count)."""
    latencies: list[float] = []
    errors = [0]
    remaining = [requests]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, errors[0]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--bare-server", nargs=3, metavar=("PORT", "CHECKPOINT", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        return bare_server(int(args.bare_server[0]), args.bare_server[1], args.bare_server[2] == "bare_async_auth")
    torch.set_num_threads(1)  # the client side; each server's worker runs one thread too
    requests = args.requests or (200 if args.quick else 2000)
    concurrency = args.concurrency or (8 if args.quick else 32)
    rounds = args.rounds or (1 if args.quick else 10)
    body = json.dumps({"features": [[0.1 * (i % 7) - 0.3] * FEATURES for i in range(STEPS)]}).encode()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        checkpoint = make_checkpoint(workdir)
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for kind in KINDS:
                servers[kind] = start(kind, checkpoint, workdir)
                pause(servers[kind][0])
            stats: dict[str, dict[str, Any]] = {k: {"rps": [], "latencies": [], "errors": 0} for k in servers}
            for kind, (proc, port) in servers.items():  # warm-up: first batches, lazy imports, allocator
                with running(proc):
                    load(port, 4 * concurrency, concurrency, body)
                stats[kind]["rss_before"] = tree_rss_mib(proc.pid)
            for r in range(rounds):
                for kind in KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]:
                    with running(servers[kind][0]):
                        wall, latencies, errors = load(servers[kind][1], requests, concurrency, body)
                    stats[kind]["rps"].append(requests / wall)
                    stats[kind]["latencies"] += latencies
                    stats[kind]["errors"] += errors
                    print(f"round {r} {kind:4s}: {requests / wall:7.1f} req/s, {errors} errors", flush=True)
            for kind, (proc, _) in servers.items():
                stats[kind]["rss_after"] = tree_rss_mib(proc.pid)
        finally:
            for proc, _ in servers.values():
                os.killpg(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGINT)
            for proc, _ in servers.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    figures: dict[str, Any] = {"requests": requests, "concurrency": concurrency, "rounds": rounds, **BATCHING}
    for kind, s in stats.items():
        lat = s["latencies"]
        figures[kind] = {
            "rps": round(statistics.median(s["rps"]), 1), "p50_ms": round(1000 * percentile(lat, 50), 2),
            "p95_ms": round(1000 * percentile(lat, 95), 2), "p99_ms": round(1000 * percentile(lat, 99), 2),
            "errors": s["errors"], "rss_before_mib": round(s["rss_before"], 1), "rss_after_mib": round(s["rss_after"], 1),
            "rss_growth": round(s["rss_after"] / s["rss_before"] - 1, 4),
        }
    pairs = [o / b for o, b in zip(stats["ours"]["rps"], stats["bare"]["rps"])]
    figures["throughput_ratio"] = round(statistics.median(pairs), 3)
    figures["throughput_ratio_range"] = [round(min(pairs), 3), round(max(pairs), 3)]
    features = [o / b for o, b in zip(stats["ours"]["rps"], stats["bare_async_auth"]["rps"])]
    figures["features_ratio"] = round(statistics.median(features), 3)
    figures["features_ratio_range"] = [round(min(features), 3), round(max(features), 3)]
    figures["targets_met"] = {
        "zero_errors": figures["ours"]["errors"] == 0,
        "throughput_ratio_ge_0.9": figures["throughput_ratio"] >= 0.9,
        "rss_growth_lt_10pct": figures["ours"]["rss_growth"] < 0.10,
    }
    print(render(figures))
    write_result("serving", figures, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
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
        f"{low}–{high}). Targets: {verdict}." + _features_line(figures))


def _features_line(figures: dict[str, Any]) -> str:
    if "features_ratio" not in figures:
        return ""
    low, high = figures["features_ratio_range"]
    return (f" Against the bare server with an async no-op `authorize` (LitServe's default key check is a sync "
            f"dependency, run in a thread pool per request; ours is async), ours is **{figures['features_ratio']}x** "
            f"(range {low}–{high}): the cost of schema validation, request ids, Prometheus and versions.")


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    verdict = "met" if all(figures["targets_met"].values()) else "**not met**"
    return ("`nl-lightning serve` vs a bare LitServe `LitAPI`, requests/s",
            f"{figures['throughput_ratio']}x, {figures['ours']['errors']} errors (targets: {verdict})")


if __name__ == "__main__":
    main()
