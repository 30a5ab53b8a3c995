"""FSDP2 on CPU: ``ModelParallelStrategy`` runs ``TaskModule.configure_model`` (``fully_shard``).

Lightning's ``FSDPStrategy`` (FSDP1) is the GPU path and refuses ``accelerator="cpu"``; on CPU the
sharded path is ``ModelParallelStrategy(data_parallel_size=N, tensor_parallel_size=1)`` with gloo,
which hands ``configure_model`` a device mesh whose "data_parallel" dimension it shards over.
"""

from __future__ import annotations

import re
import subprocess
import sys

import lightning as L
import pytest
import torch

from strategy_cli import fit_args, read_reports, run_cli, spec, write_override
from nl_lightning.models import CheckpointError, TransformerLM

MODEL_PARALLEL = spec("lightning.pytorch.strategies.ModelParallelStrategy", data_parallel_size=2, tensor_parallel_size=1)


def test_fsdp_strategy_refuses_cpu():
    """``strategy="fsdp"`` is for CUDA; the message names the fix."""
    with pytest.raises(ValueError, match=r"The strategy `fsdp` requires a GPU accelerator.*accelerator='cpu'"):
        L.Trainer(accelerator="cpu", devices=2, strategy="fsdp")


@pytest.mark.slow
def test_model_parallel_fsdp2_shards_trains_and_writes_distributed_checkpoint(tmp_path):
    # TextSampleCallback included: a forward through FSDP2-sharded parameters is a collective
    # (all-gather), so the callback must sample on every rank, not on rank 0 alone, or this hangs.
    override = write_override(tmp_path / "fsdp2.yaml", {
        "strategy": MODEL_PARALLEL,
        "logger": False,
        "callbacks": [
            spec("lightning.pytorch.callbacks.ModelCheckpoint", dirpath=str(tmp_path / "checkpoints"),
                 monitor="val/loss", save_last=True),
            spec("strategy_probes.RankReport", out_dir=str(tmp_path / "report")),
            spec("nl_lightning.callbacks.TextSampleCallback", max_new_tokens=8),
        ],
    })
    run_cli(fit_args(
        override, "--trainer.devices=2", "--trainer.max_steps=6", "--trainer.val_check_interval=6",
        "--trainer.check_val_every_n_epoch=null", "--trainer.limit_val_batches=2",
        f"--trainer.default_root_dir={tmp_path}",
    ))

    reports = read_reports(tmp_path / "report")
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["strategy"] == "ModelParallelStrategy" and r["global_step"] == 6 for r in reports)
    for report in reports:  # every parameter is a DTensor sharded on dim 0 when the optimizer steps
        assert set(report["param_types"].values()) == {"DTensor"}, report["param_types"]
        assert report["placements"] == ["(Shard(dim=0),)"]
        assert report["module_types"] == ["FSDPCausalLM", "FSDPTransformerBlock"]
    assert sum(r["local_numel"] for r in reports) == reports[0]["full_numel"]  # each rank holds its half
    assert all(r["local_numel"] < r["full_numel"] for r in reports)

    weights = [torch.load(tmp_path / "report" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)  # gathered full weights agree

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_dir(), "ModelParallelStrategy writes a torch.distributed.checkpoint directory"
    assert {".metadata", "meta.pt", "__0_0.distcp", "__1_0.distcp"} <= {p.name for p in ckpt.iterdir()}
    with pytest.raises(CheckpointError, match="sharded torch.distributed.checkpoint folder") as refused:
        TransformerLM.load(ckpt)  # the safe loader refuses DCP's pickled metadata, naming the fix
    # The fix the message gives, run as a user would copy it: one ordinary file, loaded safely.
    command = re.search(r"nl-lightning consolidate (\S+) --output (\S+)", str(refused.value))
    subprocess.run([sys.executable, "-m", "nl_lightning", "consolidate", command[1], "--output", command[2]],
                   check=True, capture_output=True, timeout=300)
    model = TransformerLM.load(command[2])
    torch.testing.assert_close(model.state_dict(), weights[0], rtol=0, atol=0)
    assert torch.isfinite(model(torch.randint(0, 256, (2, 16)))).all()
