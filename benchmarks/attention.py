"""SDPA vs naive (textbook) causal attention: time and peak memory per sequence length.

    python benchmarks/attention.py           # T = 256 ... 4096
    python benchmarks/attention.py --quick   # T = 256 ... 1024, fewer repeats (< 60 s on 2 cores)

Both sides run in this process for timing, interleaved: the two implementations alternate call by
call (the first one alternating too), and each figure is the median of its calls. Peak memory is
measured in one fresh child process per implementation (Linux only): glibc's mmap threshold is
pinned so freed tensors go back to the OS at once, the kernel's RSS high-water mark is reset
after a warm-up call (``/proc/self/clear_refs``), and the figure is ``VmHWM - VmRSS`` around one
call. It counts every byte the call touches (output, saved tensors, gradients of q/k/v, kernel
scratch), not just the scores. The T x T score-matrix size of one fp32 copy is printed beside it
as a theoretical reference, labelled as such.
Torch runs one intra-op thread unless ``--threads N`` (0 = torch's default): on a machine shared
with other jobs, two OpenMP threads slow down many-fold whenever another job takes a core.
Figures go to ``benchmarks/results/attention.json`` (the last stdout line is the same JSON); README's
section comes from it through ``render``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F
from _results import write_result

from nl_lightning.nn.attention import naive_attention

IMPLS: dict[str, Callable] = {
    "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "naive": lambda q, k, v: naive_attention(q, k, v, is_causal=True),
}
MODES = ("fwd", "fwd_bwd")
MIB = 2**20


def make_inputs(batch: int, heads: int, t: int, head_dim: int, grad: bool) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(batch, heads, t, head_dim, generator=gen).requires_grad_(grad) for _ in range(3))


def run_once(impl: str, mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if mode == "fwd":
        with torch.no_grad():
            IMPLS[impl](q, k, v)
        return
    IMPLS[impl](q, k, v).sum().backward()
    q.grad = k.grad = v.grad = None


def median_ms(
    mode: str, shape: tuple[int, int, int, int], warmup: int, repeats: int, min_time: float,
) -> dict[str, float]:
    """Median ms per implementation, calls interleaved (sdpa, naive, naive, sdpa, ...): at least
    ``repeats`` calls each, more (up to 100) until ``min_time`` seconds are spent, which steadies
    short calls on a shared machine; a load change falls on both sides alike."""
    inputs = {impl: make_inputs(*shape, grad=mode == "fwd_bwd") for impl in IMPLS}
    for impl in IMPLS:
        for _ in range(warmup):
            run_once(impl, mode, *inputs[impl])
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    order = list(IMPLS)
    while min(len(t) for t in times.values()) < repeats or (
            sum(map(sum, times.values())) < min_time * 1e3 * len(IMPLS) and len(times[order[0]]) < 100):
        for impl in order:
            start = time.perf_counter()
            run_once(impl, mode, *inputs[impl])
            times[impl].append((time.perf_counter() - start) * 1e3)
        order.reverse()
    return {impl: statistics.median(t) for impl, t in times.items()}


def _proc_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def worker(impl: str, lengths: list[int], bhd: tuple[int, int, int]) -> None:
    """Child process: print {T: {mode: peak bytes above the pre-call RSS}} for one implementation."""
    peaks: dict[int, dict[str, int]] = {}
    for t in lengths:
        shape = (bhd[0], bhd[1], t, bhd[2])
        peaks[t] = {}
        for mode in MODES:
            q, k, v = make_inputs(*shape, grad=mode == "fwd_bwd")
            run_once(impl, mode, q, k, v)  # warm-up: kernel init, thread pools
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            before = _proc_kib("VmRSS")
            run_once(impl, mode, q, k, v)
            peaks[t][mode] = (_proc_kib("VmHWM") - before) * 1024
            del q, k, v
    print(json.dumps(peaks))


def peak_bytes(impl: str, args: argparse.Namespace) -> dict[int, dict[str, int]]:
    """Freed tensors must leave RSS for the next reading to be honest: pin the mmap threshold."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    sizes = ["--batch", str(args.batch), "--heads", str(args.heads), "--head-dim", str(args.head_dim)]
    cmd = [sys.executable, __file__, "--worker", impl, "--lengths", *map(str, args.lengths),
           "--threads", str(torch.get_num_threads()), *sizes]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return {int(t): v for t, v in json.loads(out.strip().splitlines()[-1]).items()}


def check_parity(shape: tuple[int, int, int, int]) -> None:
    """Both implementations must agree before their timings mean anything."""
    q, k, v = make_inputs(*shape, grad=False)
    torch.testing.assert_close(IMPLS["sdpa"](q, k, v), IMPLS["naive"](q, k, v), rtol=1e-4, atol=1e-5)


