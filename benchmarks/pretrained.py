"""Pretrained Llama: our ``TransformerLM`` against transformers' ``LlamaForCausalLM`` at one config.

    python benchmarks/pretrained.py           # configs/llama.yaml's model (4 layers, d_model 256, 8/2 heads)
    python benchmarks/pretrained.py --quick   # 2 layers, d_model 128, fewer repeats, eager only (a smoke test)

One random ``LlamaForCausalLM`` is saved as a folder and read back with
``TransformerLM.from_pretrained``, so both sides hold the same weights; before any timing the
logits are checked equal (1e-4) and the greedy tokens identical. Both run fp32 on the CPU with
one intra-op thread (``--threads``), in this process, in a rotated order every repeat; each ratio
is the median of per-repeat ratios, by wall time and by this process's CPU time.

- ``training``: tokens/s of one optimizer step (forward, cross-entropy on every position, backward,
  AdamW) on a B x T batch; each side eager and under ``torch.compile`` (ours as
  ``TransformerLM(compile=True)`` compiles its network; compilation is warm-up, not timed). Target:
  ours compiled / transformers eager >= 1.2 (ours eager and both compiled are reported beside it).
- ``generation``: greedy tokens/s with each side's KV cache (``TransformerLM.generate`` vs
  ``generate(do_sample=False)``, never stopping early; every side checked to give the same tokens),
  batch 1 and 8, eager and compiled with dynamic shapes. Target: ours / transformers >= 1.0, eager.
- ``loading``: ``from_pretrained`` of a larger folder (fp32 safetensors), one fresh process per
  measurement (so RSS starts clean; libraries imported first): wall time, and the peak RSS above
  the RSS before the call (``VmHWM`` reset through ``/proc/self/clear_refs``) while loading and
  after a first forward pass (every weight touched), against the weights' bytes. transformers'
  ``from_pretrained`` is measured the same way, alternating. Target: ours while loading <= 1.5x.

Figures: ``benchmarks/results/pretrained.json`` (the last stdout line is the same JSON). Linux only
(``/proc``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from _results import write_result

TARGETS = {"training": 1.2, "generation": 1.0, "load_rss": 1.5}
PROMPT = 16


def llama(size: dict[str, int], vocab: int) -> Any:
    import transformers

    return transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=size["d_model"], intermediate_size=size["mlp_hidden"],
        num_hidden_layers=size["n_layers"], num_attention_heads=size["n_heads"], num_key_value_heads=size["n_kv_heads"],
        max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False, attention_dropout=0.0,
    )


def build(size: dict[str, int], vocab: int, folder: Path) -> tuple[Any, Any]:
    """A random LlamaForCausalLM saved to ``folder``, and our TransformerLM read from it."""
    import transformers

    from nl_lightning.models import TransformerLM

    torch.manual_seed(0)
    theirs = transformers.LlamaForCausalLM(llama(size, vocab))
    theirs.save_pretrained(folder)
    return TransformerLM.from_pretrained(folder), theirs


def check_parity(ours: Any, theirs: Any, vocab: int) -> None:
    idx = torch.randint(0, vocab, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(idx), theirs.eval()(idx).logits, atol=1e-4, rtol=0)
    prompt = idx[:, :PROMPT]
    assert torch.equal(ours_generate(ours, prompt, 16), their_generate(theirs, prompt, 16)), "greedy tokens differ"


def ours_generate(model: Any, prompt: torch.Tensor, new: int) -> torch.Tensor:
    return model.generate(prompt, new, temperature=0.0, top_k=None)


def their_generate(model: Any, prompt: torch.Tensor, new: int) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, min_new_tokens=new,
                              do_sample=False, eos_token_id=None, pad_token_id=0)


def train_step(forward: Callable[[torch.Tensor], torch.Tensor], params: list, batch: tuple) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    idx, targets = batch

    def step() -> None:
        logits = forward(idx)
        F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def rotated(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each side per repeat; the order rotates every repeat."""
    names = list(sides)
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            sides[name]()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def ratio(times: dict, fast: str, slow: str, clock: str) -> float:
    """Median over repeats of slow time / fast time (> 1: ``fast`` is faster)."""
    return round(statistics.median(s / f for s, f in zip(times[slow][clock], times[fast][clock])), 3)


