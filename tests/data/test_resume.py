"""Exact resume: a run SIGKILLed mid-epoch and resumed from last.ckpt ends with the same weights
(bit for bit) as the same run uninterrupted, for the byte text, tokenized text and file DataModules, with shuffling,
in-process loading and 2 worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import resume_probe

PROBE = Path(__file__).with_name("resume_probe.py")


def _source(kind: str, tmp_path: Path) -> str:
    if kind == "tokens":  # three documents and a tokenizer trained on them: ~20 batches of 8 x 16 tokens
        from nl_lightning.data.bpe import save_tokenizer, train_bpe

        rng = np.random.default_rng(0)
        words = ["def", "class", "return", "lambda", "yield", "import", "async", "with", "for", "while"]
        texts = [" ".join(rng.choice(words, size=1200)) for _ in range(3)]
        for i, text in enumerate(texts):
            (tmp_path / f"doc{i}.txt").write_text(text)
        save_tokenizer(train_bpe(texts, vocab_size=300), tmp_path / "tokenizer.json")
        return str(tmp_path)
    if kind == "char":
        rng = np.random.default_rng(0)
        words = ["def", "class", "return", "lambda", "yield", "import", "async", "with"]
        text = " ".join(rng.choice(words, size=900))
        (tmp_path / "text.txt").write_text(text)
        return str(tmp_path / "text.txt")
    rng = np.random.default_rng(0)
    folder = tmp_path / "npy"
    folder.mkdir()
    x = rng.standard_normal((42, 4, 3)).astype(np.float32) * 5 + 2  # 42 rows / batch 4: 11 batches an epoch
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (x.mean((1, 2)) > 2).astype(np.int64))
    return str(folder)


def _probe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("kind, workers", [
    ("char", 0),  # ~5 s: `make test-fast` keeps one SIGKILL-then-resume test
    *[pytest.param(kind, workers, marks=pytest.mark.slow)
      for kind in ("char", "file", "tokens") for workers in (0, 2) if (kind, workers) != ("char", 0)],
])
def test_sigkill_then_resume_equals_uninterrupted(kind, workers, tmp_path):
    args = ["--data", kind, "--source", _source(kind, tmp_path), "--workers", str(workers), "--out", str(tmp_path),
            "--max-steps", "16", "--every", "6"]
    killed = _probe(*args, "--kill-at", "14")  # checkpoints at steps 6 and 12; killed 2 steps later
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12
    if kind == "file":  # 11 batches an epoch: step 12 is one batch into the second epoch
        assert last["epoch"] == 1
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"batches": 12 % 11 if kind == "file" else 12}]
    if kind == "tokens":  # the token stream's hash rides along, so a resume on other data is refused
        assert len(last["TokenizedTextDataModule"]["tokens_sha256"]) == 64
    # The resume and the uninterrupted reference run here (no kill needed), in the probe's settings.
    probe_args = resume_probe.parse([*args])
    got = resume_probe.fit(probe_args, tmp_path / "killed", ckpt_path=str(tmp_path / "killed" / "last.ckpt")).state_dict()
    want = resume_probe.fit(probe_args, tmp_path / "reference").state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), f"{key} differs after resume"
