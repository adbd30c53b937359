"""The pump slice, ``orchestrator_spawn._native.pump`` (``csrc/pump*.c``), called
directly: specs in, a capture handle out, counters and errors named from C."""

from __future__ import annotations

import errno
import os

import pytest

from orchestrator_spawn._native import pump as _native
from orchestrator_spawn.redact import compiled_patterns


def _finish(capture: _native.PumpCapture) -> None:
    assert capture.wait(30)
    assert capture.done()


def test_a_pipe_the_pump_makes_is_pumped_into_memory() -> None:
    capture, writers = _native.pump_capture_start(
        [_native.PumpStreamSpec(_native.PUMP_SOURCE_PIPE, _native.PUMP_SINK_MEMORY)]
    )
    (writer,) = writers
    assert writer >= 0
    os.write(writer, b"hello pump\n")
    os.close(writer)
    _finish(capture)
    assert capture.memory(0) == b"hello pump\n"
    (stats,) = capture.stats_all()
    assert (stats.bytes_read, stats.bytes_written, stats.error, stats.stage) == (11, 11, 0, "none")


def test_a_redaction_shares_the_compiled_set_and_keeps_it_alive() -> None:
    pattern_set = compiled_patterns((rb"token=\w+",), (), 0)
    redaction = _native.PumpRedaction(pattern_set, b"[X]", 4096)
    assert redaction.owner is pattern_set
    read_end, write_end = os.pipe()
    capture, writers = _native.pump_capture_start(
        [_native.PumpStreamSpec(read_end, _native.PUMP_SINK_MEMORY, redaction=redaction)]
    )
    assert writers == [-1]  # the caller's pipe: no writer made
    del redaction, pattern_set  # the capture keeps what its redactor uses
    os.write(write_end, b"a token=abc b\n")
    os.close(write_end)
    _finish(capture)
    assert capture.memory(0) == b"a [X] b\n"


def test_stage_and_part_names_come_from_the_core() -> None:
    assert _native.PUMP_STAGES == {
        0: "none",
        1: "read",
        2: "redact",
        3: "write",
        4: "close",
    }


def test_a_failed_start_is_an_oserror_naming_the_call() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # a closed source fd
    try:
        with pytest.raises(OSError, match=r"pump: starting a capture") as info:
            _native.pump_capture_start([_native.PumpStreamSpec(read_end)])
        assert info.value.errno == errno.EBADF
        assert "failed: " in str(info.value)
    finally:
        os.close(write_end)


def test_a_missing_sink_directory_is_reported_like_os_open(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "no-such-dir", "out.log")
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(FileNotFoundError) as info:
            _native.pump_capture_start(
                [_native.PumpStreamSpec(read_end, _native.PUMP_SINK_PATH, sink_path=path.encode())]
            )
        assert info.value.filename == path
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_number_of_streams_is_checked_before_the_core() -> None:
    with pytest.raises(ValueError, match="1 to 8 streams"):
        _native.pump_capture_start([])
