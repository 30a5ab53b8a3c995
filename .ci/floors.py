"""Print pip requirements that pin every direct dependency of pyproject.toml to its declared floor.

    python .ci/floors.py [extra ...]           # core dependencies, plus the floors of these extras
    python .ci/floors.py --check [extra ...]   # exit 1 unless this Python has exactly those versions

``make test-floors`` installs them (torch first) and runs the fast suite on them.

``name[extras]>=X,<Y`` becomes ``name[extras]==X``; a requirement without a lower bound stays as it
is (the resolver picks it). torch is left out: it is installed first as the one CPU build CI has.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floor(requirement: str) -> str:
    match = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(.*)$", requirement.strip())
    name, spec = match.group(1), match.group(2)
    lower = re.search(r">=\s*([^,;\s]+)", spec)
    return f"{name}=={lower.group(1)}" if lower else requirement


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += [r for r in project["optional-dependencies"][extra] if not r.startswith("nl-lightning")]
    return [floor(r) for r in reqs if not re.match(r"^torch\b(?!-)", r)]


def check(pins: list[str]) -> list[str]:
    """The pins this environment does not have (name, wanted, installed)."""
    from importlib.metadata import PackageNotFoundError, version
    from packaging.version import Version

    wrong = []
    for pin in pins:
        if "==" not in pin:
            continue
        name, wanted = re.sub(r"\[[^\]]*\]", "", pin).split("==")
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed == "missing" or Version(installed) != Version(wanted):
            wrong.append(f"{name}: floor {wanted}, installed {installed}")
    return wrong


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--check"]:
        wrong = check(requirements(args[1:]))
        print("\n".join(wrong) or "every declared floor is installed")
        sys.exit(1 if wrong else 0)
    print("\n".join(requirements(args)))
