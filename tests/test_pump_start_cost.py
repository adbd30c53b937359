"""What starting a redacted capture costs the caller's thread, with real pipes.

A redactor's 1 MiB JIT stack is made by its first match, in the pump's
reactor thread: a capture whose child writes nothing (most of an
orchestrator's jobs) never maps it, and one that writes still redacts.
"""

from __future__ import annotations

import os
import sys

import pytest

from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
from orchestrator_spawn.pump import MEMORY, PIPE, Capture, Redaction, start_capture

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def vm_size_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize in /proc/self/status")


@linux_only
def test_quiet_redacted_captures_map_no_jit_stack() -> None:
    redaction = Redaction(patterns=tuple(DEFAULT_REDACTION_PATTERNS))
    warm = start_capture(PIPE, PIPE, stdout_sink=MEMORY, stderr_sink=MEMORY, redact=redaction)
    warm.close_writers()
    warm.wait_blocking(timeout=30)
    before = vm_size_kib()
    captures: list[Capture] = []
    try:
        for _ in range(40):
            captures.append(
                start_capture(PIPE, PIPE, stdout_sink=MEMORY, stderr_sink=MEMORY, redact=redaction)
            )
        grown_mib = (vm_size_kib() - before) / 1024
    finally:
        for capture in captures:
            capture.close_writers()
            capture.wait_blocking(timeout=30)
    # 80 redactors with a 1 MiB JIT stack each would add 80 MiB.
    assert grown_mib < 20, f"40 idle redacted captures mapped {grown_mib:.0f} MiB"
    assert [c.output("stdout") + c.output("stderr") for c in captures] == [b""] * 40


def test_the_first_match_still_redacts_on_every_stream() -> None:
    redaction = Redaction(patterns=("secret=[a-z]+",), replacement=b"<R>")
    capture = start_capture(PIPE, PIPE, stdout_sink=MEMORY, stderr_sink=MEMORY, redact=redaction)
    try:
        os.write(capture.writer("stdout"), b"a secret=abc b\n")
        os.write(capture.writer("stderr"), b"SECRET=xyz\n")
    finally:
        capture.close_writers()
    capture.wait_blocking(timeout=30)
    assert capture.output("stdout") == b"a <R> b\n"
    assert capture.output("stderr") == b"<R>\n"
