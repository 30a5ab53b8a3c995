"""Where every benchmark's figures go: ``benchmarks/results/<name>.json``, with the machine beside them.

Each script calls :func:`write_result` once with its figures; ``benchmarks/report.py`` renders
README sections from these files only (through the script's own ``render(result) -> str``), so
no figure in the README is transcribed by hand. A script whose targets depend on the CPU's
instruction sets (INT8) also keeps each kind of CPU's latest run, ``results/cpus/<name>/<cpu>.json``
(``per_cpu=True``), so a run on one machine does not erase what another measured. A run under
``isa_mask.py`` (AVX-512 and VNNI hidden from CPUID) is one more kind of CPU, and keeps only that record.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CPU_DIR = RESULTS_DIR / "cpus"
ROOT = RESULTS_DIR.parent.parent
#: The 1-minute load when the benchmark started (this module is imported first thing): the load at the
#: end includes the benchmark's own processes, so it alone cannot say whether the machine was idle.
LOAD_AT_START = round(os.getloadavg()[0], 2)
if os.environ.get("NL_BENCH_ISA_MASK"):  # before the script imports anything that reads the ISA
    from isa_mask import enter

    ISA_MASK = enter()
else:
    ISA_MASK = None
PACKAGES = ("torch", "lightning", "nl-lightning", "onnxruntime", "litserve", "optuna", "mlflow", "tensorboard")


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU and its instruction sets, cores, threads, load, versions, commit."""
    import torch

    from nl_lightning.export.isa import cpu_isa

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg_1m_start": LOAD_AT_START,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "versions": versions,
        "git_commit": _git_commit(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"isa_mask": {**ISA_MASK, "cpuid_answered": _cpuid_answered()}} if ISA_MASK else {}),
    }


def write_result(name: str, figures: dict[str, Any], args: Any = None, quick: bool = False,
                 per_cpu: bool = False) -> Path | None:
    """Write ``results/<name>.json`` (figures, arguments, machine, the code measured), and with ``per_cpu`` the
    same record as ``results/cpus/<name>/<cpu_key>.json``. ``--quick`` runs are not kept: they are smoke tests,
    and README figures come from full runs only. Prints the JSON line."""
    from nl_lightning._io import write_json

    record = {
        "name": name,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv else name,
        "args": vars(args) if args is not None and hasattr(args, "__dict__") else args,
        "machine": machine(),
        "code": code_files(),
        "figures": figures,
    }
    print(json.dumps(record, default=str))
    if quick:
        return None
    if per_cpu:
        path = write_json(CPU_DIR / name / f"{cpu_key(record['machine'])}.json", record, default=str)
    if record["machine"].get("isa_mask"):  # this CPU's own figures stay results/<name>.json
        if not per_cpu:
            print(f"{name} keeps no per-CPU records: a run under isa_mask.py is not kept", file=sys.stderr)
        return path if per_cpu else None
    return write_json(RESULTS_DIR / f"{name}.json", record, default=str)


def cpu_key(machine: dict[str, Any]) -> str:
    """The kind of CPU a record ran on, as a file stem: its model and widest INT8 unit, e.g. ``amd-epyc-vnni``;
    ``-masked`` when ``isa_mask.py`` hid the wider units."""
    model = re.sub(r"\((r|tm)\)", "", str(machine.get("cpu") or "unknown").lower())
    masked = "-masked" if machine.get("isa_mask") else ""
    return f"{re.sub(r'[^a-z0-9]+', '-', model).strip('-')}-{int8_unit(machine)}{masked}"


def int8_unit(machine: dict[str, Any]) -> str:
    """The widest INT8 unit of the ISA a record ran with: amx, vnni, avx512, avx2 or base."""
    isa = set(machine.get("isa") or ())
    return ("amx" if "amx_int8" in isa else "vnni" if isa & {"avx512_vnni", "avx_vnni"} else
            "avx512" if "avx512f" in isa else "avx2" if "avx2" in isa else "base")


def cpu_label(machine: dict[str, Any]) -> str:
    """A record's CPU for a table: ``AMD EPYC (vnni)``, or ``AMD EPYC (avx2: AVX-512 and VNNI hidden by
    isa_mask.py)``."""
    unit = int8_unit(machine)
    if machine.get("isa_mask"):
        hidden = machine["isa_mask"]["hidden"]
        names = [n for n, f in (("AVX-512", "avx512f"), ("VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"),
                                ("AMX", "amx_int8")) if f in hidden]
        unit += f": {' and '.join(names) or 'nothing'} hidden by `isa_mask.py`"
    return f"{machine.get('cpu') or 'unknown CPU'} ({unit})"


def cpu_records(name: str) -> list[dict[str, Any]]:
    """Each kind of CPU's latest full run of ``name`` (``per_cpu=True``), by file name."""
    return [json.loads(p.read_text()) for p in sorted((CPU_DIR / name).glob("*.json"))]


def code_files() -> dict[str, str]:
    """The code a result measures, file -> SHA-256: every ``nl_lightning`` module this process imported,
    the script itself, the other benchmark scripts it imported (``int8_llama`` measures with
    ``compression.measure``; this recorder is not one), and the files under the paths in the script's
    ``MEASURES`` (code that runs only in child processes: a server, a CLI run). ``report.py`` marks the
    figure stale when one changes."""
    from nl_lightning._io import file_sha256

    benchmarks = ROOT / "benchmarks"
    files = set()
    for m in list(sys.modules.values()):
        path = getattr(m, "__file__", None)
        if not path or m is sys.modules.get(__name__):
            continue
        path = Path(path).resolve()
        if getattr(m, "__name__", "").startswith("nl_lightning") or path.is_relative_to(benchmarks):
            files.add(path)
    main = sys.modules.get("__main__")
    if getattr(main, "__file__", None):
        files.add(Path(main.__file__).resolve())
    for extra in getattr(main, "MEASURES", ()):
        path = ROOT / extra
        files.update(p.resolve() for p in ([path] if path.is_file() else path.rglob("*")) if p.suffix in (".py", ".yaml"))
    return {p.relative_to(ROOT).as_posix(): file_sha256(p) for p in sorted(files) if p.is_relative_to(ROOT)}


def changed_code(record: dict[str, Any]) -> list[str] | None:
    """Files the result measured that changed (or vanished) since it was written; None when the result
    predates code hashes, so it cannot be checked."""
    from nl_lightning._io import file_sha256

    if "code" not in record:
        return None
    return [f for f, digest in record["code"].items() if not (ROOT / f).is_file() or file_sha256(ROOT / f) != digest]


def read_result(name: str) -> dict[str, Any]:
    return json.loads((RESULTS_DIR / f"{name}.json").read_text())


def machine_line(record: dict[str, Any]) -> str:
    """One line naming where and how a result was measured (for README sections)."""
    m = record["machine"]
    v = m.get("versions", {})
    isa = f" ({', '.join(m['isa'])})" if m.get("isa") else ""
    return (f"_Measured {m['time_utc'][:10]} on {m['cores']}-core {m['cpu']}{isa}, torch {v.get('torch', '?')}, "
            f"{m['torch_threads']} torch thread(s), {_load(m)}; "
            f"`{record['command']}` → `benchmarks/results/{record['name']}.json`._")


def _load(m: dict[str, Any]) -> str:
    if "load_avg_1m_start" not in m:
        return f"load average {m['load_avg_1m']}"
    return f"load average {m['load_avg_1m_start']} at start, {m['load_avg_1m']} at end"


def _cpuid_answered() -> int | None:
    from isa_mask import cpuid_answered

    return cpuid_answered()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
