"""The sandbox probe's child reports its failure through the spawn core's
report helper (csrc/child.h): the failing step and a positive errno, named.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox probe")


def test_probe_failure_reports_step_and_positive_errno(tmp_path: Path) -> None:
    from orchestrator_spawn._native import sandbox as _native

    if _native.sandbox_probe(_native.SANDBOX_PROBE_USERNS, str(tmp_path)) != (0, ""):
        pytest.skip("user namespaces are not available here")
    # Everything up to the bind mount of the scratch directory works; that
    # mount fails in the child because the directory does not exist.
    missing = tmp_path / "missing"
    got = _native.sandbox_probe(_native.SANDBOX_PROBE_USERNS, str(missing))
    assert got == (errno.ENOENT, "bind-mount read-only")


def test_probe_restores_the_callers_signal_mask(tmp_path: Path) -> None:
    # The probe blocks every signal around its fork (as the spawn core does):
    # the caller's mask must come back exactly, whether the probe failed or not.
    import signal

    from orchestrator_spawn._native import sandbox as _native

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    _native.sandbox_probe(_native.SANDBOX_PROBE_USERNS, str(tmp_path / "missing"))
    _native.sandbox_probe(_native.SANDBOX_PROBE_SECCOMP, "/")
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
