"""A DDP trial (2 CPU processes, gloo) reports to the study and is pruned without hanging."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState
from tune_utils import make_config

from nl_lightning.tune.study import create_study, prepare, run_study

LR = "model.init_args.optimizer.lr"


@pytest.mark.slow
def test_ddp_trial_reports_and_is_pruned(tmp_path, classifier_fit):
    config = make_config(
        tmp_path, classifier_fit, n_trials=2, sampler={"name": "random"}, trial_timeout=300,
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        overrides={"trainer.strategy": "ddp", "trainer.devices": 2, "trainer.accelerator": "cpu"},
        space={LR: {"type": "float", "low": 1e-3, "high": 10.0, "log": True}},
        enqueue=[{LR: 3.0}],  # a diverging rate
    )
    prepared = prepare(config)
    assert prepared.launcher == "subprocess"  # auto: Lightning re-launches the command for each rank
    # A finished trial that did far better at every epoch, so the DDP trial is pruned at its first report.
    study = create_study(prepared)
    distribution = optuna.distributions.FloatDistribution(1e-3, 10.0, log=True)
    study.add_trial(optuna.trial.create_trial(
        params={LR: 1e-2}, distributions={LR: distribution}, value=0.1, intermediate_values={0: 0.1, 1: 0.1, 2: 0.1},
        user_attrs={"seed": 0},
    ))
    study = run_study(config, out=lambda line: None, prepared=prepared)
    ddp = study.trials[0]  # the enqueued rate (the added trial took number 1)
    assert ddp.params == {LR: 3.0} and study.trials[1].value == 0.1
    assert ddp.state == TrialState.PRUNED, (ddp.state, ddp.user_attrs.get("fail_reason"))
    assert list(ddp.intermediate_values) == [0] and ddp.intermediate_values[0] > 0.1  # rank 0 reported epoch 0
    run_dir = tmp_path / "study" / "trial_0000"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["state"] == "pruned" and len(result["history"]) == 1  # stopped after one epoch of 3
    log = (run_dir / "trial.log").read_text()
    assert "MEMBER: 2/2" in log  # both ranks joined the process group
