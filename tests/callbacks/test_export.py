from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
import pytest
import torch

from nl_lightning.callbacks import ExportCallback
from nl_lightning.data import CharTextDataModule
from nl_lightning.export.bundle import ExportConfig
from nl_lightning.export.manifest import read_manifest
from nl_lightning.export.torch_export import load_pt2
from nl_lightning.export.onnx import onnx_files
from nl_lightning.export.tensorrt import TensorRTUnavailableError
from nl_lightning.models import TransformerLM

LM_CONFIG = dict(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)


def _trainer(callbacks, tmp_path, max_steps: int = 2, logger=False):
    return L.Trainer(max_steps=max_steps, limit_val_batches=1, callbacks=callbacks, logger=logger,
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     default_root_dir=tmp_path)


def test_export_callback_writes_formats_and_manifest_at_fit_end(tmp_path):
    L.seed_everything(0, verbose=False)
    config = ExportConfig(formats=["onnx", "onnx_int8_static", "pt2"], parity_batch_sizes=[1, 3],
                          parity_seq_lens=[7, 32], calibration_batches=2, check_batches=2)
    callback = ExportCallback(config=config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 20 steps: after 2, the logits are so near-uniform that static INT8 flips ~9% of the argmaxes.
        trainer = _trainer([callback], tmp_path, max_steps=20, logger=CSVLogger(tmp_path, name="run"))
        trainer.fit(TransformerLM(LM_CONFIG), CharTextDataModule(seq_len=32, batch_size=4))
    assert not [w for w in caught if "random inputs" in str(w.message)]  # calibrated on validation data
    out = tmp_path / "run" / "version_0" / "export"  # the run's folder (the logger's log_dir)
    manifest = read_manifest(out)
    assert manifest == callback.manifest and manifest["input"]["name"] == "idx"
    assert manifest["source"] == "TransformerLM after 20 steps"
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "onnx_int8_static", "pt2"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity_ok"]
        assert {(r["batch_size"], r["seq_len"]) for r in artifact["parity"]} == {(1, 7), (1, 32), (3, 7), (3, 32)}
    # INT8 judged on two validation batches of real text (4 x 32 positions each), not random ids.
    check = manifest["artifacts"][1]["agreement"]
    assert (check["data"], check["batches"], check["predictions"], check["agreement_checked"]) == ("real", 2, 256, True)
    assert check["top1_agreement"] >= 95.0
    assert [p.name for p in onnx_files(out / "model.onnx")] == ["model.onnx"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "model.int8_static.onnx", "model.onnx", "model.pt2",
    ]  # no temporary files left behind
    assert not list(out.parent.glob(".export.tmp-*"))  # nor a staging folder beside it


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_tensorrt_fails_at_setup_before_training(tmp_path):
    model = TransformerLM(LM_CONFIG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer([ExportCallback(config=ExportConfig(formats=["tensorrt"]))], tmp_path)
    with pytest.raises(TensorRTUnavailableError, match="drop 'tensorrt' from formats"):
        trainer.fit(model, CharTextDataModule(seq_len=32, batch_size=4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no step was taken


def test_config_from_yaml_dict():
    assert ExportCallback(config={"formats": ["pt2"]}).config.formats == ["pt2"]
    with pytest.raises(ValueError, match=r"formats=\['tflite'\]: choose one or more of"):
        ExportCallback(config={"formats": ["tflite"]})


@pytest.mark.slow
def test_export_under_fsdp2_gathers_the_full_weights_on_every_rank_and_exports_on_rank_zero(tmp_path):
    """2 processes, ModelParallelStrategy (FSDP2, gloo): exporting on rank 0 alone would run a forward
    through sharded parameters, a collective the other rank never joins (a hang), or export a shard."""
    probe = Path(__file__).with_name("fsdp_export_probe.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen([sys.executable, str(probe), str(tmp_path)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        stderr = "the FSDP2 export hung (a collective on one rank only?)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # rank 1 too, whatever happened to rank 0
    assert proc.returncode == 0, stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["sharded"], r["exported"], r["quantized"]) for r in reports] == [(True, True, True),
                                                                              (True, False, False)]
    run = tmp_path / "run" / "version_0"  # the logger's folder: both callbacks' default
    manifest = read_manifest(run / "export")
    assert [(a["format"], a["parity_ok"]) for a in manifest["artifacts"]] == [("pt2", True)]

    full = torch.load(tmp_path / "full_weights.pt", weights_only=True)
    model = TransformerLM(LM_CONFIG | {"n_heads": 2}).eval()
    model.load_state_dict(full)  # the whole model: every parameter at its full size
    x = torch.randint(0, 256, (3, 20))
    with torch.inference_mode():
        torch.testing.assert_close(load_pt2(run / "export" / "model.pt2")(x), model(x), atol=1e-5, rtol=1e-4)
    rows = json.loads((run / "quantized" / "quantization.json").read_text())["results"]
    assert [r["variant"] for r in rows] == ["eager", "bf16"] and rows[1]["agreement"] >= 95.0
