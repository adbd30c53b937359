"""The child's environment is encoded once and reused until os.environ changes.

Every test here runs real children: a change to ``os.environ`` between two
spawns must reach the second one, whichever way it was made, for
``spawn(env=None)`` and for the runner under both policies; and the cached
fast path must give the child exactly what :func:`build_child_env` says, in
the same order.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from orchestrator_spawn import (
    PIPE,
    RunnerConfig,
    RunnerPolicy,
    spawn,
    spawn_with_runner,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.runner import build_child_env

spawn_module = importlib.import_module("orchestrator_spawn.spawn")
runner_module = importlib.import_module("orchestrator_spawn.runner")

PY = sys.executable
VAR = "ORCH_SPAWN_ENV_CACHE_TEST"
OTHER = "ORCH_SPAWN_ENV_CACHE_OTHER"
# The child prints its whole environment, NUL-separated, in envp order.
DUMP_ENV = (
    "import os, sys; sys.stdout.buffer.write(b''.join("
    "k + b'=' + v + b'\\0' for k, v in os.environb.items()))"
)


@pytest.fixture(autouse=True)
def clean_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    # monkeypatch restores whatever the tests do to these names.
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.delenv(OTHER, raising=False)


def child_env_of_spawn() -> dict[bytes, bytes]:
    child = spawn([PY, "-c", DUMP_ENV], stdout=PIPE)
    assert child.stdout is not None
    data = child.stdout.read()
    child.stdout.close()
    assert child.wait_blocking(timeout=30) == 0
    return _parse(data)


def _parse(data: bytes) -> dict[bytes, bytes]:
    entries = data.split(b"\0")[:-1]
    return dict(entry.partition(b"=")[::2] for entry in entries)


def runner_value(runner: RunnerConfig, tmp_path: Path, capture: bool = False) -> str:
    """What the runner child sees as $VAR ("missing" if unset)."""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    command = f'printf %s "${{{VAR}:-missing}}"'
    if capture:
        captured = spawn_with_runner_and_capture(
            runner, command, tmp_path, out, err, redaction_patterns=[]
        )
        assert captured.child.wait_blocking(timeout=30) == 0
        captured.output_capture.wait_blocking(timeout=30)
    else:
        child = spawn_with_runner(runner, command, tmp_path, out, err)
        assert child.wait_blocking(timeout=30) == 0
    return out.read_text()


def runner_env(
    runner: RunnerConfig, tmp_path: Path, extra_env: Mapping[str, str] | None = None
) -> list[bytes]:
    """The runner child's whole environment, entries in envp order."""
    out, err = tmp_path / "env.out", tmp_path / "env.err"
    runner = runner.model_copy(update={"shell": PY, "shell_arg": "-c", "allowed_shells": [PY]})
    child = spawn_with_runner(runner, DUMP_ENV, tmp_path, out, err, extra_env=extra_env)
    assert child.wait_blocking(timeout=30) == 0, err.read_text()
    entries = out.read_bytes().split(b"\0")[:-1]
    # The interpreter may add variables of its own (LC_CTYPE coercion).
    return [entry for entry in entries if not entry.startswith(b"LC_CTYPE=")]


def expected_env(runner: RunnerConfig, extra_env: Mapping[str, str] | None = None) -> list[bytes]:
    env = build_child_env(runner, extra_env or {})
    return [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items() if k != "LC_CTYPE"]


