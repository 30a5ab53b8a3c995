"""``benchmarks/isa_mask.py``: a process that runs AVX2 kernels only, in torch and ONNX Runtime alike, and records so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import _results  # noqa: E402
import isa_mask  # noqa: E402

PROBE = """
import sys
sys.path.insert(0, {benchmarks!r})
import torch
import isa_mask
from nl_lightning.export.isa import cpu_isa
from nl_lightning.export.ort import int8_recipe
record = isa_mask.enter()
print(torch.backends.cpu.get_cpu_capability(), isa_mask.ort_saturates(), ",".join(cpu_isa()),
      int8_recipe().reduce_range, bool(record), isa_mask.cpuid_answered())
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    try:
        return isa_mask.build(tmp_path_factory.mktemp("isa_mask"))
    except SystemExit as e:  # not Linux x86-64, no CPUID faulting, or no C compiler: say which
        pytest.skip(str(e))


def _run(code: str, library: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", isa_mask.ENV)}
    if library is not None:
        env.update(LD_PRELOAD=str(library), **{isa_mask.ENV: "avx2"})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_under_the_mask_torch_and_onnx_runtime_run_avx2_kernels_and_the_recipe_follows(library):
    done = _run(PROBE.format(benchmarks=str(REPO / "benchmarks")), library)
    assert done.returncode == 0, done.stderr
    capability, saturates, isa, reduce_range, recorded, answered = done.stdout.split()
    assert (capability, saturates, isa, reduce_range, recorded) == ("AVX2", "True", "avx2,fma", "True", "True")
    assert int(answered) > 0  # torch, oneDNN and MLAS asked CPUID, and the mask answered


CPUID_7 = """
import ctypes
lib = ctypes.CDLL({library!r})
out = (ctypes.c_uint * 4)()
lib.isa_mask_cpuid(7, 0, out)
print(out[1], out[2], out[3])
lib.isa_mask_cpuid(7, 1, out)
print(out[0])
"""


def test_the_mask_hides_avx512_vnni_and_amx_bits_and_keeps_avx2(library):
    done = _run(CPUID_7.format(library=str(library)), library)
    assert done.returncode == 0, done.stderr
    (ebx, ecx, edx), (eax_1,) = (map(int, line.split()) for line in done.stdout.splitlines())
    assert ebx & (1 << 5)  # AVX2 stays
    for reg, bit, name in ((ebx, 16, "AVX512F"), (ebx, 30, "AVX512BW"), (ebx, 31, "AVX512VL"),
                           (ecx, 11, "AVX512_VNNI"), (edx, 24, "AMX_TILE"), (edx, 25, "AMX_INT8"),
                           (eax_1, 4, "AVX_VNNI"), (eax_1, 5, "AVX512_BF16")):
        assert not reg & (1 << bit), f"{name} is visible under the mask"


def test_without_the_mask_this_cpu_runs_its_own_kernels(library):
    """The control: the probe tells the two apart on a CPU with VNNI (on an AVX2 CPU there is nothing to hide)."""
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa_mask._cpu_flags()):
        pytest.skip("this CPU has no VNNI or AMX: masked and unmasked kernels are the same")
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import isa_mask, torch; "
            "print(torch.backends.cpu.get_cpu_capability(), isa_mask.ort_saturates(), isa_mask.enter())")
    done = _run(code, None)
    assert done.returncode == 0, done.stderr
    capability, saturates, record = done.stdout.split()
    assert capability != "AVX2" and (saturates, record) == ("False", "None")


def test_a_real_segmentation_fault_still_crashes_under_the_mask(library):
    done = _run("import ctypes; ctypes.string_at(0)", library)
    assert done.returncode == -11, (done.returncode, done.stderr)


def test_a_mask_that_did_not_take_stops_the_run(monkeypatch):
    import nl_lightning.export.isa as isa

    if "avx512f" not in isa.cpu_isa():
        pytest.skip("on a CPU without AVX-512, an unmasked process already runs AVX2 kernels")
    monkeypatch.setattr(isa, "_read_isa", isa._read_isa)  # enter() replaces it: restore it afterwards
    monkeypatch.setenv(isa_mask.ENV, "avx2")
    with pytest.raises(SystemExit, match="the avx2 mask did not take"):
        isa_mask.enter()
    monkeypatch.setenv(isa_mask.ENV, "sse2")
    with pytest.raises(SystemExit, match="'sse2' is not a profile; choose from"):
        isa_mask.enter()


def test_a_masked_run_keeps_only_its_own_per_cpu_record(tmp_path, monkeypatch):
    monkeypatch.setattr(_results, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(_results, "CPU_DIR", tmp_path / "cpus")
    native = {"cpu": "AMD EPYC", "isa": ["avx2", "fma", "avx512f", "avx512_vnni"], "time_utc": "now"}
    masked = {"cpu": "AMD EPYC", "isa": ["avx2", "fma"], "time_utc": "now",
              "isa_mask": {"profile": "avx2", "hidden": ["avx512f", "avx512_vnni"]}}
    for machine, figure in ((native, 1), (masked, 2)):
        monkeypatch.setattr(_results, "machine", lambda machine=machine: machine)
        _results.write_result("bench", {"x": figure}, per_cpu=True)
    assert _results.read_result("bench")["figures"] == {"x": 1}  # the machine's own figures stay the headline
    assert {p.name for p in (tmp_path / "cpus" / "bench").iterdir()} == {"amd-epyc-vnni.json",
                                                                         "amd-epyc-avx2-masked.json"}
    assert _results.write_result("other", {"x": 3}) is None and not (tmp_path / "other.json").exists()
    assert _results.cpu_label(native) == "AMD EPYC (vnni)"
    assert _results.cpu_label(masked) == "AMD EPYC (avx2: AVX-512 and VNNI hidden by `isa_mask.py`)"
