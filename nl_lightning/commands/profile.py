"""``nl-lightning profile``: latency, throughput and memory of a checkpoint's variants, side by side.

    nl-lightning profile --config configs/profile.yaml --ckpt_path runs/classifier/checkpoints/last.ckpt

Variants (``eager``, ``compile``, ``ort_fp32``, ``ort_optimized``, ``ort_int8_dynamic``,
``ort_int8_static``, ``torchao_int8_dynamic``, ``torchao_int8_weight``, ``fp16``, ``bf16``) are
built from the checkpoint; ``--onnx`` adds existing ONNX files as extra sessions. All runners are
timed in interleaved rounds (the order rotates each round) with the same intra-op thread count for
torch and ONNX Runtime (1 by default: per-core latency, steady on a shared machine); the table,
the JSON (and a PNG chart with ``--chart_path``) carry the thread count and the load average.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from nl_lightning.errors import ConfigError, MissingFileError
from nl_lightning.export.ort import ort_runner, ort_session
from nl_lightning.export.profile import profile, validate_profile
from nl_lightning.export.report import format_table, save_chart, save_results
from nl_lightning.export.variants import VariantBuilder, resolve_variant, torch_threads
from nl_lightning.models.checkpoint import load_checkpoint
from nl_lightning.models.runs import find_checkpoint
from nl_lightning.commands.help import CommandHelpFormatter


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="nl-lightning profile", description=__doc__, formatter_class=CommandHelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--ckpt_path", type=str, required=True, help="A .ckpt written by `nl-lightning fit`.")
    parser.add_argument("--variants", type=list[str], default=["eager", "ort_fp32", "ort_int8_dynamic"])
    parser.add_argument("--onnx", type=list[str], default=[], help="Extra ONNX files to profile as sessions.")
    parser.add_argument("--batch_sizes", type=list[int], default=[1, 32])
    parser.add_argument("--seq_len", type=int, default=64, help="Clamped to what the model accepts.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10, help="Timed calls per runner in each round.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds; the order rotates each round.")
    parser.add_argument("--threads", type=Optional[int], default=1,
                        help="Intra-op threads for torch and ONNX Runtime (null = each library's default).")
    parser.add_argument("--work_dir", type=Optional[str], default=None,
                        help="Where variants are built (default: a temp dir).")
    parser.add_argument("--json_path", type=Optional[str], default="profile.json")
    parser.add_argument("--chart_path", type=Optional[str], default=None, help="PNG chart (matplotlib).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # every argument is checked before any work
        names = [resolve_variant(v) for v in args.variants]
        validate_profile(args.batch_sizes, args.warmup, args.iters, args.rounds)
    except ValueError as err:
        raise ConfigError(f"nl-lightning profile: {err}") from None
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"nl-lightning profile: --threads={args.threads} must be >= 1, or null for the libraries' "
                          "defaults.")
    missing = [p for p in args.onnx if not Path(p).is_file()]
    if missing:
        raise MissingFileError(f"--onnx file(s) not found: {missing}; pass files written by `nl-lightning export`.")
    model = load_checkpoint(find_checkpoint(args.ckpt_path), merge_lora=True)
    with tempfile.TemporaryDirectory(prefix="nl-profile-") as tmp:
        # latency only: a static INT8 variant may be calibrated on random inputs
        builder = VariantBuilder(model, args.work_dir or tmp, threads=args.threads, random_calibration=True)
        seq = builder.signature.clamp_seq(args.seq_len)
        with torch_threads(args.threads):
            runners = {name: builder.build(name).run for name in names}
            runners.update({Path(p).name: ort_runner(ort_session(p, args.threads)) for p in args.onnx})
            make_input = lambda b: builder.signature.example(b, seq)  # noqa: E731
            results = profile(runners, make_input, args.batch_sizes, args.warmup, args.iters, args.rounds)
    print(format_table(results))
    if args.json_path:
        save_results(results, args.json_path, extra={"ckpt_path": args.ckpt_path, "threads": args.threads,
                                                     "cores": os.cpu_count()})
        print(f"json: {args.json_path}")
    if args.chart_path:
        save_chart(results, args.chart_path)
        print(f"chart: {args.chart_path}")
    return 0
