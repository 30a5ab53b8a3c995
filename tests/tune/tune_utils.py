"""Helpers for the tune tests: tiny fit configs (1 layer, 16 wide, a few batches) and tune configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nl_lightning.tune.config import TuneConfig
from nl_lightning.tune.keys import with_keys

CONFIGS = Path(__file__).parents[2] / "configs"

TINY_CLASSIFIER = {
    "trainer.max_epochs": 3,
    "trainer.limit_train_batches": 4,
    "trainer.limit_val_batches": 2,
    "trainer.log_every_n_steps": 2,
    "trainer.enable_model_summary": False,
    "model.init_args.config.d_model": 16,
    "model.init_args.config.n_layers": 1,
    "model.init_args.config.n_heads": 2,
    "model.init_args.scheduler.warmup_steps": 0,
    "data.init_args.num_samples": 512,
}
TINY_LM = {
    "trainer.max_steps": 30,
    "trainer.val_check_interval": 10,
    "trainer.limit_val_batches": 2,
    "trainer.log_every_n_steps": 5,
    "trainer.enable_model_summary": False,
    "model.init_args.config.d_model": 16,
    "model.init_args.config.n_layers": 1,
    "model.init_args.config.n_heads": 2,
    "model.init_args.config.max_seq_len": 32,
    "model.init_args.scheduler.warmup_steps": 0,
    "data.init_args.seq_len": 32,
    "data.init_args.batch_size": 8,
}


def write_fit(path: Path, shipped: str, overrides: dict[str, Any], drop_callbacks: tuple[str, ...] = ()) -> Path:
    """A shipped fit config with ``overrides`` applied (and callbacks of the named classes removed)."""
    config = with_keys(yaml.safe_load((CONFIGS / shipped).read_text()), overrides)
    callbacks = config["trainer"].get("callbacks") or []
    config["trainer"]["callbacks"] = [c for c in callbacks if c["class_path"].rsplit(".", 1)[-1] not in drop_callbacks]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_config(tmp_path: Path, fit: Path, space: dict[str, Any], **kwargs: Any) -> TuneConfig:
    """A TuneConfig writing into ``tmp_path/study`` with plots off unless asked."""
    kwargs.setdefault("output_dir", str(tmp_path / "study"))
    kwargs.setdefault("study_name", "test")
    kwargs.setdefault("plots", False)
    return TuneConfig(fit_config=str(fit), space=space, **kwargs)


def write_tune(path: Path, **data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
