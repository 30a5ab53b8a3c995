"""TransformerConfig / OptimizerConfig / SchedulerConfig: presets, every validation message,
YAML round trips, and the shipped preset YAMLs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from nl_lightning.models import (
    PRESETS,
    CausalLM,
    OptimizerConfig,
    SchedulerConfig,
    SequenceClassifier,
    TransformerConfig,
    build_scheduler,
)
from nl_lightning.models.config import as_config

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds(name):
    config = TransformerConfig.from_preset(name)
    for key, value in PRESETS[name].items():
        assert getattr(config, key) == value
    model = CausalLM(config) if config.causal else SequenceClassifier(config, 2)
    assert len(model.transformer.blocks) == config.n_layers


def test_preset_overrides_and_unknown_preset():
    assert TransformerConfig.from_preset("llama", n_layers=1).n_layers == 1
    with pytest.raises(ValueError, match=r"Unknown preset 'gpt5'; choose one of \['bert', 'llama', 'tiny'\]"):
        TransformerConfig.from_preset("gpt5")


def test_n_kv_heads_defaults_to_n_heads():
    assert TransformerConfig(n_heads=8).n_kv_heads == 8


@pytest.mark.parametrize("field", ["position", "mlp", "norm", "norm_style", "attn_backend"])
def test_unknown_choice(field):
    with pytest.raises(ValueError, match=rf"TransformerConfig\.{field}='bogus' is not supported; choose one of \("):
        TransformerConfig(**{field: "bogus"})


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "8"])
@pytest.mark.parametrize("field", ["vocab_size", "n_layers", "d_model", "n_heads", "n_kv_heads", "max_seq_len",
                                   "input_dim", "mlp_hidden"])
def test_positive_integers(field, value):
    with pytest.raises(ValueError, match=rf"TransformerConfig\.{field}={value!r} must be a positive integer"):
        TransformerConfig(**{field: value})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=16, n_heads=3), r"n_heads=3 must divide d_model=16; use one of \[1, 2, 4, 8, 16\]"),
        (dict(d_model=16, n_heads=4, n_kv_heads=3), r"n_kv_heads=3 must divide n_heads=4; use one of \[1, 2, 4\]"),
        (dict(d_model=12, n_heads=4, position="rope"), r"position='rope' needs an even head size, got d_model/n_heads=3"),
        (dict(d_model=16, n_heads=2, head_dim=5), r"position='rope' needs an even head size, got head_dim=5"),
        (dict(head_dim=0), r"TransformerConfig\.head_dim=0 must be a positive integer"),
        (dict(dropout=1.0), r"TransformerConfig\.dropout=1\.0 must be in \[0, 1\)"),
        (dict(attn_dropout=-0.1), r"TransformerConfig\.attn_dropout=-0\.1 must be in \[0, 1\)"),
        (dict(drop_path=1.5), r"TransformerConfig\.drop_path=1\.5 must be in \[0, 1\)"),
        (dict(rope_base=0.0), r"TransformerConfig\.rope_base=0\.0 must be > 0"),
        (dict(input_dim=4, tie_embeddings=True), r"TransformerConfig\.tie_embeddings=True needs token inputs"),
    ],
)
def test_transformer_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**kwargs)


def test_odd_head_size_is_fine_without_rope():
    assert TransformerConfig(d_model=12, n_heads=4, position="alibi").head_dim == 3


def test_head_dim_is_derived_unless_set_and_stored_only_when_it_differs():
    derived = TransformerConfig(d_model=32, n_heads=4)
    assert derived.head_dim == 8 and "head_dim" not in derived.to_dict()  # older configs/checkpoints read the same
    pruned = TransformerConfig(d_model=32, n_heads=2, head_dim=8)  # heads removed, head size kept
    assert pruned.to_dict()["head_dim"] == 8
    assert TransformerConfig.from_dict(yaml.safe_load(yaml.safe_dump(pruned.to_dict()))) == pruned
    assert TransformerConfig(d_model=30, n_heads=4, head_dim=8).head_dim == 8  # need not divide d_model


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"Unknown TransformerConfig key\(s\) \['dim', 'layers'\]; valid keys are \["):
        TransformerConfig.from_dict({"dim": 8, "layers": 2, "n_heads": 2})


@pytest.mark.parametrize("config", [TransformerConfig(), TransformerConfig(input_dim=5, layer_scale=0.1),
                                    TransformerConfig(d_model=64, n_heads=2, n_kv_heads=1, head_dim=16, mlp_hidden=96)]
                         + [TransformerConfig.from_preset(n) for n in PRESETS], ids=lambda c: f"{c.position}-{c.mlp}")
def test_yaml_round_trip(config):
    text = yaml.safe_dump(asdict(config))
    assert TransformerConfig.from_dict(yaml.safe_load(text)) == config
    assert TransformerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("config", [OptimizerConfig(), OptimizerConfig(name="sgd", nesterov=True, betas=(0.8, 0.9))])
def test_optimizer_config_yaml_round_trip(config):
    assert OptimizerConfig(**yaml.safe_load(yaml.safe_dump(asdict(config)))) == config


def test_scheduler_config_yaml_round_trip():
    config = SchedulerConfig(name="linear", warmup_steps=3, min_lr_ratio=0.0)
    assert SchedulerConfig(**yaml.safe_load(yaml.safe_dump(asdict(config)))) == config


def test_as_config():
    config = TransformerConfig(n_layers=1)
    assert as_config(config) is config
    assert as_config(config.to_dict()) == config
    assert as_config(None, causal=False) == TransformerConfig.from_preset("tiny", causal=False)
    with pytest.raises(TypeError, match=r"Expected a TransformerConfig or a dict, got str"):
        as_config("tiny")


@pytest.mark.parametrize("preset, yaml_name", [("llama", "llama.yaml"), ("bert", "bert.yaml")])
def test_shipped_yaml_matches_preset(preset, yaml_name):
    values = yaml.safe_load((CONFIGS / yaml_name).read_text())["model"]["init_args"]["config"]
    for key, expected in PRESETS[preset].items():  # every architecture choice of the preset ...
        assert values.get(key) == expected, f"{yaml_name}: {key}={values.get(key)!r}, preset has {expected!r}"
    # ... and nothing else but the vocabulary, which belongs to the data the YAML trains on.
    assert set(values) - set(PRESETS[preset]) <= {"vocab_size"}
    vocab = {"vocab_size": values["vocab_size"]} if "vocab_size" in values else {}
    assert TransformerConfig.from_dict(values) == TransformerConfig.from_preset(preset, **vocab)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="lion"), r"OptimizerConfig\.name='lion' is not supported; choose one of \('adamw', 'adam', 'sgd'\)"),
        (dict(lr=0.0), r"OptimizerConfig\.lr=0\.0 must be > 0"),
        (dict(lr=-1e-3), r"OptimizerConfig\.lr=-0\.001 must be > 0"),
        (dict(weight_decay=-0.1), r"OptimizerConfig\.weight_decay=-0\.1 must be >= 0"),
        (dict(name="adamw", nesterov=True),
         r"OptimizerConfig\.nesterov=True needs name='sgd' and momentum > 0, got name='adamw'"),
        (dict(name="sgd", momentum=0.0, nesterov=True),
         r"OptimizerConfig\.nesterov=True needs .*got name='sgd', momentum=0\.0"),
    ],
)
def test_optimizer_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(**kwargs)


def test_optimizer_config_betas_from_yaml_list():
    assert OptimizerConfig(betas=[0.8, 0.99]).betas == (0.8, 0.99)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="step"), r"SchedulerConfig\.name='step' is not supported; choose one of \('cosine', "),
        (dict(warmup_steps=-1), r"SchedulerConfig\.warmup_steps=-1 must be >= 0"),
        (dict(min_lr_ratio=1.5), r"SchedulerConfig\.min_lr_ratio=1\.5 must be in \[0, 1\]"),
        (dict(min_lr_ratio=-0.1), r"SchedulerConfig\.min_lr_ratio=-0\.1 must be in \[0, 1\]"),
    ],
)
def test_scheduler_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SchedulerConfig(**kwargs)


def test_scheduler_needs_a_finite_step_count():
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"The 'cosine' schedule needs a finite number of steps, got 0; set trainer\.max_steps"):
        build_scheduler(optimizer, SchedulerConfig(name="cosine"), total_steps=0)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CausalLM(TransformerConfig(causal=False)), r"CausalLM needs TransformerConfig\.causal=True and token inputs"),
        (lambda: CausalLM(TransformerConfig(input_dim=3)), r"got causal=True, input_dim=3"),
        (lambda: SequenceClassifier(TransformerConfig(causal=False), 0), r"num_outputs=0 must be >= 1"),
    ],
)
def test_model_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(qkv_bias="yes"), r"TransformerConfig.qkv_bias='yes' must be true, false or null \(= bias\)"),
        (dict(gelu_approximate="tanh", mlp="swiglu"), r"gelu_approximate='tanh' applies to mlp='gelu' or 'geglu', not "
                                                      r"mlp='swiglu'"),
        (dict(rope_scaling={"type": "linear", "factor": 2.0}, position="alibi"),
         r"rope_scaling is set but position='alibi'; it needs position='rope'"),
        (dict(rope_scaling={"type": "ntk"}), r"TransformerConfig.rope_scaling type 'ntk' is not supported"),
        (dict(sliding_window=0), r"TransformerConfig.sliding_window=0 must be a positive integer"),
        (dict(sliding_window=4, causal=False), r"sliding_window=4 needs causal attention; set causal=true"),
        (dict(type_vocab_size=-1), r"TransformerConfig.type_vocab_size=-1 must be an integer >= 0"),
        (dict(type_vocab_size=2, input_dim=3), r"type_vocab_size=2 needs token inputs"),
        (dict(embed_norm=1), r"TransformerConfig.embed_norm=1 must be true or false"),
    ],
)
def test_pretrained_fields_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**kwargs)


def test_pretrained_fields_yaml_round_trip():
    config = TransformerConfig(qkv_bias=True, bias=False, mlp_bias=None, rope_base=5e5, sliding_window=16,
                               rope_scaling={"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_seq_len": 8192},
                               type_vocab_size=2, embed_norm=True, mlp="gelu", gelu_approximate="tanh")
    assert TransformerConfig.from_dict(yaml.safe_load(yaml.safe_dump(asdict(config)))) == config
