#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA GPU and a CUDA build of torch:
#
#   1. every test marked `gpu` (16-mixed AMP with GradScaler, flash / memory-efficient SDPA on CUDA,
#      FSDPStrategy in bf16-mixed, Torch-TensorRT export when the `tensorrt` extra is installed);
#   2. benchmarks/train_throughput.py on CUDA in fp32 (32-true) and bf16-mixed, for the char LM's
#      model (configs/char_lm.yaml size) and a GPU-sized one (8 x 1024, batch 16 x 512), and the
#      bf16-mixed / fp32 speed-up of each (our notes promise 2x from AMP);
#
# then writes benchmarks/results/gpu.json (test outcomes, tokens/s, speed-ups, the machine and GPU).
#
#   bash benchmarks/gpu.sh                      # from the repository root, with .venv
#   PYTHON=python GPU_QUICK=1 bash benchmarks/gpu.sh   # another interpreter; fewer steps (smoke test)
#
# Without CUDA it stops at once with exit code 2 and writes nothing: no figure exists until a GPU
# machine has run it. Exit code 1: a gpu test failed (gpu.json is still written, saying which).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    torch_version="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')"
    echo "benchmarks/gpu.sh: no CUDA device is visible to torch ($torch_version, interpreter $PY)." >&2
    echo "It runs only on a GPU machine with a CUDA build of torch; nothing was run and nothing written." >&2
    exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
quick=()
[[ -n "${GPU_QUICK:-}" ]] && quick=(--steps 5 --repeats 2)

echo "== gpu tests" >&2
tests_rc=0
"$PY" -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml="$work/tests.xml" tests || tests_rc=$?

# name | extra train_throughput.py arguments
sizes=("char_lm|" "gpu_sized|--n-layers 8 --d-model 1024 --seq-len 512 --batch-size 16")
for entry in "${sizes[@]}"; do
    name="${entry%%|*}"; extra="${entry#*|}"
    for precision in 32-true bf16-mixed; do
        echo "== train_throughput $name $precision" >&2
        # shellcheck disable=SC2086  # $extra is a list of arguments
        "$PY" benchmarks/train_throughput.py --accelerator cuda --precision "$precision" --threads 0 \
            ${extra} ${quick[@]+"${quick[@]}"} | tail -n 1 > "$work/train_${name}_${precision}.json"
    done
done

"$PY" - "$work" "$tests_rc" <<'EOF'
"""Collect the junit report and the benchmark JSON lines into benchmarks/results/gpu.json."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, "benchmarks")
from _results import write_result  # noqa: E402

work, tests_rc = Path(sys.argv[1]), int(sys.argv[2])
tests = {}
for case in ET.parse(work / "tests.xml").iter("testcase"):
    outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
    detail = next((child.get("message", "") for child in case if child.tag in ("failure", "error", "skipped")), "")
    tests[f"{case.get('classname')}::{case.get('name')}"] = {"outcome": outcome, "detail": detail[:300]}
train = {}
for size in ("char_lm", "gpu_sized"):
    runs = {p: json.loads((work / f"train_{size}_{p}.json").read_text())["figures"] for p in ("32-true", "bf16-mixed")}
    tps = {p: r["median_tokens_per_s"]["lightning"] for p, r in runs.items()}
    train[size] = {"model": runs["32-true"]["model"], "batch_size": runs["32-true"]["batch_size"],
                   "seq_len": runs["32-true"]["seq_len"], "lightning_tokens_per_s": tps,
                   "bf16_mixed_speedup": round(tps["bf16-mixed"] / tps["32-true"], 3),
                   "lightning_vs_plain": {p: r["ratio"] for p, r in runs.items()}}
    print(f"{size}: bf16-mixed / fp32 = {train[size]['bf16_mixed_speedup']:.2f}x (Lightning tokens/s {tps})")
counts = {k: sum(t["outcome"] == k for t in tests.values()) for k in ("passed", "failure", "error", "skipped")}
print(f"gpu tests: {counts}")
sys.argv = ["benchmarks/gpu.sh"]  # the command recorded beside the figures
write_result("gpu", {"tests": tests, "test_counts": counts, "tests_exit_code": tests_rc, "train": train,
                     "amp_target_speedup": 2.0})
EOF
exit $(( tests_rc == 0 ? 0 : 1 ))
