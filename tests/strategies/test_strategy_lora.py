"""LoRA under DDP (2 gloo processes) and FSDP2 (``ModelParallelStrategy`` on CPU), through the CLI:
only the adapters change, identically on every rank, and the checkpoint reloads and merges."""

from __future__ import annotations

import pytest
import torch

from strategy_cli import fit_args, read_reports, run_cli, spec, write_override
from nl_lightning.models import TransformerLM

LORA = ["--model.init_args.lora.r=4", "--model.init_args.lora.targets=[q_proj, v_proj, fc2]"]
STRATEGIES = {
    "ddp": "ddp",
    "fsdp2": spec("lightning.pytorch.strategies.ModelParallelStrategy", data_parallel_size=2, tensor_parallel_size=1),
}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_lora_fit_on_two_processes_changes_only_the_adapters(strategy, tmp_path):
    override = write_override(tmp_path / f"{strategy}.yaml", {
        "strategy": STRATEGIES[strategy],
        "logger": False,
        "callbacks": [
            spec("lightning.pytorch.callbacks.ModelCheckpoint", dirpath=str(tmp_path / "checkpoints"), save_last=True),
            spec("strategy_probes.InitialWeights", out_dir=str(tmp_path / "report")),
            spec("strategy_probes.RankReport", out_dir=str(tmp_path / "report")),
        ],
    })
    proc = run_cli(fit_args(
        override, *LORA, "--trainer.devices=2", "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
        "--model.init_args.optimizer.lr=0.01", f"--trainer.default_root_dir={tmp_path}",
    ))
    # q_proj 128 + 128, kv_proj's value half 128 + 128, fc2 (A 4x128, B 32x4) 640; said once, by rank 0
    assert (proc.stdout + proc.stderr).count("LoRA: 1,152 of 30,304 parameters train (3.80%)") == 1

    reports = read_reports(tmp_path / "report")
    assert [(r["rank"], r["global_step"]) for r in reports] == [(0, 4), (1, 4)]
    initial = [torch.load(tmp_path / "report" / f"initial{r}.pt", weights_only=True) for r in (0, 1)]
    final = [torch.load(tmp_path / "report" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(final[0], final[1], rtol=0, atol=0)  # the ranks agree
    adapters = {k for k in initial[0] if k.endswith(("lora_a", "lora_b"))}
    assert len(adapters) == 6 and _changed(initial[0], final[0]) == adapters

    if strategy == "fsdp2":  # adapters and frozen weights alike are sharded
        assert all(set(r["param_types"].values()) == {"DTensor"} for r in reports)
        assert {n.rsplit(".", 1)[1] for n in reports[0]["param_types"]} >= {"lora_a", "lora_b", "weight"}
    else:
        last = tmp_path / "checkpoints" / "last.ckpt"
        model = TransformerLM.load(last)
        torch.testing.assert_close(model.state_dict(), final[0], rtol=0, atol=0)
        idx = torch.randint(0, 256, (2, 16))
        with torch.no_grad():
            torch.testing.assert_close(model.merge_lora()(idx), TransformerLM.load(last)(idx), atol=1e-5, rtol=0)
