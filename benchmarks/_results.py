"""Where every benchmark's figures go: ``benchmarks/results/<name>.json``, with the machine beside them.

Each script calls :func:`write_result` once with its figures; ``benchmarks/report.py`` renders
README sections from these files only (through the script's own ``render(result) -> str``), so
no figure in the README is transcribed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The 1-minute load when the benchmark started (this module is imported first thing): the load at the
#: end includes the benchmark's own processes, so it alone cannot say whether the machine was idle.
LOAD_AT_START = round(os.getloadavg()[0], 2)
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
    }


def write_result(name: str, figures: dict[str, Any], args: Any = None, quick: bool = False) -> Path | None:
    """Write ``results/<name>.json`` (figures, arguments, machine). ``--quick`` runs are not kept:
    they are smoke tests, and README figures come from full runs only. Prints the JSON line."""
    record = {
        "name": name,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv else name,
        "args": vars(args) if args is not None and hasattr(args, "__dict__") else args,
        "machine": machine(),
        "figures": figures,
    }
    print(json.dumps(record, default=str))
    if quick:
        return None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


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
