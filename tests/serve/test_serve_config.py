"""ServeConfig / ServeLimits: every bad setting is refused with the fix in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from nl_lightning.commands.serve import build_parser
from nl_lightning.serve.config import ServeConfig, ServeLimits, parse_size

CONFIG = Path(__file__).parents[2] / "configs" / "serve.yaml"


def test_defaults_bind_localhost():
    config = ServeConfig()
    assert config.host == "127.0.0.1" and config.max_payload_bytes == 1_000_000
    assert config.admin_key_env == "NL_SERVE_ADMIN_KEY"


def test_shipped_yaml_matches_the_defaults():
    args = build_parser().parse_args(["--config", str(CONFIG)])
    defaults = build_parser().parse_args([])
    changed = {k for k in vars(args) if k not in ("config", "model_dir") and args[k] != defaults[k]}
    assert not changed and args.model_dir == "runs/classifier"


@pytest.mark.parametrize("value, size", [("1MB", 10**6), ("512KiB", 512 * 1024), (" 2 gb", 2 * 10**9),
                                         (4096, 4096), ("1.5KB", 1500), ("100", 100)])
def test_sizes(value, size):
    assert parse_size(value, "max_payload_size") == size


@pytest.mark.parametrize("kwargs, message", [
    ({"host": "localhost"}, "host='localhost': LitServe binds '127.0.0.1'"),
    ({"port": 80}, r"port=80 must be in \[1024, 65535\]"),
    ({"max_payload_size": "lots"}, "max_payload_size='lots' is not a size; write e.g. 1MB"),
    ({"max_payload_size": 0}, "max_payload_size=0 must be at least 1 byte"),
    ({"batch_timeout": 31.0}, r"batch_timeout=31.0 must be >= 0 and below timeout=30.0"),
    ({"workers_per_device": 0}, "workers_per_device=0 must be a positive integer"),
    ({"admin_key_env": "s3cr3t key!"}, "must be the NAME of an environment variable"),
    ({"labels": ["a", "a"]}, "labels=\\['a', 'a'\\] has duplicates"),
    ({"reload_timeout": 0}, "reload_timeout=0 must be > 0 seconds"),
    ({"cors_origins": ["app.example.com/x"]}, "cors_origins entry 'app.example.com/x' is not an origin; write "
                                              "scheme://host"),
    ({"rows_per_forward": 0}, "rows_per_forward=0 must be a positive integer"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"default_new_tokens": 300}, "limits.default_new_tokens=300 exceeds limits.max_new_tokens=256"),
    ({"default_temperature": 3.0}, r"limits.default_temperature=3.0 must lie in \[0, max_temperature=2.0\]"),
    ({"max_new_tokens": 0}, "limits.max_new_tokens=0 must be a positive integer"),
    ({"max_seq_len": -1}, "limits.max_seq_len=-1 must be a positive integer"),
])
def test_bad_limits(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServeLimits(**kwargs)


def test_limits_from_yaml_become_a_dataclass():
    assert ServeConfig(limits={"max_new_tokens": 8, "default_new_tokens": 4}).limits.max_new_tokens == 8


def test_a_taken_port_fails_before_the_model_loads_and_after_the_sweep(tmp_path, capsys, monkeypatch):
    """The runtime folder a SIGKILLed server left goes even when the new one is refused (its port held)."""
    import socket
    import subprocess
    import sys
    import tempfile

    from nl_lightning.cli import main
    from nl_lightning.serve.server import RUNTIME_PREFIX

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"{RUNTIME_PREFIX}{dead.pid}-left-by-a-killed-server"
    stale.mkdir()
    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model_dir", str(tmp_path / "not-even-there"), "--port", str(port)]) == 1
    assert f"port={port} on 127.0.0.1 is taken" in capsys.readouterr().err
    assert not stale.exists()


def test_an_unknown_argument_is_one_line(capsys, monkeypatch):
    from nl_lightning.cli import main

    monkeypatch.setattr("sys.argv", ["nl-lightning"])
    assert main(["serve", "--model_dri", "runs/x"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [e.lower() for e in err] == [  # jsonargparse < 4.42 writes 'Unrecognized'
        "nl-lightning: error: unrecognized arguments: --model_dri runs/x (see nl-lightning serve --help)"]
