"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator_spawn import _platform


@pytest.fixture(params=["fast", "sigchld"])
def exit_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test with the pidfd fast path on ("fast") and off ("sigchld")."""
    saved = _platform.pidfd_enabled()
    _platform.set_pidfd_enabled(request.param == "fast")
    try:
        yield str(request.param)
    finally:
        _platform.set_pidfd_enabled(saved)
