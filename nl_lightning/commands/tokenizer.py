"""``nl-lightning tokenizer train``: a byte-level BPE tokenizer from your own text, as tokenizer.json.

    nl-lightning tokenizer train --files 'corpus/*.txt' --vocab_size 8192 --output runs/tokenizer.json
    nl-lightning tokenizer train --files data.parquet --text_column body --output runs/tok/

Each text file is one document, each Parquet row another (as TokenizedTextDataModule reads them).
The file is written atomically; give it to the data (data.init_args.tokenizer) and to the model
(model.init_args.tokenizer), with config.vocab_size at least the printed vocabulary size.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from nl_lightning.commands.help import CommandHelpFormatter
from nl_lightning.data.bpe import DEFAULT_SPECIAL_TOKENS, save_tokenizer, train_bpe
from nl_lightning.data.documents import expand_paths, iter_documents


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning tokenizer", description=__doc__, formatter_class=CommandHelpFormatter)
    train = ArgumentParser(prog="nl-lightning tokenizer train", description="Train byte-level BPE on text files.",
                           formatter_class=CommandHelpFormatter)
    train.add_argument("--files", type=list[str] | str, required=True,
                       help="Text or Parquet files, or glob patterns ('corpus/**/*.txt').")
    train.add_argument("--output", type=str, required=True, help="tokenizer.json to write, or a folder to hold it.")
    train.add_argument("--vocab_size", type=int, default=8192, help="Tokens in the vocabulary, specials included.")
    train.add_argument("--special_tokens", type=list[str], default=list(DEFAULT_SPECIAL_TOKENS),
                       help="Special tokens, ids 0.. in order; the first is the end-of-text token between documents.")
    train.add_argument("--min_frequency", type=int, default=2, help="Occurrences a pair needs before it merges.")
    train.add_argument("--text_column", type=str, default="text", help="The Parquet column holding the text.")
    subcommands = parser.add_subcommands(dest="action")
    subcommands.add_subcommand("train", train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv).train
    documents = iter_documents(expand_paths(args.files), args.text_column)
    tokenizer = train_bpe(documents, args.vocab_size, args.special_tokens, args.min_frequency)
    path = save_tokenizer(tokenizer, args.output)
    print(f"tokenizer: {path} ({tokenizer.get_vocab_size()} tokens)")
    return 0
