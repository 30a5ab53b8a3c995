"""``nl-lightning generate``: sample text from a ``TransformerLM`` checkpoint, through its tokenizer
(the one stored in the checkpoint) or the byte vocabulary."""

from __future__ import annotations

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.errors import ConfigError
from nl_lightning.models.lm import TransformerLM
from nl_lightning.models.runs import find_checkpoint
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning generate", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--ckpt_path", type=str, required=True, help="A .ckpt written by `nl-lightning fit`, or its run folder (newest last.ckpt).")
    parser.add_argument("--prompt", type=str, default="The ", help="Text to continue.")
    parser.add_argument("--max_new_tokens", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy.")
    parser.add_argument("--top_k", type=int | None, default=40)
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = TransformerLM.load(find_checkpoint(args.ckpt_path))
    prompt = torch.tensor(model.codec.encode(args.prompt), dtype=torch.long)
    if prompt.numel() == 0:
        raise ConfigError("--prompt must not be empty: give at least one character to continue.")
    idx = prompt.unsqueeze(0).repeat(args.num_samples, 1)
    out = model.generate(idx, args.max_new_tokens, args.temperature, args.top_k, seed=args.seed)
    for i, row in enumerate(out):
        print(f"--- sample {i} ---\n{model.codec.decode(row.tolist())}")
    return 0
