"""``orchestrator_spawn._platform``: the exit notification behind one entry
point (``exit_notifier`` + ``pidfd_at_spawn``), with real children."""

from __future__ import annotations

import ast
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrator_spawn
from orchestrator_spawn import _platform, spawn

PACKAGE = Path(orchestrator_spawn.__file__).resolve().parent
BACKENDS = {"pidfd", "kqueue", "sigchld"}


@pytest.fixture
def pidfd_off() -> Iterator[None]:
    was = _platform.pidfd_enabled()
    _platform.set_pidfd_enabled(False)
    yield
    _platform.set_pidfd_enabled(was)


def test_callers_never_see_the_mechanism() -> None:
    # spawn.py and child.py go through _platform's entry points only: no
    # import of a backend module, no backend class, no lazy_pidfd.
    for name in ("spawn.py", "child.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.rsplit(".", 1)[-1] not in BACKENDS, (name, node.module)
            if isinstance(node, ast.Attribute):
                assert node.attr != "lazy_pidfd", name
            if isinstance(node, ast.Name):
                assert node.id not in ("PidfdExit", "KqueueExit", "SigchldExit"), name


def _backend(child: object) -> str:
    return type(child._notifier).__name__  # type: ignore[attr-defined]


def test_the_notifier_fits_the_platform_and_waits_for_the_exit() -> None:
    child = spawn(["sh", "-c", "exit 3"])
    assert child.wait_blocking(timeout=30) == 3
    if _platform.lazy_pidfd:
        assert _backend(child) == "PidfdExit"
    elif sys.platform == "darwin":
        assert _backend(child) == "KqueueExit"


def test_without_the_fast_path_the_fallback_serves_blocking_and_async_waits(
    pidfd_off: None,
) -> None:
    assert not _platform.pidfd_at_spawn(async_streams=True)
    child = spawn(["sh", "-c", "exit 4"])
    expected = "KqueueExit" if sys.platform == "darwin" else "SigchldExit"
    assert _backend(child) == expected
    notifier = child._notifier
    assert _platform.ExitNotifier in type(notifier).__mro__
    # The protocol's defaults: nothing opened lazily, no wait by pid.
    notifier.prepare()
    assert not notifier.can_wait_by_pid()
    assert child.wait_blocking(timeout=30) == 4

    async def main() -> int:
        other = spawn(["sh", "-c", "exit 5"])
        assert _backend(other) == expected
        return await other.wait()

    assert asyncio.run(main()) == 5


@pytest.mark.skipif(not _platform.lazy_pidfd, reason="needs pidfd_open (Linux >= 5.3)")
def test_a_pidfd_is_asked_of_clone_only_where_a_wait_will_need_it() -> None:
    assert not _platform.pidfd_at_spawn(async_streams=False)  # no loop running here
    assert _platform.pidfd_at_spawn(async_streams=True)

    async def in_loop() -> bool:
        return _platform.pidfd_at_spawn(async_streams=False)

    assert asyncio.run(in_loop())


@pytest.mark.skipif(sys.platform != "darwin", reason="the kqueue backend is macOS's")
def test_the_kqueue_notifier_on_its_own() -> None:
    import importlib

    # Through importlib: type checkers on Linux do not see the macOS-only class.
    kqueue = importlib.import_module("orchestrator_spawn._platform.kqueue")
    notifier_type = kqueue.KqueueExit

    child = spawn(["sh", "-c", "sleep 0.2"])
    notifier = notifier_type(child.pid)
    try:
        assert not notifier.can_wait_by_pid()
        notifier.prepare()  # nothing left for later
        assert notifier.wait(30)
    finally:
        notifier.close()
    assert child.wait_blocking(timeout=30) == 0
