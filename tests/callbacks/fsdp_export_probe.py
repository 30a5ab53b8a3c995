"""Run by ``test_export.py`` as a script: fit a tiny LM under FSDP2 (``ModelParallelStrategy``, 2 CPU
processes, gloo) with ``ExportCallback`` and ``QuantizationCallback``; each rank then writes what it
saw. Lightning's launcher starts rank 1 by re-running this same command line.

    python tests/callbacks/fsdp_export_probe.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import ModelParallelStrategy

from nl_lightning.callbacks import ExportCallback, QuantizationCallback
from nl_lightning.data import CharTextDataModule
from nl_lightning.export.bundle import ExportConfig
from nl_lightning.export.gather import is_sharded
from nl_lightning.models import TransformerLM

CONFIG = dict(n_layers=1, d_model=32, n_heads=2, max_seq_len=32)


class Report(L.Callback):
    """After the export callbacks: the full weights (gathered here the plain way) and what this rank did."""

    def __init__(self, out: Path, export: ExportCallback, quant: QuantizationCallback) -> None:
        self.out, self.export, self.quant = out, export, quant

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.distributed.tensor import DTensor

        full = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone()
                for k, v in pl_module.state_dict().items()}  # a collective: every rank
        rank = trainer.global_rank
        if rank == 0:
            torch.save(full, self.out / "full_weights.pt")
        report = {"rank": rank, "sharded": is_sharded(pl_module), "exported": self.export.manifest is not None,
                  "quantized": bool(self.quant.results)}
        (self.out / f"rank{rank}.json").write_text(json.dumps(report))


def main(out: Path) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    # torch.export and a BF16 cast: the cheapest formats that need the whole model (ONNX adds ~10 s here).
    # No dirpath: both write into the logger's run folder, found on rank 0 alone without a collective.
    export = ExportCallback(config=ExportConfig(formats=["pt2"], parity_batch_sizes=[1, 2], parity_seq_lens=[8]))
    quant = QuantizationCallback(config={"methods": ["bf16"], "eval_batches": 2})
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_steps=3, limit_val_batches=1, num_sanity_val_steps=0, logger=CSVLogger(out, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        callbacks=[export, quant, Report(out, export, quant)],
    )
    trainer.fit(TransformerLM(CONFIG), CharTextDataModule(seq_len=32, batch_size=8))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
