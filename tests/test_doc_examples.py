"""The README and docs examples type-check under ``mypy --strict`` without
casts (issue 14 item 1): every ```python block is a module of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "migration.md", ROOT / "docs" / "api.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def example_blocks() -> list[tuple[str, str]]:
    if not all(doc.exists() for doc in DOCS):
        pytest.skip("the docs are not here (a wheel test runs from a copy of tests/)")
    found = []
    for doc in DOCS:
        for number, match in enumerate(BLOCK.finditer(doc.read_text()), 1):
            found.append((f"{doc.stem}_{number}", match.group(1)))
    return found


def test_there_are_examples() -> None:
    names = [name for name, _ in example_blocks()]
    assert any(name.startswith("README") for name in names)
    assert any(name.startswith("migration") for name in names)


@pytest.mark.slow
def test_examples_pass_mypy_strict(tmp_path: Path) -> None:
    if shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists():
        pytest.skip("mypy is not installed (it is in the test extra)")
    files = []
    for name, code in example_blocks():
        path = tmp_path / f"example_{name}.py"
        path.write_text(code)
        files.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