# The ways of changing os.environ between two spawns, and what the second
# spawn must see as VAR afterwards (None: unset).
CHANGES: dict[str, tuple[Callable[[], object], str | None]] = {
    "setitem": (lambda: os.environ.__setitem__(VAR, "second"), "second"),
    "update": (lambda: os.environ.update({VAR: "updated", OTHER: "x"}), "updated"),
    "setdefault-new": (lambda: (os.environ.pop(VAR), os.environ.setdefault(VAR, "d")), "d"),
    "delitem": (lambda: os.environ.__delitem__(VAR), None),
    "pop": (lambda: os.environ.pop(VAR), None),
    "same-value-again": (lambda: os.environ.__setitem__(VAR, "first"), "first"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_spawn_inheriting_sees_each_change(change: str) -> None:
    os.environ[VAR] = "first"
    assert child_env_of_spawn().get(VAR.encode()) == b"first"
    mutate, expected = CHANGES[change]
    mutate()
    got = child_env_of_spawn().get(VAR.encode())
    assert got == (None if expected is None else expected.encode())


@pytest.mark.parametrize("policy", [RunnerPolicy.ALLOWLIST, RunnerPolicy.UNSAFE])
@pytest.mark.parametrize("change", list(CHANGES))
def test_runner_sees_each_change(policy: RunnerPolicy, change: str, tmp_path: Path) -> None:
    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c", policy=policy, env_allowlist=[VAR])
    os.environ[VAR] = "first"
    assert runner_value(runner, tmp_path) == "first"
    assert runner_value(runner, tmp_path, capture=True) == "first"
    mutate, expected = CHANGES[change]
    mutate()
    assert runner_value(runner, tmp_path) == (expected or "missing")
    assert runner_value(runner, tmp_path, capture=True) == (expected or "missing")


def test_runner_sees_a_variable_set_after_the_first_spawn(tmp_path: Path) -> None:
    for policy in (RunnerPolicy.ALLOWLIST, RunnerPolicy.UNSAFE):
        runner = RunnerConfig(
            shell="/bin/sh", shell_arg="-c", policy=policy, env_allowlist=["PATH", VAR]
        )
        os.environ.pop(VAR, None)
        assert runner_value(runner, tmp_path) == "missing"
        os.environ[VAR] = f"new-{policy.value}"
        assert runner_value(runner, tmp_path) == f"new-{policy.value}"


def test_a_variable_moved_to_the_end_moves_in_the_child_too(tmp_path: Path) -> None:
    # Same variables and values, another order: still a change.
    os.environ[VAR] = "a"
    os.environ[OTHER] = "b"
    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE)
    assert runner_env(runner, tmp_path) == expected_env(runner)
    del os.environ[VAR]
    os.environ[VAR] = "a"
    env = runner_env(runner, tmp_path)
    assert env == expected_env(runner)
    assert env.index(f"{VAR}=a".encode()) > env.index(f"{OTHER}=b".encode())


@pytest.mark.parametrize(
    ("runner", "extra_env"),
    [
        (RunnerConfig(), None),
        (RunnerConfig(), {"EXTRA_A": "1", "PATH": "/override", "CLAUDECODE": "dropped"}),
        (RunnerConfig(env_allowlist=[OTHER, "HOME", OTHER, "NOT_SET_ANYWHERE", VAR]), None),
        (RunnerConfig(policy=RunnerPolicy.UNSAFE), None),
        (RunnerConfig(policy=RunnerPolicy.UNSAFE), {VAR: "override", "NEW_ONE": "n", "ZZ": ""}),
        (
            RunnerConfig(policy=RunnerPolicy.UNSAFE, env_remove=[VAR, "HOME"]),
            {"HOME": "/h", "B": "2"},
        ),
        (RunnerConfig(policy=RunnerPolicy.UNSAFE, env_remove=[]), {"ORCHESTRATOR_DAEMON_PID": "1"}),
    ],
)
def test_child_env_is_what_build_child_env_says_in_order(
    runner: RunnerConfig, extra_env: dict[str, str] | None, tmp_path: Path
) -> None:
    os.environ[VAR] = "v"
    os.environ[OTHER] = "o"
    os.environ["CLAUDECODE"] = "nested"
    try:
        for _ in range(2):  # the second time from the cache
            assert runner_env(runner, tmp_path, extra_env) == expected_env(runner, extra_env)
    finally:
        del os.environ["CLAUDECODE"]


def test_encoding_is_reused_until_os_environ_changes() -> None:
    first = spawn_module.environ_entries()
    assert first is not None
    assert spawn_module.environ_entries() is first
    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE)
    packed = runner_module._child_env(runner, {})
    assert runner_module._child_env(runner, {}) is packed
    os.environ[VAR] = "changed"
    second = spawn_module.environ_entries()
    assert second is not first
    assert second is not None
    assert second[VAR.encode()] == VAR.encode() + b"=changed"
    repacked = runner_module._child_env(runner, {})
    assert repacked is not packed
    assert repacked[VAR] == "changed"
    assert dict(repacked) == build_child_env(runner, {})


def test_a_replaced_os_environ_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some code swaps os.environ for another mapping; the runner reads that
    # mapping, as it always did.
    fake = dict(os.environ, **{VAR: "from-the-replacement"})
    monkeypatch.setattr(os, "environ", fake)
    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c", env_allowlist=[VAR])
    assert runner_value(runner, tmp_path) == "from-the-replacement"


