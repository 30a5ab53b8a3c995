"""`nl-lightning fit` prints what the run did, not the libraries' noise (nl_lightning/_noise.py)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from nl_lightning.cli import main

CLASSIFIER = str(Path(__file__).resolve().parents[1] / "configs" / "classifier.yaml")
QUICK = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
         "--trainer.enable_progress_bar=false", "--data.init_args.num_samples=256"]


def test_fit_prints_no_tips_no_future_warnings_and_real_flops(tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO")  # Lightning logs the summary and its tips at INFO
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--config", CLASSIFIER, *QUICK]) == 0
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert "Tip:" not in text and "litlogger" not in text
    # Lightning prints "3.2 M  Total Flops" (plain summary) or "Total FLOPs: 3.2 M" (rich summary)
    flops = re.search(r"^(\S+(?: [KMGT])?)\s+Total Flops\s*$|Total FLOPs: (\S+(?: [KMGT])?)", text, re.M)
    assert flops and (flops.group(1) or flops.group(2)) != "0", text[-2000:]  # measured on a one-sample input, not left at 0
    assert "Total params" in text  # the summary itself is kept
