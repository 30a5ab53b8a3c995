"""``cpu_isa``: the x86 instruction sets INT8 and fp32 speed depend on, from ``/proc/cpuinfo``.

INT8 kernels differ by instruction set: AMX tiles, VNNI dot products (AVX512_VNNI / AVX_VNNI),
or plain AVX2 / AVX512 multiply-adds whose 16-bit intermediate sums can saturate. Export
manifests and every benchmark result record it, so a figure always says what hardware made it,
and :func:`nl_lightning.export.ort.int8_recipe` picks the quantization settings from it.
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["ISA_FLAGS", "cpu_isa", "has_vnni"]

#: The /proc/cpuinfo flags recorded, in order (the CPU's name for each).
ISA_FLAGS: tuple[str, ...] = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
    "amx_int8", "amx_bf16",
)
_CPUINFO = Path("/proc/cpuinfo")


def cpu_isa(cpuinfo: str | Path = _CPUINFO) -> list[str]:
    """The :data:`ISA_FLAGS` this CPU has; empty where /proc/cpuinfo is missing (not Linux, not x86)."""
    return list(_read_isa(str(cpuinfo)))


@functools.cache
def _read_isa(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):  # one line per logical CPU, all alike: the first is enough
            flags = set(line.partition(":")[2].split())
            break
    return tuple(f for f in ISA_FLAGS if f in flags)


def has_vnni(isa: list[str] | tuple[str, ...]) -> bool:
    """Whether u8 x s8 products accumulate in 32 bits (VNNI or AMX), so full-range INT8 weights are safe."""
    return any(f in isa for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
