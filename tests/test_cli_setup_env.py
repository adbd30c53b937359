"""``scripts/setup-env`` (run by ``scripts/main`` before every command): a
set-up with nothing to do returns at once, a change to what the build reads
(or a fresh clone) runs the full set-up.

The script runs for real, in a copy of the repository's build inputs whose
Python is a recording stand-in, so what it would run is seen without a
network or a 20-second build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    sys.platform.startswith("linux")
    and not (Path("/usr/include/pcre2.h").exists() and shutil.which("gcc")),
    reason="setup-env would install system packages first",
)

# Stands in for python3 and for .venv/bin/python: records its arguments; as
# "python3 -m venv .venv" it makes the venv (itself, as .venv/bin/python).
FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin"
    cp "$0" "$3/bin/python"
    printf '#!/bin/sh\\n' > "$3/bin/orchestrator-spawn"
    chmod +x "$3/bin/orchestrator-spawn"
    echo "version = 3.11.7" > "$3/pyvenv.cfg"
fi
if [ "$1 $2 $3" = "-m pip install" ]; then
    : > orchestrator_spawn/_core.abi3.so
fi
exit 0
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if not (ROOT / "scripts" / "setup-env").is_file() or not (ROOT / "csrc").is_dir():
        pytest.skip("needs the source tree's scripts/ and csrc/ (absent where a wheel is tested)")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup-env", repo / "scripts" / "setup-env")
    for name in ("pyproject.toml", "setup.py", "setup.cfg"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "csrc", repo / "csrc")
    (repo / "orchestrator_spawn").mkdir()
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return repo


def setup_env(repo: Path) -> tuple[list[str], float]:
    """Runs the script; returns the Python commands it ran and its wall time."""
    calls = repo.parent / "calls.log"
    calls.write_text("")
    env = {**os.environ, "PYTHON": str(repo.parent / "python3"), "CALLS": str(calls)}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/setup-env"], cwd=repo, env=env, capture_output=True, timeout=60
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines(), took


def test_fresh_clone_sets_up_then_nothing_to_do_is_instant(checkout: Path) -> None:
    calls, _ = setup_env(checkout)
    assert calls[0] == "-m venv .venv"
    assert any(call.startswith("-m pip install -q -e") for call in calls), calls
    calls, took = setup_env(checkout)
    assert calls == []  # no pip, no venv, not even an interpreter start
    assert took < 0.5, took


@pytest.mark.parametrize(
    "change",
    ["csrc/pump.c", "pyproject.toml", "csrc/build.py", "csrc/cffi/spawn.h", "remove-core"],
)
def test_a_change_to_the_build_inputs_runs_the_set_up_again(checkout: Path, change: str) -> None:
    setup_env(checkout)
    if change == "remove-core":
        (checkout / "orchestrator_spawn" / "_core.abi3.so").unlink()
    else:
        with open(checkout / change, "a") as handle:
            handle.write("\n")
    calls, _ = setup_env(checkout)
    assert any(call.startswith("-m pip install -q -e") for call in calls), calls
    assert setup_env(checkout)[0] == []