def bench_length(t: int, peaks: dict[str, dict], args: argparse.Namespace) -> dict[str, float]:
    shape = (args.batch, args.heads, t, args.head_dim)
    check_parity(shape)
    row: dict[str, float] = {"T": t, "scores_mib_theoretical": args.batch * args.heads * t * t * 4 / MIB}
    for mode in MODES:
        for impl, ms in median_ms(mode, shape, args.warmup, args.repeats, args.min_time).items():
            row[f"{impl}_{mode}_ms"] = ms
            row[f"{impl}_{mode}_peak_mib"] = peaks[impl][t][mode] / MIB
    for mode in MODES:
        row[f"{mode}_speedup"] = row[f"naive_{mode}_ms"] / row[f"sdpa_{mode}_ms"]
        row[f"{mode}_mem_ratio"] = row[f"naive_{mode}_peak_mib"] / max(row[f"sdpa_{mode}_peak_mib"], 1e-9)
    return row


def print_row(row: dict[str, float]) -> None:
    for mode in MODES:
        print(
            f"{row['T']:>5} {mode:>7} | sdpa {row[f'sdpa_{mode}_ms']:9.2f} ms {row[f'sdpa_{mode}_peak_mib']:8.1f} MiB"
            f" | naive {row[f'naive_{mode}_ms']:9.2f} ms {row[f'naive_{mode}_peak_mib']:8.1f} MiB"
            f" | speedup x{row[f'{mode}_speedup']:5.2f}  memory x{row[f'{mode}_mem_ratio']:6.2f}"
            f" | T^2 scores {row['scores_mib_theoretical']:7.1f} MiB (theoretical)",
            flush=True,
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T up to 1024, fewer repeats")
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per cell")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady on a shared machine; 0 = torch's default)")
    parser.add_argument("--worker", choices=tuple(IMPLS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = args.lengths or ([256, 512, 1024] if args.quick else [256, 512, 1024, 2048, 4096])
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.min_time = args.min_time if args.min_time is not None else (0.3 if args.quick else 1.0)
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(args.worker, args.lengths, (args.batch, args.heads, args.head_dim))
    print(f"causal self-attention, fp32, B={args.batch} H={args.heads} D={args.head_dim}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; time = median of >= {args.repeats} calls "
          f"(>= {args.min_time} s) after {args.warmup} warm-up; peak = RSS high-water mark above pre-call RSS, "
          "fresh process per implementation")
    peaks = {impl: peak_bytes(impl, args) for impl in IMPLS}
    rows = []
    for t in args.lengths:
        rows.append(bench_length(t, peaks, args))
        print_row(rows[-1])
    figures = {
        "dtype": "float32", "causal": True, "batch": args.batch, "heads": args.heads, "head_dim": args.head_dim,
        "warmup": args.warmup, "min_repeats": args.repeats, "min_time_s": args.min_time,
        "timing": "medians of interleaved calls (sdpa / naive alternating)",
        "memory_method": "peak RSS (VmHWM reset via /proc/self/clear_refs) minus pre-call RSS, one fresh "
                         "subprocess per implementation (all T), MALLOC_MMAP_THRESHOLD_=65536",
        "results": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
    }
    write_result("attention", figures, args, quick=args.quick)


def render(figures: dict) -> str:
    """README section: speed-ups and measured peaks per sequence length."""
    lines = [
        f"SDPA vs naive causal attention, fp32, B={figures['batch']}, H={figures['heads']}, D={figures['head_dim']}; "
        "times are medians of interleaved calls, peaks are measured (RSS high-water mark, one fresh process per "
        "implementation):",
        "",
        "| T | forward speed-up | fwd+bwd speed-up | forward peak SDPA / naive | fwd+bwd peak SDPA / naive |",
        "|---|---|---|---|---|",
    ]
    for r in figures["results"]:
        lines.append(
            f"| {r['T']} | {r['fwd_speedup']:.2f}x | {r['fwd_bwd_speedup']:.2f}x | "
            f"{_mib(r['sdpa_fwd_peak_mib'])} / {_mib(r['naive_fwd_peak_mib'])} MiB | "
            f"{_mib(r['sdpa_fwd_bwd_peak_mib'])} / {_mib(r['naive_fwd_bwd_peak_mib'])} MiB |"
        )
    slower = [r["T"] for r in figures["results"] if min(r["fwd_speedup"], r["fwd_bwd_speedup"]) < 1.0]
    longest = figures["results"][-1]
    lines += ["", (f"SDPA is faster at every length measured; at T={longest['T']} it needs "
                   f"{longest['fwd_mem_ratio']:.0f}x less forward memory." if not slower else
                   f"SDPA is **slower** at T = {slower}.")]
    return "\n".join(lines)


def _mib(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def headline(figures: dict) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    r = figures["results"][-1]
    return (f"SDPA vs naive causal attention at T={r['T']}",
            f"{r['fwd_speedup']:.2f}x faster forward, {r['fwd_mem_ratio']:.0f}x less forward memory")


if __name__ == "__main__":
    main()
