"""A real ``nl-lightning serve`` in a subprocess on 127.0.0.1 (a free port), and a small HTTP client.

The server runs in its own session, so teardown can always stop it and everything it started,
even when a test fails half way; ``stop`` is the graceful path a test checks.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port``: a new listener can bind it (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


class Reply:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


class Client:
    """One keep-alive HTTP connection (one per thread under load); ``api_key`` goes in ``X-API-Key``."""

    def __init__(self, port: int, timeout: float = 60.0, api_key: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.api_key = api_key

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json", **({"X-API-Key": self.api_key} if self.api_key else {}),
                **(headers or {})}
        hdrs = {k: v for k, v in hdrs.items() if v is not None}  # a None value drops the header
        try:
            self.conn.request(method, path, body=data, headers=hdrs)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()  # the server closed an idle keep-alive connection: reconnect once
            self.conn.request(method, path, body=data, headers=hdrs)
            response = self.conn.getresponse()
        return Reply(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def admin(self, path: str, body: Any = None) -> Reply:
        return self.post(path, body, headers={"X-Admin-Key": ADMIN_KEY})

    def close(self) -> None:
        self.conn.close()


class ServerProcess:
    """``python -m nl_lightning serve --config <yaml>`` with ``settings`` written to that YAML."""

    def __init__(self, workdir: Path, api_key: str | None = None, **settings: Any) -> None:
        """``api_key``: start with LitServe's ``LIT_SERVER_API_KEY`` set to it."""
        self.workdir, self.port, self.api_key = workdir, free_port(), api_key
        self.config = workdir / "serve.yaml"
        self.config.write_text(yaml.safe_dump({"port": self.port, "log_level": "info", **settings}))
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.family: dict[int, str] = {}

    def start(self, timeout: float = 240.0) -> "ServerProcess":
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NL_SERVE_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
        env.pop("LIT_SERVER_API_KEY", None)
        if self.api_key:
            env["LIT_SERVER_API_KEY"] = self.api_key
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nl_lightning", "serve", "--config", str(self.config)],
            cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.client(timeout=5).get("/health").status == 200:
                    self.family = descendants(self.proc.pid)
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log_tail()}")

    def client(self, timeout: float = 60.0) -> Client:
        return Client(self.port, timeout, self.api_key)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        """Send ``sig`` to the main process only, as a supervisor would, and wait for it to exit."""
        self.family = {**self.family, **descendants(self.proc.pid)}
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def survivors(self, wait: float = 15.0) -> list[str]:
        """Processes of the server's family still alive (waits up to ``wait`` s for stragglers)."""
        deadline = time.monotonic() + wait
        while True:
            alive = [f"{pid} {cmd}" for pid, cmd in self.family.items() if _alive(pid, cmd)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)

    def kill(self) -> None:
        """Teardown: whatever is left of the session this server started."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
        for pid, cmd in self.family.items():
            if _alive(pid, cmd):
                os.kill(pid, signal.SIGKILL)
        if not self.log.closed:
            self.log.close()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def listening_addresses(port: int) -> list[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
            found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def descendants(root: int) -> dict[int, str]:
    """pid -> a fingerprint (start time + command line) of every process below ``root``, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                fingerprint = _fingerprint(pid)
                if fingerprint:
                    found[pid] = fingerprint
                    frontier.append(pid)
    return found


def _fingerprint(pid: int) -> str | None:
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return None
    return f"{start} {cmd}"


def _alive(pid: int, fingerprint: str) -> bool:
    """Same process (start time + command) and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _fingerprint(pid) == fingerprint
