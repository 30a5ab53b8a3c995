"""Child process for test_checkpoint_io: train a tiny model with a checkpoint every step, and on the
``--kill-at``-th checkpoint write half of its bytes, then SIGKILL this process mid-write."""

from __future__ import annotations

import argparse
import io
import os
import signal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from nl_lightning.models.checkpoint_io import AtomicCheckpointIO


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--kill-at", type=int, required=True)
    args = parser.parse_args()

    real_save, saves = torch.save, [0]

    def dying_save(obj, f, *rest, **kwargs):
        saves[0] += 1
        if saves[0] == args.kill_at:
            buffer = io.BytesIO()
            real_save(obj, buffer, *rest, **kwargs)
            data = buffer.getvalue()
            out = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f  # a path or an open file
            out.write(data[: len(data) // 2])
            out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *rest, **kwargs)

    torch.save = dying_save
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    trainer = L.Trainer(
        max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=args.out, filename="step", every_n_train_steps=1, save_top_k=1,
                                   save_last=False, enable_version_counter=False, save_on_exception=False)],
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4))
    raise SystemExit("not killed")


if __name__ == "__main__":
    main()
