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
