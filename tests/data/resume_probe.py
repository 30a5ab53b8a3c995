"""Run by tests/data/test_resume.py in a subprocess: train and SIGKILL itself at a step. The test
imports ``fit`` to resume from last.ckpt and to train the same run uninterrupted for comparison."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.data import CharTextDataModule, FileDataModule, TokenizedTextDataModule
from nl_lightning.models import TransformerClassifier, TransformerConfig, TransformerLM


class KillAt(L.Callback):
    """SIGKILL this process at the end of training step ``step`` (no cleanup, no final save)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def build(args: argparse.Namespace) -> tuple[L.LightningModule, L.LightningDataModule]:
    L.seed_everything(0, verbose=False)
    if args.data == "tokens":  # a trained tokenizer over several documents (see test_resume._source)
        tokenizer = str(Path(args.source) / "tokenizer.json")
        dm = TokenizedTextDataModule(f"{args.source}/*.txt", tokenizer, seq_len=16, batch_size=8,
                                     num_workers=args.workers, seed=0)
        model = TransformerLM(TransformerConfig(vocab_size=dm.vocab_size, n_layers=1, d_model=16, n_heads=2,
                                                max_seq_len=16), optimizer={"lr": 1e-2}, tokenizer=tokenizer)
    elif args.data == "char":
        dm = CharTextDataModule(path=args.source, seq_len=16, batch_size=8, num_workers=args.workers, seed=0)
        model = TransformerLM(TransformerConfig(n_layers=1, d_model=16, n_heads=2, max_seq_len=16),
                              optimizer={"lr": 1e-2})
    else:
        dm = FileDataModule(train_path=args.source, features="x", targets="y", batch_size=4, shuffle=True,
                            num_workers=args.workers, seed=0, normalize=True)
        model = TransformerClassifier(TransformerConfig(input_dim=3, n_layers=1, d_model=16, n_heads=2, max_seq_len=4,
                                                        position="none"), num_classes=2, optimizer={"lr": 1e-2})
    return model, dm


def fit(args: argparse.Namespace, ckpt_dir: Path, callbacks=(), ckpt_path: str | None = None) -> L.LightningModule:
    model, dm = build(args)
    trainer = L.Trainer(
        max_steps=args.max_steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=ckpt_dir.parent,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=args.every, save_last=True, save_top_k=-1),
                   *callbacks],
    )
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["char", "file", "tokens"], required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=16)
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--kill-at", type=int, default=None)
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    fit(args, args.out / "killed", callbacks=[KillAt(args.kill_at)])
    raise SystemExit(f"not killed at step {args.kill_at}")


if __name__ == "__main__":
    main()