def bench_training(ours: Any, theirs: Any, vocab: int, args: argparse.Namespace) -> dict[str, Any]:
    batch = (torch.randint(0, vocab, (args.batch, args.seq_len)), torch.randint(0, vocab, (args.batch, args.seq_len)))
    ours.train(), theirs.train()
    sides = {
        "ours_eager": train_step(ours.model, list(ours.parameters()), batch),
        "theirs_eager": train_step(lambda i: theirs(input_ids=i, use_cache=False).logits, list(theirs.parameters()), batch),
    }
    if args.compile:
        compiled_ours, compiled_theirs = torch.compile(ours.model), torch.compile(theirs)  # as model.compile() does
        sides["ours_compiled"] = train_step(compiled_ours, list(ours.parameters()), batch)
        sides["theirs_compiled"] = train_step(lambda i: compiled_theirs(input_ids=i, use_cache=False).logits,
                                              list(theirs.parameters()), batch)
    for name, step in sides.items():  # warm-up: compilation, allocator, kernels
        start = time.perf_counter()
        step(), step()
        print(f"training warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    times = rotated(sides, args.repeats)
    tokens = args.batch * args.seq_len
    out = {"batch": args.batch, "seq_len": args.seq_len,
           "tokens_per_s": {n: round(tokens / statistics.median(t["wall"]), 1) for n, t in times.items()}}
    pairs = [("ours_eager", "theirs_eager")]
    if args.compile:
        pairs += [("ours_compiled", "theirs_eager"), ("ours_compiled", "theirs_compiled")]
    for clock in ("wall", "cpu"):
        out[f"ratios_{clock}"] = {f"{a}/{b}": ratio(times, a, b, clock) for a, b in pairs}
    return out


def generation_sides(ours: Any, theirs: Any, compile: bool) -> dict[str, Callable[[torch.Tensor, int], torch.Tensor]]:
    """Greedy generation per side; compiled with dynamic shapes (the KV cache grows every step).
    Ours: the same ``generate`` loop over ``torch.compile(model)``; theirs: ``generate`` with a
    compiled ``forward``, swapped in only for its own calls so the eager side stays eager."""
    sides = {"ours": lambda p, n: ours_generate(ours, p, n), "theirs": lambda p, n: their_generate(theirs, p, n)}
    if not compile:
        return sides
    import torch._dynamo

    from nl_lightning.models.generate import generate

    torch._dynamo.config.allow_unspec_int_on_nn_module = True  # KVCache.length: one graph, not one per length
    compiled_ours = torch.compile(ours.model, dynamic=True)
    eager_forward, compiled_forward = theirs.forward, torch.compile(theirs.forward, dynamic=True)

    def theirs_compiled(prompt: torch.Tensor, new: int) -> torch.Tensor:
        theirs.forward = compiled_forward
        try:
            return their_generate(theirs, prompt, new)
        finally:
            theirs.forward = eager_forward

    sides["ours_compiled"] = lambda p, n: generate(compiled_ours, p, n, temperature=0.0)
    sides["theirs_compiled"] = theirs_compiled
    return sides


def bench_generation(ours: Any, theirs: Any, vocab: int, args: argparse.Namespace) -> dict[str, Any]:
    ours.eval(), theirs.eval()
    out: dict[str, Any] = {"prompt": PROMPT, "new_tokens": args.new_tokens, "compiled": args.compile}
    generators = generation_sides(ours, theirs, args.compile)
    for batch in (1, 8):
        prompt = torch.randint(0, vocab, (batch, PROMPT), generator=torch.Generator().manual_seed(batch))
        expected = generators["theirs"](prompt, args.new_tokens)
        for name, run in generators.items():  # warm-up (compilation) and the same tokens on every side
            start = time.perf_counter()
            assert torch.equal(run(prompt, args.new_tokens), expected), f"{name}: greedy tokens differ"
            print(f"generation warm-up {name}, batch {batch}: {time.perf_counter() - start:.1f} s", flush=True)
        times = rotated({n: (lambda run=run: run(prompt, args.new_tokens)) for n, run in generators.items()},
                        args.repeats)
        tokens = batch * args.new_tokens
        row: dict[str, Any] = {"tokens_per_s": {n: round(tokens / statistics.median(t["wall"]), 1) for n, t in times.items()}}
        for clock in ("wall", "cpu"):
            row[f"ratio_{clock}"] = ratio(times, "ours", "theirs", clock)
            if args.compile:
                row[f"ratio_compiled_{clock}"] = ratio(times, "ours_compiled", "theirs_compiled", clock)
        out[f"batch_{batch}"] = row
        print(f"generation batch {batch}: {row}", flush=True)
    return out


def _proc_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def load_child(side: str, folder: str) -> None:
    """Child process: from_pretrained once; print seconds and peak RSS bytes above the start."""
    import transformers
    from transformers import LlamaForCausalLM

    import nl_lightning.pretrained  # noqa: F401  (imported lazily by from_pretrained: not part of loading)
    from nl_lightning.models import TransformerLM

    transformers.logging.set_verbosity_error()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := current RSS (torch, lightning, transformers, safetensors already imported)
    before = _proc_kib("VmRSS")
    start = time.perf_counter()
    if side == "ours":
        model = TransformerLM.from_pretrained(folder).eval()
        forward = model
    else:
        model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        forward = lambda idx: model(idx).logits  # noqa: E731
    seconds = time.perf_counter() - start
    peak_load = (_proc_kib("VmHWM") - before) * 1024
    with torch.no_grad():
        forward(torch.zeros(1, 8, dtype=torch.long))
    peak_forward = (_proc_kib("VmHWM") - before) * 1024
    print(json.dumps({"seconds": seconds, "peak_load": peak_load, "peak_forward": peak_forward}))


def bench_loading(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder = work / "large"
    size = dict(n_layers=args.load_layers, d_model=args.load_d_model, n_heads=16, n_kv_heads=4,
                mlp_hidden=args.load_d_model * 11 // 4)
    import transformers

    torch.manual_seed(0)
    transformers.LlamaForCausalLM(llama(size, args.load_vocab)).save_pretrained(folder)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "theirs": []}
    for r in range(args.load_repeats):
        for side in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
            cmd = [sys.executable, __file__, "--load-child", side, str(folder), "--threads", str(torch.get_num_threads())]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"model": size, "vocab": args.load_vocab, "weights_bytes": weights}
    for side, measured in runs.items():
        out[side] = {
            "seconds": round(statistics.median(m["seconds"] for m in measured), 3),
            "peak_load_over_weights": round(statistics.median(m["peak_load"] for m in measured) / weights, 3),
            "peak_forward_over_weights": round(statistics.median(m["peak_forward"] for m in measured) / weights, 3),
        }
        print(f"loading {side}: {out[side]} ({weights / 2**20:.0f} MiB of weights)", flush=True)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller model and fewer repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 6, quick 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady on a shared machine; 0 = torch's default)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("training", "generation", "loading"))
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time both sides under torch.compile (default: yes; --quick: no, compiling takes minutes)")
    parser.add_argument("--load-child", nargs=2, metavar=("SIDE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    args.repeats = args.repeats or (2 if quick else 6)
    args.compile = not quick if args.compile is None else args.compile
    args.size = (dict(n_layers=2, d_model=128, n_heads=4, n_kv_heads=2, mlp_hidden=352) if quick
                 else dict(n_layers=4, d_model=256, n_heads=8, n_kv_heads=2, mlp_hidden=704))  # configs/llama.yaml
    args.vocab, args.batch, args.seq_len = 256, (4 if quick else 16), (64 if quick else 256)
    args.new_tokens = 16 if quick else 64
    args.load_layers, args.load_d_model, args.load_vocab = (2, 256, 8192) if quick else (8, 1024, 32000)
    args.load_repeats = 1 if quick else 3
    return args


def main() -> None:
    args = parse_args()
    if args.load_child:
        return load_child(*args.load_child)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("torch._inductor").setLevel(logging.ERROR)
    print(f"Llama {args.size}, vocab {args.vocab}, fp32, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, {torch.get_num_threads()} thread(s), {args.repeats} rotated repeats", flush=True)
    figures: dict[str, Any] = {"model": args.size, "vocab": args.vocab, "repeats": args.repeats, "targets": TARGETS,
                               "transformers": transformers.__version__,
                               "attention": "both: F.scaled_dot_product_attention (transformers' default 'sdpa')"}
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = build(args.size, args.vocab, Path(tmp) / "llama")
        check_parity(ours, theirs, args.vocab)
        if "generation" not in args.skip:
            figures["generation"] = bench_generation(ours, theirs, args.vocab, args)
        if "training" not in args.skip:
            figures["training"] = bench_training(ours, theirs, args.vocab, args)
            print(f"training: {figures['training']}", flush=True)
        if "loading" not in args.skip:
            figures["loading"] = bench_loading(args, Path(tmp))
    figures["met"] = met(figures)
    print(f"targets met: {figures['met']}")
    write_result("pretrained", figures, args, quick=args.quick)


def met(figures: dict[str, Any]) -> dict[str, bool]:
    out = {}
    if "training" in figures and "ours_compiled/theirs_eager" in figures["training"]["ratios_wall"]:
        out["training"] = figures["training"]["ratios_wall"]["ours_compiled/theirs_eager"] >= TARGETS["training"]
    if "generation" in figures:
        out["generation"] = all(figures["generation"][f"batch_{b}"]["ratio_wall"] >= TARGETS["generation"] for b in (1, 8))
    if "loading" in figures:
        out["load_rss"] = figures["loading"]["ours"]["peak_load_over_weights"] <= TARGETS["load_rss"]
    return out


def render(figures: dict[str, Any]) -> str:
    """README section: the three comparisons and their targets."""
    m, t, g, ld = figures["model"], figures["training"], figures["generation"], figures["loading"]
    tps, rw = t["tokens_per_s"], t["ratios_wall"]
    ok = {k: "met" if v else "**not met**" for k, v in figures["met"].items()}
    return "\n".join([
        f"Our `TransformerLM` vs transformers {figures['transformers']} `LlamaForCausalLM`, same weights (logits equal "
        f"within 1e-4, greedy tokens identical), {m['n_layers']} layers, d_model {m['d_model']}, {m['n_heads']}/"
        f"{m['n_kv_heads']} heads, fp32 CPU, {figures['repeats']} rotated repeats:",
        "",
        "| | ours | transformers | ours / transformers |",
        "|---|---|---|---|",
        f"| training tokens/s, eager (B={t['batch']}, T={t['seq_len']}) | {tps['ours_eager']:.0f} | "
        f"{tps['theirs_eager']:.0f} | {rw['ours_eager/theirs_eager']:.2f} |",
        f"| training tokens/s, torch.compile | {tps['ours_compiled']:.0f} | {tps['theirs_compiled']:.0f} | "
        f"{rw['ours_compiled/theirs_compiled']:.2f} |",
        *[f"| greedy generation tokens/s, batch {b}{kind} | {g[f'batch_{b}']['tokens_per_s']['ours' + side]:.0f} | "
          f"{g[f'batch_{b}']['tokens_per_s']['theirs' + side]:.0f} | {g[f'batch_{b}'][key]:.2f} |"
          for kind, side, key in ((", eager", "", "ratio_wall"), (", torch.compile", "_compiled", "ratio_compiled_wall"))
          for b in (1, 8)],
        f"| from_pretrained seconds ({ld['weights_bytes'] / 2**20:.0f} MiB fp32) | {ld['ours']['seconds']:.2f} | "
        f"{ld['theirs']['seconds']:.2f} | |",
        f"| peak RSS while loading / weights | {ld['ours']['peak_load_over_weights']:.2f} | "
        f"{ld['theirs']['peak_load_over_weights']:.2f} | |",
        f"| peak RSS after a first forward / weights | {ld['ours']['peak_forward_over_weights']:.2f} | "
        f"{ld['theirs']['peak_forward_over_weights']:.2f} | |",
        "",
        f"Targets: training, ours compiled / transformers eager = {rw['ours_compiled/theirs_eager']:.2f} >= "
        f"{figures['targets']['training']} ({ok['training']}); generation >= {figures['targets']['generation']} at "
        f"batch 1 and 8 ({ok['generation']}); peak RSS while loading <= {figures['targets']['load_rss']}x the "
        f"weights ({ok['load_rss']}).",
    ])


def headline(figures: dict[str, Any]) -> tuple[str, str]:
    """README's table of headline figures: (what was measured, the figure)."""
    rw, met = figures["training"]["ratios_wall"], figures["met"]
    verdict = "met" if all(met.values()) else "**not met**"
    return ("Our `TransformerLM` vs transformers' `LlamaForCausalLM`, same weights",
            f"training {rw['ours_eager/theirs_eager']:.2f}x eager, {rw['ours_compiled/theirs_eager']:.2f}x compiled "
            f"(targets: {verdict})")


if __name__ == "__main__":
    main()