@pytest.mark.parametrize(
    ("extra_env", "message"),
    [
        ({"BAD=NAME": "x"}, "illegal environment variable name 'BAD=NAME'"),
        ({"NUL_VALUE": "a\0b"}, "environment variable 'NUL_VALUE' contains a NUL byte"),
    ],
)
def test_bad_extra_env_is_refused_before_any_fork(
    extra_env: dict[str, str], message: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.log"
    with pytest.raises(ValueError, match=message):
        spawn_with_runner(
            RunnerConfig(shell="/bin/sh", shell_arg="-c"),
            f"echo ran > {tmp_path / 'ran'}",
            tmp_path,
            out,
            out,
            extra_env=extra_env,
        )
    assert not (tmp_path / "ran").exists()


def test_a_removed_extra_env_name_is_never_encoded(tmp_path: Path) -> None:
    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c", env_remove=["DROP_ME"])
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    child = spawn_with_runner(
        runner,
        'printf %s "${DROP_ME:-missing}"',
        tmp_path,
        out,
        err,
        extra_env={"DROP_ME": "a\0b"},
    )
    assert child.wait_blocking(timeout=30) == 0
    assert out.read_text() == "missing"


def test_default_host_profile_follows_a_relative_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = runner_module._host_profile(".")
    monkeypatch.chdir(tmp_path / "b")
    second = runner_module._host_profile(".")
    assert first.workspace_root == tmp_path / "a"
    assert second.workspace_root == tmp_path / "b"
    assert runner_module._host_profile(str(tmp_path)) is runner_module._host_profile(str(tmp_path))


def test_a_redaction_config_is_checked_once_and_a_bad_one_every_time(tmp_path: Path) -> None:
    from orchestrator_spawn.pump import Redaction

    good = Redaction(patterns=("tok_[a-z]+",), max_hold=64)
    runner_module._checked_redaction.cache_clear()
    assert runner_module.redaction_config(good) is good
    assert runner_module.redaction_config(Redaction(patterns=("tok_[a-z]+",), max_hold=64))
    assert runner_module._checked_redaction.cache_info().hits == 1
    # Equal to the checked key but of other types: checked again, and refused.
    with pytest.raises(TypeError):
        runner_module.redaction_config(Redaction(patterns=("tok_[a-z]+",), max_hold=64.0))  # type: ignore[arg-type]
    for _ in range(2):  # a failure is not remembered as a pass
        with pytest.raises(ValueError, match=r"tok_\(\["):
            runner_module.redaction_config(["tok_(["])
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    captured = spawn_with_runner_and_capture(
        RunnerConfig(shell="/bin/sh", shell_arg="-c"),
        "echo tok_secret",
        tmp_path,
        out,
        err,
        redaction_patterns=good,
    )
    assert captured.child.wait_blocking(timeout=30) == 0
    captured.output_capture.wait_blocking(timeout=30)
    assert out.read_text() == "[REDACTED]\n"


def test_lists_of_the_runner_changed_in_place_are_seen(tmp_path: Path) -> None:
    """The allowlisted environment is remembered with the runner's lists:
    changing them in place (no pydantic validation runs) must show too."""
    os.environ[VAR] = "listed"
    os.environ[OTHER] = "other"
    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c", env_allowlist=["PATH"])
    assert runner_value(runner, tmp_path, capture=True) == "missing"
    runner.env_allowlist.append(VAR)
    assert runner_value(runner, tmp_path, capture=True) == "listed"
    runner.env_remove.append(VAR)
    assert runner_value(runner, tmp_path, capture=True) == "missing"
    runner.env_remove.remove(VAR)
    assert runner_value(runner, tmp_path, capture=True) == "listed"
    runner.env_allowlist[-1] = OTHER  # same length, another name
    assert runner_env(runner, tmp_path) == expected_env(runner)
    assert f"{OTHER}=other".encode() in runner_env(runner, tmp_path)
    runner.policy = RunnerPolicy.UNSAFE
    assert runner_value(runner, tmp_path, capture=True) == "listed"


def test_an_allowlisted_environment_is_reused_while_its_variables_stay(tmp_path: Path) -> None:
    os.environ[VAR] = "kept"
    runner = RunnerConfig(env_allowlist=["PATH", VAR])
    packed = runner_module._child_env(runner, {})
    # A variable outside the allowlist changes: the same environment serves.
    os.environ[OTHER] = "unrelated"
    assert runner_module._child_env(runner, {}) is packed
    # An allowlisted one changes, even to the same value: built again.
    os.environ[VAR] = "kept"
    again = runner_module._child_env(runner, {})
    assert again is not packed
    assert dict(again) == build_child_env(runner, {})
    os.environ[VAR] = "changed"
    assert runner_module._child_env(runner, {})[VAR] == "changed"
