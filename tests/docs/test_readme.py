"""README: what it must keep, and every quick-start command and Python example in it runs.

The quick-start blocks (under "The two commands" and "Three ways to use it") run line by line in a
scratch folder with the repository's ``configs/``, in README order (``--ckpt_path last`` resumes the
run made above it), then the README's Python blocks run there (``TransformerLM.load("runs/char_lm")``
loads that run). Fits get the short-run override the README gives ("add ``--trainer.max_steps=20``
to any fit to try it quickly"). A command that is not run is listed in ``NOT_RUN`` with the reason;
a new command in the README fails ``test_every_quick_start_command_is_handled`` until it is run or
listed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from doc_pages import REPO, code_blocks

README = REPO / "README.md"
SHORT_RUN = "--trainer.max_steps=20"
TIMEOUT_S = 180  # each command takes well under a minute alone; a busy 2-core machine gets slack
NOT_RUN = {
    "make demo": "600 training steps after the set-up; its two commands run here: `nl-lightning fit --config "
                 "configs/char_lm.yaml` (with the short-run override) and `nl-lightning generate`",
    "make test": "the test suite itself, which runs this test",
    "nl-lightning fit --config configs/llama.yaml --trainer.max_steps=100":
        "the llama preset (4 x 256, 16 x 256 tokens, 2 batches a step) takes minutes on 2 CPU cores even for 20 "
        "steps; tests/test_cli.py runs it (every fit config) for two steps",
}
QUICK_START = ("## The two commands", "## Three ways to use it")


def _sections(text: str, titles: tuple[str, ...]) -> str:
    parts = re.split(r"^(?=## )", text, flags=re.M)
    return "".join(part for part in parts if part.startswith(titles))


def quick_start_commands() -> list[str]:
    """Every command line of the README's quick-start ``bash`` blocks, comments and continuations removed."""
    commands = []
    for block in code_blocks(README, ("bash",), text=_sections(README.read_text(), QUICK_START)):
        for line in block.code.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


COMMANDS = quick_start_commands()


def with_short_run(command: str) -> str:
    """``nl-lightning fit ...`` with at most ``SHORT_RUN`` steps (``--print_config`` trains nothing)."""
    if not command.startswith("nl-lightning fit") or "--print_config" in command:
        return command
    return re.sub(r"\s--trainer\.max_steps=\d+", "", command) + " " + SHORT_RUN


def test_readme_keeps_what_it_must():
    text = README.read_text()
    assert text.startswith("# nl_lightning\n\nPyTorch Lightning extensions")  # the pitch
    assert "make demo" in COMMANDS and "make test" in COMMANDS  # the two commands
    three_ways = _sections(text, ("## Three ways to use it",))
    for way in ("Subclass our LightningModules", "Add our callbacks to `Trainer(callbacks=[...])`",
                "The `nl-lightning` command with YAML configs"):
        assert way in three_ways, way
    assert SHORT_RUN in three_ways  # the short-run override the commands below are run with
    assert text.count("<!-- bench-headlines -->") == 1  # one generated table of headline figures...
    assert not re.search(r"<!-- bench:[\w-]+ -->", text)  # ...and no other benchmark section


def test_readme_links_resolve():
    """Every relative link of the README names a file of the repository (the guides, CONTRIBUTING...)."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


def test_every_quick_start_command_is_handled():
    assert COMMANDS, "no quick-start command found in README.md"
    for command in COMMANDS:
        assert command in NOT_RUN or command.startswith("nl-lightning "), (
            f"README quick-start command {command!r}: make this test run it, or add it to NOT_RUN with the reason")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme")
    (path / "configs").symlink_to(REPO / "configs")
    return path


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in NOT_RUN])
def test_quick_start_command_runs(command, workdir):
    line = with_short_run(command)
    done = subprocess.run(["bash", "-c", line], cwd=workdir, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, f"$ {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if command.startswith("nl-lightning generate"):
        assert "\nThe " in done.stdout, done.stdout[:200]  # the prompt, then the sampled bytes


@pytest.mark.slow
def test_python_examples_run(workdir, monkeypatch):
    """After the commands above (so ``runs/char_lm`` exists), every Python block of the README, in order."""
    assert (workdir / "runs" / "char_lm").is_dir(), "the quick-start commands did not run first"
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__readme__"}
    blocks = code_blocks(README, ("python",))
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block.code, block.where, "exec"), namespace)
    assert type(namespace["model"]).__name__ == "MyLM"
    assert list((workdir / "runs" / "callbacks").rglob("curves.png")), "the callbacks example drew no curves.png"


def test_short_run_override():
    assert with_short_run("nl-lightning fit --config a.yaml") == "nl-lightning fit --config a.yaml " + SHORT_RUN
    assert with_short_run("nl-lightning fit --config a.yaml --trainer.max_steps=100") == (
        "nl-lightning fit --config a.yaml " + SHORT_RUN)
    assert with_short_run("nl-lightning fit --config b.yaml --print_config").endswith("--print_config")
    assert shlex.split(with_short_run('nl-lightning generate --prompt "The "'))[-1] == "The "
