"""One validation path for every redaction entry point, and one default.

``Redactor``, ``redact``, ``pump.Redaction``, ``start_capture``, the runner
and ``run`` take the same settings and refuse the same mistakes: a single
``str``/``bytes`` where a sequence belongs (it would be iterated per
character, or as ints), or a ``max_hold`` that is not an int.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import (
    Redactor,
    RunnerConfig,
    RunnerPolicy,
    redact,
    run,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.pump import MEMORY, PIPE, Redaction, start_capture
from orchestrator_spawn.runner import redaction_config
from orchestrator_spawn.spawn import spawn

TOKEN = "gh" + "p_" + ("aB3xY7kQ9m" * 4)[:36]


def _via_redactor(**kw: Any) -> None:
    Redactor(**kw)


def _via_redact(**kw: Any) -> None:
    redact(b"data", **kw)


def _via_redaction(**kw: Any) -> None:
    Redaction(**kw)


def _via_runner(**kw: Any) -> None:
    redaction_config(Redaction(**kw))


ENTRY_POINTS: list[Callable[..., None]] = [_via_redactor, _via_redact, _via_redaction, _via_runner]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"literals": b"hunter2"},
        {"literals": "hunter2"},
        {"patterns": b"token=\\S+"},
        {"patterns": "token=\\S+"},
        {"literals": bytearray(b"hunter2")},
        {"literals": [3]},
        {"patterns": ["ok"], "max_hold": 1.5},
        {"patterns": ["ok"], "max_hold": True},
        {"patterns": ["ok"], "max_hold": "65536"},
        {"patterns": ["ok"], "replacement": "text"},
        {"patterns": ["ok"], "ignore_case": "yes"},
    ],
    ids=repr,
)
def test_type_confusion_is_a_type_error_everywhere(
    entry: Callable[..., None], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        entry(**kwargs)


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_negative_max_hold_is_a_value_error_everywhere(entry: Callable[..., None]) -> None:
    with pytest.raises(ValueError, match="max_hold"):
        entry(patterns=["ok"], max_hold=-1)


def test_redaction_keeps_integral_settings_exactly() -> None:
    # Before: Redaction(max_hold=1.5) became 1 silently; now an int stays as
    # given and sequences become tuples.
    config = Redaction(patterns=["a+"], literals=[b"hunter2"], max_hold=10)
    assert config.patterns == ("a+",)
    assert config.literals == (b"hunter2",)
    assert config.max_hold == 10


def test_start_capture_refuses_one_string_as_patterns() -> None:
    read_end, write_end = os.pipe()
    try:
        for bad in ("hunter2", b"hunter2", bytearray(b"hunter2")):
            with pytest.raises(TypeError):
                start_capture(read_end, redact=bad)  # type: ignore[arg-type]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_run_refuses_one_string_as_patterns() -> None:
    with pytest.raises(TypeError):
        asyncio.run(run(["true"], redact=b"hunter2"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asyncio.run(run(["true"], redact=Redaction(literals="hunter2")))


def test_runner_refuses_one_string_as_patterns(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        spawn_with_runner_and_capture(
            RunnerConfig(policy=RunnerPolicy.UNSAFE),
            "echo never",
            tmp_path,
            tmp_path / "o",
            tmp_path / "e",
            "hunter2",
        )
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_literals_given_as_a_list_do_redact_in_the_pump() -> None:
    # The shape that used to redact nothing, given the right way.
    capture = start_capture(PIPE, stdout_sink=MEMORY, redact=Redaction(literals=[b"hunter2"]))
    try:
        child = spawn(["printf", "pw hunter2\n"], stdout=capture.writer("stdout"))
    finally:
        capture.close_writers()
    child.wait_blocking()
    capture.wait_blocking(30)
    assert capture.output("stdout") == b"pw [REDACTED]\n"


# ---- one default: the built-in pack -------------------------------------------


def _captured(**kw: Any) -> bytes:
    capture = start_capture(PIPE, stdout_sink=MEMORY, **kw)
    try:
        child = spawn(["printf", f"t {TOKEN}\n"], stdout=capture.writer("stdout"))
    finally:
        capture.close_writers()
    child.wait_blocking()
    capture.wait_blocking(30)
    return capture.output("stdout")


def test_start_capture_redacts_with_the_builtin_pack_by_default() -> None:
    assert _captured() == b"t [REDACTED]\n"


def test_start_capture_redact_none_switches_it_off() -> None:
    assert _captured(redact=None) == f"t {TOKEN}\n".encode()
