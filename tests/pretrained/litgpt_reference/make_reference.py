"""Write tiny LitGPT checkpoint folders with LitGPT itself, and its logits on fixed tokens.

The folders next to this script are the offline reference of tests/pretrained/test_litgpt.py: they
were written by LitGPT's own code (``GPT``, ``save_config``, ``incremental_save``, as
``litgpt/scripts/convert_hf_checkpoint.py`` writes ``lit_model.pth``), so the test checks our reading
of LitGPT's key names, qkv layout and config against the real thing, without litgpt installed.
LitGPT is not a dependency (it pins jsonargparse); regenerate in a throwaway environment:

    python3 -m venv /tmp/litgpt-venv && /tmp/litgpt-venv/bin/pip install torch==2.13.0 litgpt==0.5.13
    /tmp/litgpt-venv/bin/python tests/pretrained/litgpt_reference/make_reference.py

The ``legacy`` folder holds the pre-0.5.5 layout (``attn.attn``, heads interleaved per query group);
the script checks that LitGPT's own legacy loader (``_load_from_state_dict``) reads it back into
the same model, so the interleaving written here is LitGPT's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from litgpt import GPT, Config
from litgpt.utils import incremental_save, save_config

HERE = Path(__file__).parent
CONFIGS = {
    # Llama 3.1 style: RMSNorm, SwiGLU, grouped-query attention, q/k/v bias only, llama3 RoPE scaling.
    "llama": dict(name="tiny-llama", block_size=64, vocab_size=48, padded_vocab_size=48, n_layer=2, n_embd=16, n_head=4,
                  n_query_groups=2, rotary_percentage=1.0, parallel_residual=False, bias=False, attn_bias=True,
                  norm_class_name="RMSNorm", norm_eps=1e-5, mlp_class_name="LLaMAMLP", intermediate_size=40,
                  rope_base=500000, rope_adjustments=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                          original_max_seq_len=16)),
    # GPT-NeoX's MLP and LayerNorm with biases, sequential residual, tanh GELU.
    "neox": dict(name="tiny-neox", block_size=64, vocab_size=48, padded_vocab_size=48, n_layer=2, n_embd=16, n_head=4,
                 rotary_percentage=1.0, parallel_residual=False, bias=True, norm_class_name="LayerNorm",
                 mlp_class_name="GptNeoxMLP", gelu_approximate="tanh", intermediate_size=40),
}


def interleave(qkv: torch.Tensor, config: Config) -> torch.Tensor:
    """[all q, all k, all v] -> the pre-0.5.5 layout [q.., k, v] per query group."""
    q_per_kv, hs = config.n_head // config.n_query_groups, config.head_size
    q, k, v = qkv.split([config.n_head * hs, config.n_query_groups * hs, config.n_query_groups * hs])
    groups = zip(q.split(q_per_kv * hs), k.split(hs), v.split(hs))
    return torch.cat([torch.cat(group) for group in groups])


def write(folder: Path, config: Config, state: dict[str, torch.Tensor]) -> None:
    folder.mkdir(exist_ok=True)
    save_config(config, folder)
    with incremental_save(folder / "lit_model.pth") as saver:
        saver.save(state)


def main() -> None:
    tokens = torch.randint(0, 48, (2, 40), generator=torch.Generator().manual_seed(0))
    for name, values in CONFIGS.items():
        torch.manual_seed(0)
        config = Config(**values)
        model = GPT(config).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.1)  # norms and biases off their 1 / 0 init
            logits = model(tokens)
        state = model.state_dict()
        write(HERE / name, config, state)
        torch.save({"tokens": tokens, "logits": logits}, HERE / name / "reference.pt")
        if name == "llama":
            legacy = {}
            for key, tensor in state.items():
                if ".attn.qkv." in key:
                    legacy[key.replace(".attn.qkv.", ".attn.attn.")] = interleave(tensor, config)
                else:
                    legacy[key] = tensor
            again = GPT(config).eval()
            again.load_state_dict(legacy)  # LitGPT's own legacy conversion
            with torch.no_grad():
                assert torch.equal(again(tokens), logits), "the legacy layout written here is not LitGPT's"
            write(HERE / "legacy", config, legacy)
            torch.save({"tokens": tokens, "logits": logits}, HERE / "legacy" / "reference.pt")


if __name__ == "__main__":
    main()
