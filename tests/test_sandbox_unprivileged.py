"""The sandbox suite again, as an unprivileged user: the sandbox must be rootless.

When the tests run as root, this copies the built package and the sandbox
tests to a directory ``nobody`` can read and runs them under
``setpriv --reuid=nobody --regid=nogroup --clear-groups``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator_spawn

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(orchestrator_spawn.__file__).resolve().parent
SUITE = (
    "test_sandbox_linux.py",
    "test_sandbox_proxy.py",
    "test_sandbox_runner.py",
    "test_sandbox_api.py",
    "test_sandbox_hardening.py",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.linux_only,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox backend"),
]


def _nobody_available() -> str | None:
    if os.geteuid() != 0:
        return "already unprivileged: the sandbox suite itself ran without root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "no user 'nobody'"
    return None


@pytest.fixture
def readable_copy() -> Iterator[Path]:
    # Not under tmp_path: pytest makes that 0700 for root.
    top = Path(tempfile.mkdtemp(prefix="osp-nobody-"))
    try:
        # The package the tests import: the source tree's, or an installed
        # wheel's (with the libraries auditwheel put next to it).
        for source in (PACKAGE, PACKAGE.with_name("orchestrator_spawn.libs")):
            if source.is_dir():
                shutil.copytree(
                    source, top / source.name, ignore=shutil.ignore_patterns("__pycache__")
                )
        shutil.copytree(
            ROOT / "tests" / "helpers",
            top / "tests" / "helpers",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for name in SUITE:
            shutil.copy(ROOT / "tests" / name, top / "tests" / name)
        shutil.copy(ROOT / "pyproject.toml", top / "pyproject.toml")
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_sandbox_suite_passes_as_nobody(readable_copy: Path) -> None:
    reason = _nobody_available()
    if reason is not None:
        pytest.skip(reason)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(readable_copy),
        "LANG": "C.UTF-8",
    }
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
        cwd=readable_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]
