"""The ``orchestrator_spawn._native`` package itself: the version handshake,
the one error helper ``check()``, and the boundary it draws (nothing above
it sees cffi)."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

import orchestrator_spawn
from orchestrator_spawn import _native
from orchestrator_spawn._native import check, lib

PACKAGE = Path(orchestrator_spawn.__file__).resolve().parent
NATIVE = PACKAGE / "_native"


def test_core_version_matches() -> None:
    assert lib.os_core_version() == _native.CORE_VERSION


def test_check_returns_a_result_and_raises_the_errno() -> None:
    assert check(0, "nothing") == 0
    assert check(7, "a count") == 7
    with pytest.raises(OSError, match=r"^\[Errno 22\] doing X failed: Invalid argument$") as info:
        check(-errno.EINVAL, "doing X")
    assert info.value.errno == errno.EINVAL
    assert type(info.value) is OSError
    # The errno's own subclass, as os functions raise it.
    with pytest.raises(ChildProcessError) as child:
        check(-errno.ECHILD, "wait4(1)")
    assert child.value.errno == errno.ECHILD
    text = os.strerror(errno.ECHILD)
    assert str(child.value) == f"[Errno {errno.ECHILD}] wait4(1) failed: {text}"
    with pytest.raises(FileNotFoundError):
        check(-errno.ENOENT, "cgroup.kill")


def test_check_is_what_the_slices_raise() -> None:
    # A real call through a slice: wait4 on a pid that is no child of ours.
    from orchestrator_spawn._native.spawn import reap

    with pytest.raises(ChildProcessError, match=r"wait4\(1\) failed: "):
        reap(1)


def _sources_above_native() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if NATIVE not in path.parents and path.name != "_core.py"
    ]


def test_nothing_above_native_sees_cffi() -> None:
    # cffi, the compiled module and the ffi/lib objects stay inside _native/:
    # no import of them and no attribute access to them elsewhere.
    sources = _sources_above_native()
    assert PACKAGE / "spawn.py" in sources
    assert PACKAGE / "sandbox" / "linux.py" in sources
    found = []
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "cffi" or alias.name.endswith("._core"):
                        found.append(f"{where}:{node.lineno} import {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if module.split(".")[0] == "cffi" or module.endswith("._core"):
                    found.append(f"{where}:{node.lineno} from {module}")
                names = {alias.name for alias in node.names}
                if module.startswith("orchestrator_spawn._native") and names & {"ffi", "lib"}:
                    found.append(f"{where}:{node.lineno} from {module} import ffi/lib")
                if module == "orchestrator_spawn" and "_core" in names:
                    found.append(f"{where}:{node.lineno} from orchestrator_spawn import _core")
            elif isinstance(node, ast.Attribute) and node.attr in ("ffi", "lib"):
                found.append(f"{where}:{node.lineno} .{node.attr}")
    assert found == []


def test_the_scan_would_see_a_leak(tmp_path: Path) -> None:
    # The scan above is not vacuous: the same walk flags a module that does.
    leak = "from orchestrator_spawn._native import ffi\nx = _native.lib.os_fd_park\n"
    tree = ast.parse(leak)
    flagged = [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & {"ffi", "lib"})
        or (isinstance(node, ast.Attribute) and node.attr in ("ffi", "lib"))
    ]
    assert len(flagged) == 2


def test_the_cdef_lists_only_what_python_calls() -> None:
    # csrc/cffi/*.h: every function and constant cffi exposes is used by a
    # module of _native/; internals and the child-only hooks are not exposed.
    used = "\n".join(path.read_text() for path in sorted(NATIVE.glob("*.py")))
    exposed = [name for name in dir(lib) if name.startswith(("os_", "OS_"))]
    assert "os_spawn_packed" in exposed
    unused = [name for name in exposed if f"lib.{name}" not in used]
    assert unused == []
    for internal in (
        "os_spawn",
        "os_split_strings",
        "os_sandbox_child_enter",
        "os_sandbox_child_enter_cloned",
        "os_sandbox_child_seal",
        "os_sandbox_clone_flags",
        "os_pattern_set_size",
        "os_pattern_set_anchor",
        "os_pump_capture_stats",
    ):
        assert not hasattr(lib, internal), internal
