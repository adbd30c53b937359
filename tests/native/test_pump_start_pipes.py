"""``_native.pump.pump_capture_start_pipes``: the two-pipe start of the
runner, ``run`` and the CLI (no per-stream spec objects), with the redactors
made on the reactor thread from a copy of the replacement."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from orchestrator_spawn._native import pump as _native
from orchestrator_spawn.redact import compiled_patterns


def test_both_pipes_are_redacted_after_the_caller_dropped_its_redaction() -> None:
    pattern_set = compiled_patterns((rb"token=\w+",), (), 0)
    redaction = _native.PumpRedaction(pattern_set, b"<gone>", 4096)
    capture, out_w, err_w = _native.pump_capture_start_pipes(
        (_native.PUMP_SINK_MEMORY, _native.PUMP_SINK_MEMORY), (None, None), redaction
    )
    # The C replacement buffer goes with the PumpRedaction: the pump keeps
    # its own copy until the reactor has made the redactors.
    del redaction, pattern_set
    gc.collect()
    os.write(out_w, b"out token=abc end\n")
    os.write(err_w, b"err token=def end\n")
    os.close(out_w)
    os.close(err_w)
    assert capture.wait(30)
    assert capture.memory(0) == b"out <gone> end\n"
    assert capture.memory(1) == b"err <gone> end\n"
    assert [s.error for s in capture.stats_all()] == [0, 0]


def test_the_same_path_twice_shares_one_file(tmp_path: Path) -> None:
    path = os.fsencode(tmp_path / "both.log")
    capture, out_w, err_w = _native.pump_capture_start_pipes(
        (_native.PUMP_SINK_PATH, _native.PUMP_SINK_PATH), (path, path), None
    )
    os.write(out_w, b"a" * 10)
    os.close(out_w)
    os.write(err_w, b"b" * 10)
    os.close(err_w)
    assert capture.wait(30)
    assert sorted((tmp_path / "both.log").read_bytes()) == sorted(b"a" * 10 + b"b" * 10)


def test_a_sink_that_cannot_be_opened_is_named_and_leaves_no_fd(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    missing = os.fsencode(tmp_path / "no" / "such" / "dir")
    with pytest.raises(FileNotFoundError) as raised:
        _native.pump_capture_start_pipes(
            (_native.PUMP_SINK_DISCARD, _native.PUMP_SINK_PATH), (None, missing), None
        )
    assert raised.value.filename == os.fsdecode(missing)
    if before is not None:
        assert set(os.listdir("/proc/self/fd")) <= before
