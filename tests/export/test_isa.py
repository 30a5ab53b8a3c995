from __future__ import annotations

import pytest

from nl_lightning.export.isa import ISA_FLAGS, cpu_isa, has_vnni

SAPPHIRE_RAPIDS = "fpu vme sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16"


def _cpuinfo(tmp_path, *flag_lines: str):
    path = tmp_path / "cpuinfo"
    path.write_text("".join(f"processor\t: {i}\nmodel name\t: X\nflags\t\t: {f}\n\n" for i, f in enumerate(flag_lines)))
    return path


@pytest.mark.parametrize(("flags", "expected"), [
    (SAPPHIRE_RAPIDS, ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                       "amx_int8", "amx_bf16"]),
    ("sse4_2 avx avx2 fma avx_vnni", ["avx2", "fma", "avx_vnni"]),
    ("sse4_2 avx avx2 fma", ["avx2", "fma"]),
    ("fp asimd evtstrm", []),  # an ARM core: none of the x86 sets
])
def test_cpu_isa_reads_the_flags_line(tmp_path, flags, expected):
    assert cpu_isa(_cpuinfo(tmp_path, flags, flags)) == expected


def test_cpu_isa_does_not_mistake_a_longer_flag_for_a_shorter_one(tmp_path):
    assert cpu_isa(_cpuinfo(tmp_path, "avx512_vnnix avx2x amx_tile_ext")) == []


def test_cpu_isa_without_cpuinfo_is_empty(tmp_path):
    assert cpu_isa(tmp_path / "missing") == []


def test_this_machine_reports_known_flags_only():
    assert set(cpu_isa()) <= set(ISA_FLAGS)


@pytest.mark.parametrize(("isa", "vnni"), [(["avx512_vnni"], True), (["avx_vnni"], True), (["amx_int8"], True),
                                           (["avx2", "avx512f", "avx512bw"], False), ([], False)])
def test_has_vnni(isa, vnni):
    assert has_vnni(isa) is vnni
