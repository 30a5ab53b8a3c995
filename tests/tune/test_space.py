"""Search spaces: parsing, every user error, conditional sampling with a real Optuna study."""

from __future__ import annotations

import optuna
import pytest

from nl_lightning.tune.keys import canonical_key, get_key, set_key, with_keys
from nl_lightning.tune.space import SearchSpace

LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "floaty", "low": 0, "high": 1}, r"type='floaty' is not supported; use one of \['float', 'int', 'categorical'\]"),
        ({"type": "float", "low": 0.1, "high": 0.01}, r"low=0.1 > high=0.01; swap them"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, r"log=true needs low > 0, got low=0.0"),
        ({"type": "int", "low": -1, "high": 4, "log": True}, r"log=true needs low > 0, got low=-1"),
        ({"type": "categorical", "choices": []}, r"choices=\[\] must be a non-empty list"),
        ({"type": "categorical"}, r"choices=None must be a non-empty list"),
        ({"type": "categorical", "choices": [[0.9, 0.95]]}, r"choice \[0.9, 0.95\] is a list; choices must be null"),
        ({"type": "categorical", "choices": ["a", "a"]}, r"has duplicates"),
        ({"type": "int", "low": 1.5, "high": 4}, r"low=1.5 must be an integer"),
        ({"type": "float", "low": "small", "high": 1.0}, r"low='small' must be a finite number"),
        ({"type": "float", "low": 0.0, "high": 1.0, "step": 0}, r"step=0 must be a positive number"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, r"cannot be combined with log=true"),
        ({"type": "float", "lo": 0.0, "high": 1.0}, r"unknown field\(s\) \['lo'\]"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": "yes"}, r"log='yes' must be true or false"),
        ("0.001", r"expected a mapping"),
    ],
)
def test_bad_param_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace.from_dict({"model.init_args.optimizer.lr": spec})


def test_bad_conditions_and_spaces():
    name = {"type": "categorical", "choices": ["adamw", "sgd"]}
    momentum = {"type": "float", "low": 0.8, "high": 0.99}
    with pytest.raises(ValueError, match=r"condition on 'optimizer.name', which is not a parameter defined above"):
        SearchSpace.from_dict({"momentum": {**momentum, "condition": {"optimizer.name": "sgd"}}, "optimizer.name": name})
    with pytest.raises(ValueError, match=r"condition value\(s\) \['rmsprop'\] are not among"):
        SearchSpace.from_dict({"optimizer.name": name, "momentum": {**momentum, "condition": {"optimizer.name": "rmsprop"}}})
    with pytest.raises(ValueError, match=r"both set 'model.x' in every trial"):
        SearchSpace.from_dict({"a": {**momentum, "key": "model.x"}, "b": {**momentum, "key": "model.x"}})
    with pytest.raises(ValueError, match=r"must be a non-empty mapping of config keys"):
        SearchSpace.from_dict({})
    with pytest.raises(ValueError, match=r"has an empty part"):
        SearchSpace.from_dict({"model..lr": LR})


def test_conditional_parameters_exist_only_when_their_condition_holds():
    space = SearchSpace.from_dict({
        "model.init_args.optimizer.name": {"type": "categorical", "choices": ["adamw", "sgd"]},
        "model.init_args.optimizer.momentum": {"type": "float", "low": 0.8, "high": 0.99,
                                               "condition": {"model.init_args.optimizer.name": "sgd"}},
        "model.init_args.optimizer.lr": LR,
        "n_layers": {"type": "int", "low": 1, "high": 4, "step": 1, "key": "model.init_args.config.n_layers"},
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        keys = space.sample(trial)
        study.tell(trial, 0.0)
        name = keys["model.init_args.optimizer.name"]
        seen.add(name)
        assert ("model.init_args.optimizer.momentum" in keys) == (name == "sgd")
        assert 1e-4 <= keys["model.init_args.optimizer.lr"] <= 1e-2
        assert keys["model.init_args.config.n_layers"] in (1, 2, 3, 4)  # set under its own key
        assert space.to_keys(trial.params) == keys  # a stored trial maps back to the same keys
    assert seen == {"adamw", "sgd"}


def test_dotted_keys_find_and_create_values_under_init_args():
    config = {"model": {"class_path": "x.Model", "init_args": {"optimizer": {"lr": 0.1}}},
              "trainer": {"callbacks": [{"class_path": "a.B", "init_args": {"patience": 3}}]}}
    assert canonical_key(config, "model.optimizer.lr") == "model.init_args.optimizer.lr"
    assert get_key(config, "model.optimizer.lr") == 0.1
    assert get_key(config, "trainer.callbacks.0.patience") == 3
    assert get_key(config, "model.init_args.missing", "default") == "default"
    updated = with_keys(config, {"model.optimizer.lr": 0.5, "model.init_args.config.d_model": 32,
                                 "trainer.callbacks.0.init_args.patience": 7})
    assert updated["model"]["init_args"] == {"optimizer": {"lr": 0.5}, "config": {"d_model": 32}}
    assert updated["trainer"]["callbacks"][0]["init_args"]["patience"] == 7
    assert config["model"]["init_args"]["optimizer"]["lr"] == 0.1  # the original is untouched
    with pytest.raises(ValueError, match=r"goes through 'model.init_args.optimizer.lr', which holds the value 0.1"):
        set_key(config, "model.optimizer.lr.x", 1)
    with pytest.raises(ValueError, match=r"'5' is not an index of a list of 1"):
        set_key(config, "trainer.callbacks.5", {})


CORE = ("space", "keys", "config", "samplers", "storage", "fit_config")


def test_search_space_core_imports_no_trainer():
    """The search-space core works without Lightning (no Trainer, no LightningCLI, no torch)."""
    import ast
    from pathlib import Path

    import nl_lightning.tune

    folder = Path(nl_lightning.tune.__file__).parent
    for name in CORE:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        heavy = sorted(m for m in imported if m.split(".")[0] in ("lightning", "torch") or m == "nl_lightning.cli")
        assert not heavy, f"nl_lightning/tune/{name}.py imports {heavy}"


def test_a_retried_failure_is_counted_once():
    from optuna.trial import TrialState, create_trial

    from nl_lightning.tune.progress import StopWhenDone
    from nl_lightning.tune.storage import counted_trials

    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0))
    study.add_trial(create_trial(state=TrialState.FAIL))  # killed: its heartbeat stopped...
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=2.0,  # ...and retried
                                 system_attrs={"failed_trial": 1, "retry_history": [1]}))
    study.add_trial(create_trial(state=TrialState.FAIL))  # a crash: counts (a study of crashes still ends)
    study.add_trial(create_trial(state=TrialState.PRUNED))
    study.add_trial(create_trial(state=TrialState.WAITING))  # not finished: does not count
    assert counted_trials(study) == 4
    stopped = []
    study.stop = lambda: stopped.append(True)  # StopWhenDone calls it from optimize's callback
    StopWhenDone(5)(study, study.trials[-1])
    assert not stopped
    StopWhenDone(4)(study, study.trials[-1])
    assert stopped
