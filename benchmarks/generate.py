"""Generation tokens/s past ``max_seq_len`` against generation within it: is decoding still incremental?

    python benchmarks/generate.py           # configs/char_lm.yaml's model (4 layers, d_model 128, max_seq_len 128)
    python benchmarks/generate.py --quick   # 2 layers, d_model 64, max_seq_len 64 (< 60 s on 2 cores)

Both runs use the public ``TransformerLM.generate`` (greedy, batch 1, the same 8-token prompt) in
this process: ``within`` adds ``max_seq_len - 8`` tokens, so the KV cache is never full; ``long``
adds ``4 x max_seq_len`` tokens, so the window slides past the trained length three times and more.
If decoding stays incremental there (re-prefill part of the window, then continue with the cache),
``long`` keeps most of the per-token speed: the target is tokens/s(long) / tokens/s(within) >= 0.5.
Recomputing the whole window for every token puts it far below. The order alternates every
repeat; the ratio is the median of per-repeat ratios. Results: ``benchmarks/results/generate.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _results import write_result

from nl_lightning.models import TransformerLM

TARGET = 0.5
PROMPT = 8


def tokens_per_s(model: TransformerLM, prompt: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new_tokens, temperature=0.0, top_k=None)
    elapsed = time.perf_counter() - start
    assert out.shape == (1, prompt.size(1) + new_tokens), out.shape
    return new_tokens / elapsed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller model and fewer repeats (< 60 s on 2 cores)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady on a shared machine; 0 = torch's default)")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    args = parse_args()
    config = (dict(n_layers=2, d_model=64, n_heads=4, max_seq_len=64) if args.quick
              else dict(n_layers=4, d_model=128, n_heads=4, max_seq_len=128))
    torch.manual_seed(0)
    model = TransformerLM(config).eval()
    window = config["max_seq_len"]
    prompt = torch.randint(0, 256, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    sides = {"within": window - PROMPT, "long": 4 * window}
    print(f"TransformerLM {config}, greedy, batch 1, prompt {PROMPT}; within: {sides['within']} new tokens, long: "
          f"{sides['long']} new tokens; {args.repeats} repeats, order alternating; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    tokens_per_s(model, prompt, 16)  # warm-up (allocator, kernels)
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            rates[name].append(tokens_per_s(model, prompt, sides[name]))
        print(f"repeat {r}: within {rates['within'][-1]:8.1f} tokens/s, long {rates['long'][-1]:8.1f} tokens/s",
              flush=True)
    ratios = [lo / wi for lo, wi in zip(rates["long"], rates["within"])]
    figures: dict[str, Any] = {
        "model": config, "prompt": PROMPT, "new_tokens": sides, "repeats": args.repeats,
        "tokens_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "median_tokens_per_s": {k: round(statistics.median(vs), 1) for k, vs in rates.items()},
        "ratio": round(statistics.median(ratios), 3), "ratios": [round(x, 3) for x in ratios], "target": TARGET,
    }
    figures["met"] = figures["ratio"] >= TARGET
    print(f"long / within tokens/s: {figures['ratio']:.3f} (median of per-repeat ratios; target >= {TARGET})")
    write_result("generate", figures, args, quick=args.quick)


def render(figures: dict[str, Any]) -> str:
    """README section: the two speeds and whether the target is met."""
    m, n, tps = figures["model"], figures["new_tokens"], figures["median_tokens_per_s"]
    verdict = "met" if figures["met"] else "**not met**"
    return "\n".join([
        f"`TransformerLM` ({m['n_layers']} layers, d_model {m['d_model']}, max_seq_len {m['max_seq_len']}), "
        f"greedy, batch 1, {figures['repeats']} interleaved repeats:",
        "",
        "| generation | new tokens | tokens/s (median) |",
        "|---|---|---|",
        f"| within the window | {n['within']} | {tps['within']:.0f} |",
        f"| 4 x max_seq_len (window slides) | {n['long']} | {tps['long']:.0f} |",
        "",
        f"Ratio long / within: **{figures['ratio']:.2f}** (median of per-repeat ratios; target >= "
        f"{figures['target']}: {verdict}).",
    ])


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    verdict = "met" if figures["met"] else "**not met**"
    return ("Generation past `max_seq_len` vs within it, tokens/s",
            f"{figures['ratio']:.2f}x (target >= {figures['target']}: {verdict})")


if __name__ == "__main__":
    main()
