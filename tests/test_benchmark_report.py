"""README figures are rendered from ``benchmarks/results/*.json`` only: ``report.py --check`` fails on any drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_figures_match_the_results_files():
    done = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_result_is_stale_once_the_code_it_measured_changes(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import _results

    measured = tmp_path / "nl_lightning" / "measured.py"
    measured.parent.mkdir()
    measured.write_text("SPEED = 1\n")
    monkeypatch.setattr(_results, "ROOT", tmp_path)
    main = type(sys)("__main__")
    main.__file__, main.MEASURES = str(measured), ("nl_lightning",)
    monkeypatch.setitem(sys.modules, "__main__", main)
    code = _results.code_files()
    assert code == {"nl_lightning/measured.py": _results_sha(measured)}
    record = {"code": code}
    assert _results.changed_code(record) == []
    measured.write_text("SPEED = 2\n")
    assert _results.changed_code(record) == ["nl_lightning/measured.py"]
    measured.unlink()
    assert _results.changed_code(record) == ["nl_lightning/measured.py"]
    assert _results.changed_code({}) is None  # written before code hashes: cannot be checked


def test_a_result_also_hashes_the_benchmark_scripts_it_imported(tmp_path, monkeypatch):
    """int8_llama measures with compression.measure: a change there must make int8_llama stale too."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import _results

    script, helper = tmp_path / "benchmarks" / "int8.py", tmp_path / "benchmarks" / "measuring.py"
    script.parent.mkdir()
    script.write_text("from measuring import measure\n")
    helper.write_text("def measure(): ...\n")
    monkeypatch.setattr(_results, "ROOT", tmp_path)
    main = type(sys)("__main__")
    main.__file__ = str(script)
    imported = type(sys)("measuring")
    imported.__file__ = str(helper)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setitem(sys.modules, "measuring", imported)
    record = {"code": _results.code_files()}
    assert set(record["code"]) == {"benchmarks/int8.py", "benchmarks/measuring.py"}
    helper.write_text("def measure(): return 1\n")
    assert _results.changed_code(record) == ["benchmarks/measuring.py"]


def _results_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_benchmark_script_has_a_readme_section_with_its_command():
    """benchmarks/README.md describes the scripts that exist: a ``## `NAME` `` section per script (not
    _results.py / report.py), and in it the command that runs that script."""
    readme = (REPO / "benchmarks" / "README.md").read_text()
    sections = {part.split("`")[1]: part for part in readme.split("\n## ")[1:] if part.startswith("`")}
    scripts = {p.name for p in (REPO / "benchmarks").glob("*.py") if p.name not in ("_results.py", "report.py")}
    scripts |= {p.name for p in (REPO / "benchmarks").glob("*.sh")}
    assert scripts - set(sections) == set(), "scripts without a section in benchmarks/README.md"
    assert set(sections) - scripts == set(), "sections of scripts that no longer exist"
    for name in scripts:
        runner = "bash" if name.endswith(".sh") else "python"
        assert f"Command: `{runner} benchmarks/{name}" in sections[name], name


def test_per_cpu_results_keep_each_kind_of_cpu_apart(tmp_path, monkeypatch):
    """A run on one CPU replaces that CPU's record only; quick runs keep nothing; the key names the INT8 unit."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import _results

    monkeypatch.setattr(_results, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(_results, "CPU_DIR", tmp_path / "cpus")
    amx = {"cpu": "Intel(R) Xeon(R) Processor", "isa": ["avx2", "avx512f", "avx512_vnni", "amx_int8"]}
    vnni = {"cpu": "AMD EPYC", "isa": ["avx2", "avx512f", "avx512_vnni"]}
    assert [_results.cpu_key(m) for m in (amx, vnni, {"cpu": "AMD EPYC", "isa": ["avx2"]})] == [
        "intel-xeon-processor-amx", "amd-epyc-vnni", "amd-epyc-avx2"]
    for machine, figure in ((amx, 1), (vnni, 2), (amx, 3)):
        monkeypatch.setattr(_results, "machine", lambda machine=machine: {**machine, "time_utc": "now"})
        _results.write_result("bench", {"x": figure}, per_cpu=True)
    _results.write_result("bench", {"x": 4}, per_cpu=True, quick=True)
    assert _results.read_result("bench")["figures"] == {"x": 3}
    assert [(r["machine"]["cpu"], r["figures"]["x"]) for r in _results.cpu_records("bench")] == [
        ("AMD EPYC", 2), ("Intel(R) Xeon(R) Processor", 3)]
    assert _results.cpu_records("other") == []
