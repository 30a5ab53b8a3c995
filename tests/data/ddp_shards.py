"""Run by test_ddp.py: 2-process CPU DDP over an HDF5 file; each rank saves the rows it saw.

Usage: python ddp_shards.py DATA.h5 OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from nl_lightning.data import FileDataModule


class RecordRows(L.LightningModule):
    """Records x[:, 0] (the row index written into the data) of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.seen: dict[str, list[int]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"] += batch["x"][:, 0].long().tolist()
        return torch.nn.functional.cross_entropy(self.layer(batch["x"]), batch["y"])

    def validation_step(self, batch, batch_idx):
        self.seen["val"] += batch["x"][:, 0].long().tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(data: str, out: str) -> None:
    dm = FileDataModule(train_path=data, features="/x", targets="/y", val_fraction=0.2, batch_size=4)
    model = RecordRows()
    trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out)
    trainer.fit(model, dm)
    rows = {split: sorted(dm.datasets[split].rows.tolist()) for split in ("train", "val")}
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps({"seen": model.seen, "rows": rows}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
