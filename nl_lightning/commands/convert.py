"""``nl-lightning convert``: a Hugging Face or LitGPT model folder -> an nl_lightning checkpoint, or
an nl_lightning checkpoint (or run folder) -> a Hugging Face model folder.

    nl-lightning convert path/to/llama_folder --output llama.ckpt
    nl-lightning convert path/to/bert_folder --output bert.ckpt --num_classes 3
    nl-lightning convert runs/finetune_lm --output finetuned_folder

The direction follows the source: a folder with config.json (Hugging Face) or model_config.yaml
(LitGPT) is read; anything else is a checkpoint or run folder to write out. Nothing is
downloaded; unsupported architectures and fields are refused and nothing is written.
"""

from __future__ import annotations

from typing import Literal, Optional

from jsonargparse import ArgumentParser

from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    """The subcommand's arguments (``--help`` shows the docstring above)."""
    parser = ArgumentParser(prog="nl-lightning convert", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("source", type=str, help="A model folder, a .ckpt, or a run folder (newest last.ckpt).")
    parser.add_argument("--output", type=str, required=True,
                        help="The checkpoint file (from a model folder) or the folder (from a checkpoint) to write.")
    parser.add_argument("--num_classes", type=Optional[int], default=None,
                        help="BERT folders: classes (default: the folder's classification head).")
    parser.add_argument("--task", type=Optional[Literal["classification", "regression"]], default=None,
                        help="BERT folders: the classifier's task (default: the folder's head).")
    parser.add_argument("--pooling", type=Literal["pooler", "mean", "cls", "attention", "gem"], default="pooler",
                        help="BERT folders: how the classifier pools (default BERT's pooler).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Convert in the direction the source implies; prints the path written."""
    from nl_lightning.pretrained.convert import checkpoint_to_folder, folder_to_checkpoint, is_model_folder

    args = build_parser().parse_args(argv)
    if is_model_folder(args.source):
        written = folder_to_checkpoint(args.source, args.output, args.num_classes, args.task, args.pooling)
    else:
        written = checkpoint_to_folder(args.source, args.output)
    print(f"converted: {written}")
    return 0
