"""Helpers for the strategy tests: run ``nl-lightning`` on the shipped config with a tiny model.

Each run starts from ``configs/char_lm.yaml`` and layers a test-only YAML on top (second
``--config``): jsonargparse replaces the ``trainer.callbacks`` list wholesale, which is how these
tests swap the shipped callbacks for temporary-dir checkpoints and the probes in
``strategy_probes.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHAR_LM = REPO / "configs" / "char_lm.yaml"
# `python -m nl_lightning` is the console script's entry point, run by this interpreter: the tests
# never depend on where pip put the script, so they always run.
NL_LIGHTNING = [sys.executable, "-m", "nl_lightning"]
# 1 layer, d_model 32, 32-token windows, 256 per batch: ~29 K parameters, a step in milliseconds.
TINY = [
    "--model.init_args.config.n_layers=1", "--model.init_args.config.d_model=32", "--model.init_args.config.n_heads=2",
    "--model.init_args.config.max_seq_len=32", "--data.init_args.seq_len=32", "--data.init_args.batch_size=256",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]
TINY_SEQ_LEN, TINY_BATCH = 32, 256


def spec(class_path: str, **init_args: Any) -> dict[str, Any]:
    """A ``class_path`` / ``init_args`` entry (callback, logger, strategy) for a test YAML."""
    return {"class_path": class_path, "init_args": init_args}


def write_override(path: Path, trainer: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"trainer": trainer}, sort_keys=False))
    return path


def fit_args(override: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CHAR_LM), "--config", str(override), *TINY, *extra]


def run_cli(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """``nl-lightning ARGS`` in a subprocess, as a user runs it; fails with the output's tail."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    env.pop("LOCAL_RANK", None)  # a leftover rank would make Lightning think it is a launched child
    # Own session, so a hung run's whole process group (Lightning's rank > 0 children too) can go.
    proc = subprocess.Popen([*NL_LIGHTNING, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"nl-lightning {' '.join(args)} hung for {timeout} s (a collective on one rank only?)\n"
                    f"{_tail(stderr)}")
    if proc.returncode != 0:
        pytest.fail(f"nl-lightning exited {proc.returncode}\nSTDOUT:\n{_tail(stdout)}\nSTDERR:\n{_tail(stderr)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def read_reports(out_dir: Path) -> list[dict[str, Any]]:
    """The ``RankReport`` files of every rank, ordered by rank."""
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))]


def train_batches_per_rank(world_size: int) -> int:
    """Optimizer steps of one epoch: DistributedSampler pads to ceil(N / W), loaders drop the last."""
    from nl_lightning.data import CharTextDataModule

    dm = CharTextDataModule(seq_len=TINY_SEQ_LEN, batch_size=TINY_BATCH)
    dm.setup("fit")
    return -(-len(dm.train_set) // world_size) // TINY_BATCH


def _tail(text: str | None, n: int = 4000) -> str:
    return (text or "")[-n:]
