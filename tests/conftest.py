"""Shared fixtures for the test suite."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from orchestrator_spawn import _platform
from orchestrator_spawn._platform import cgroup


@pytest.fixture(params=["fast", "sigchld"])
def exit_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test with the pidfd fast path on ("fast") and off ("sigchld")."""
    saved = _platform.pidfd_enabled()
    _platform.set_pidfd_enabled(request.param == "fast")
    try:
        yield str(request.param)
    finally:
        _platform.set_pidfd_enabled(saved)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Tests marked ``anyio`` run on asyncio, uvloop and trio."""
    return request.param


@pytest.fixture
def no_cgroups() -> Iterator[None]:
    """Cgroup containment switched off: jobs are process groups."""
    saved = cgroup.enabled()
    cgroup.set_enabled(False)
    try:
        yield
    finally:
        cgroup.set_enabled(saved)


@pytest.fixture
def nofile() -> Iterator[None]:
    """RLIMIT_NOFILE raised to 4096 (or the hard limit) for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
