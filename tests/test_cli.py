"""The `nl-lightning` command and every shipped YAML in configs/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nl_lightning.cli import EXTRA_COMMANDS, build_cli, main

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
FIT_CONFIGS = [c for c in CONFIGS if "model" in (yaml.safe_load(c.read_text()) or {})]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when both args= and pytest's own sys.argv are present."""
    monkeypatch.setattr("sys.argv", ["nl-lightning"])


def test_configs_exist():
    names = {c.stem for c in FIT_CONFIGS}
    assert {"char_lm", "classifier", "llama", "bert", "finetune_lm", "finetune_classifier"} <= names


def _pretrained_args(config: Path, make_folder) -> list[str]:
    """A config that starts from a model folder (``pretrained:``) gets a tiny one written for the test."""
    model = yaml.safe_load(config.read_text()).get("model") or {}
    init = model.get("init_args") or {}
    if not init.get("pretrained"):
        return []
    kind = "classifier" if model["class_path"].endswith("TransformerClassifier") else "lm"
    return [f"--model.init_args.pretrained={make_folder(kind, num_classes=init.get('num_classes', 2))}"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_parses(config: Path, pretrained_folder):
    data = yaml.safe_load(config.read_text())
    assert isinstance(data, dict) and data, f"{config.name} is empty"
    if config in FIT_CONFIGS:
        cli = build_cli(["--config", str(config), *_pretrained_args(config, pretrained_folder)], run=False)
        assert cli.model is not None and cli.datamodule is not None
    else:  # a subcommand's config: parsed by that subcommand's own parser
        command = config.stem.split("_")[0]
        assert command in EXTRA_COMMANDS, f"{config.name}: no fit `model:` and no subcommand {command!r}"
        module = __import__(EXTRA_COMMANDS[command].split(":")[0], fromlist=["build_parser"])
        module.build_parser().parse_args(["--config", str(config)])


def _needs_files(config: Path) -> bool:
    return "train_path" in (yaml.safe_load(config.read_text())["data"].get("init_args") or {})


@pytest.mark.parametrize("config", FIT_CONFIGS, ids=lambda p: p.stem)
def test_short_max_steps_run_of_every_fit_config(config: Path, tmp_path, monkeypatch, pretrained_folder):
    """README's "try it quickly" pattern: a couple of steps, ending mid-epoch before any validation,
    with the config's own callbacks and loggers (fast_dev_run would switch those off)."""
    if _needs_files(config):
        pytest.skip("reads user files: tests/data/test_configs.py writes them and runs this config end to end")
    monkeypatch.chdir(tmp_path)  # configs write under runs/ relative to the working directory
    args = ["fit", "--config", str(config), "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
            "--data.init_args.batch_size=4", "--trainer.enable_progress_bar=false",
            *_pretrained_args(config, pretrained_folder)]
    assert main(args) == 0
    assert list(tmp_path.glob("runs/*/version_0/checkpoints/last.ckpt"))


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(FIT_CONFIGS[0]), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    # jsonargparse prints the class by one of its import paths (older releases: the shortest public one)
    given = yaml.safe_load(FIT_CONFIGS[0].read_text())["model"]["class_path"]
    assert _resolve(printed["model"]["class_path"]) is _resolve(given)


def _resolve(class_path: str) -> type:
    import importlib

    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_unknown_config_key_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load((Path(__file__).parents[1] / "configs" / "classifier.yaml").read_text())
    data["model"]["init_args"]["config"]["n_layerz"] = 3
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad)])
    assert "n_layerz" in capsys.readouterr().err


def test_invalid_config_value_names_the_field(tmp_path, capsys):
    code = main(["fit", "--config", str(FIT_CONFIGS[0]), "--model.init_args.config.n_kv_heads=3", "--trainer.fast_dev_run=true"])
    assert code == 1
    assert "TransformerConfig.n_kv_heads=3 must divide n_heads=4" in capsys.readouterr().err


def test_generate_command_prints_text(tmp_path, capsys):
    import lightning as L

    from nl_lightning.data import CharTextDataModule
    from nl_lightning.models import TransformerConfig, TransformerLM

    model = TransformerLM(TransformerConfig(n_layers=1, d_model=32, n_heads=2, max_seq_len=64))
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, CharTextDataModule(seq_len=32, batch_size=4))
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["generate", "--ckpt_path", str(ckpt), "--prompt", "def ", "--max_new_tokens", "20"]) == 0
    out = capsys.readouterr().out
    assert "--- sample 0 ---\ndef " in out


def test_generate_command_missing_checkpoint(tmp_path, capsys):
    assert main(["generate", "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 1
    assert "nl-lightning: error: Checkpoint not found:" in capsys.readouterr().err


@pytest.mark.parametrize("fragment", sorted((Path(__file__).parents[1] / "configs" / "strategy").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_strategy_fragments_compose_with_a_fit_config(fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(FIT_CONFIGS[0]), "--config", str(fragment), "--print_config"])
    assert exc.value.code == 0
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    wanted = yaml.safe_load(fragment.read_text())["trainer"]["strategy"]
    assert trainer["devices"] == 2 and trainer["accelerator"] == "cpu"
    if isinstance(wanted, str):
        assert trainer["strategy"] == wanted
    else:
        assert trainer["strategy"]["class_path"] == wanted["class_path"]
        assert trainer["strategy"]["init_args"].items() >= wanted["init_args"].items()


@pytest.mark.parametrize("command", ["consolidate", "convert", "export", "generate", "lr_find", "plot", "profile", "serve",
                                     "tokenizer", "tune"])
def test_subcommand_help_keeps_the_docstrings_lines(command):
    """The example commands in each subcommand's docstring stay one per line in ``--help``."""
    import importlib

    module = importlib.import_module(f"nl_lightning.commands.{command}")
    text = module.build_parser().format_help()
    lines = [line.rstrip() for line in module.__doc__.strip().splitlines() if line.strip()]
    assert [line for line in lines if line not in text.splitlines()] == []
