"""Run a benchmark as on an AVX2 CPU: AVX-512, VNNI and AMX hidden from every library in the process.

    python benchmarks/isa_mask.py avx2 benchmarks/int8_llama.py     # INT8 targets with AVX2 kernels

INT8 speed and accuracy depend on the instruction set: without VNNI, u8 x s8 products sum in 16 bits
(ORT's guidance, and our ``int8_recipe``, turn on ``reduce_range``) and the kernels are slower. A
figure from a VNNI machine says nothing about an AVX2 one, and a benchmark machine cannot switch
ONNX Runtime's kernels: MLAS reads CPUID once and has no setting. So this compiles ``isa_mask.c``
with the system C compiler and runs the script with it preloaded: CPUID faults (Linux's
``arch_prctl(ARCH_SET_CPUID)``, flag ``cpuid_fault``) and the hidden bits read as absent, for torch,
oneDNN, MKL and MLAS alike, baseline and INT8 both.

In the masked process ``_results`` calls :func:`enter`: ``cpu_isa()`` reports only the profile's flags,
so the INT8 recipe and the recorded ISA follow the mask, and two probes check that it took (torch
dispatches AVX2 kernels; ORT's u8 x s8 ``MatMulInteger`` saturates as 16-bit sums do). The record goes
to ``results/cpus/<name>/<cpu>-avx2-masked.json`` only, never ``results/<name>.json``. It is this
core's clock, caches and memory with AVX2 kernels, not a real AVX2 CPU (Zen 3, Skylake client).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV = "NL_BENCH_ISA_MASK"
SOURCE = Path(__file__).resolve().with_suffix(".c")
#: The ``cpu_isa()`` flags a masked process keeps, per profile; isa_mask.c hides the rest from CPUID.
PROFILES: dict[str, tuple[str, ...]] = {"avx2": ("avx2", "fma")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", choices=sorted(PROFILES), help="the instruction sets the script may use")
    parser.add_argument("script", type=Path, help="a benchmark that keeps per-CPU records, e.g. int8_llama.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    args = parser.parse_args()
    if not args.script.is_file():
        parser.error(f"no script {args.script}")
    with tempfile.TemporaryDirectory(prefix="nl-isa-mask-") as tmp:
        library = build(Path(tmp))
        preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD")]))
        env = {**os.environ, ENV: args.profile, "LD_PRELOAD": preload}
        return subprocess.run([sys.executable, str(args.script), *args.args], env=env).returncode


def build(out_dir: Path) -> Path:
    """Compile ``isa_mask.c`` into ``out_dir``; a clear error where this machine cannot mask CPUID."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"isa_mask: needs Linux on x86-64, not {sys.platform} on {platform.machine()}")
    if "cpuid_fault" not in _cpu_flags():
        raise SystemExit("isa_mask: this CPU or hypervisor has no CPUID faulting (no 'cpuid_fault' in "
                         "/proc/cpuinfo's flags), so CPUID cannot be masked here; run the script on an AVX2 machine")
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise SystemExit("isa_mask: no C compiler ('cc', or $CC) to build isa_mask.c; install gcc (apt install gcc)")
    library = out_dir / "isa_mask.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True)
    return library


def enter() -> dict[str, Any] | None:
    """In a masked process: make ``cpu_isa()`` follow the mask, check that the mask took, and return what to
    record (None when not masked). A mask that did not take stops the run: its figures would be mislabelled."""
    profile = os.environ.get(ENV)
    if not profile:
        return None
    if profile not in PROFILES:
        raise SystemExit(f"isa_mask: {ENV}={profile!r} is not a profile; choose from {sorted(PROFILES)}")
    import torch

    import nl_lightning.export.isa as isa

    real = isa.cpu_isa()
    kept = tuple(f for f in real if f in PROFILES[profile])
    isa._read_isa = lambda path: kept  # cpu_isa() and everything built on it (the INT8 recipe) see the mask
    record = {"profile": profile, "hidden": [f for f in real if f not in kept],
              "torch_capability": torch.backends.cpu.get_cpu_capability(), "ort_u8s8_saturates": ort_saturates()}
    if record["torch_capability"] != profile.upper() or not record["ort_u8s8_saturates"]:
        raise SystemExit(f"isa_mask: the {profile} mask did not take ({record}); is isa_mask.so in LD_PRELOAD?")
    return record


def cpuid_answered() -> int | None:
    """How many CPUID instructions the preloaded mask has answered in this process (None: not preloaded)."""
    library = next((p for p in os.environ.get("LD_PRELOAD", "").split() if p.endswith("isa_mask.so")), None)
    return int(ctypes.CDLL(library).isa_mask_answered()) if library else None


def ort_saturates() -> bool:
    """Whether ONNX Runtime's u8 x s8 integer matmul sums pairs in 16 bits (AVX2's vpmaddubsw) rather than
    32 (VNNI, AMX): 255 x 127 twice overflows int16, so a saturating kernel returns less than the exact sum."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    weight = numpy_helper.from_array(np.full((k, 16), 127, np.int8), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [4, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [4, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"A": np.full((4, k), 255, np.uint8)})[0]
    return bool(out[0, 0] < 255 * 127 * k)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(line.partition(":")[2].split()) for line in text.splitlines() if line.startswith("flags")), set())


if __name__ == "__main__":
    sys.exit(main())
