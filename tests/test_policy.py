"""enforce_runner_policy and guard_daemon_pid_kill: the Rust runner's cases and more."""

from __future__ import annotations

import pickle

import pytest

from orchestrator_spawn import (
    DaemonPidGuardBlocked,
    PolicyError,
    RunnerConfig,
    RunnerPolicy,
    enforce_runner_policy,
    guard_daemon_pid_kill,
)
from orchestrator_spawn.policy import MAX_COMMAND_BYTES


def unsafe_runner() -> RunnerConfig:
    """The Rust runner's test fixture: unsafe policy, one allowed shell and argument."""
    return RunnerConfig(
        shell="/bin/bash",
        shell_arg="-lc",
        policy=RunnerPolicy.UNSAFE,
        allowed_shells=["/bin/bash"],
        allowed_shell_args=["-lc"],
        env_allowlist=["PATH"],
        redaction_patterns=["password"],
    )


# --- enforce_runner_policy ---------------------------------------------------


def test_allows_valid_command() -> None:
    enforce_runner_policy(unsafe_runner(), "echo hello")
    enforce_runner_policy(RunnerConfig(), "echo hello")


@pytest.mark.parametrize("command", ["", "   ", "\n\t "])
def test_rejects_empty_or_blank_command(command: str) -> None:
    with pytest.raises(PolicyError, match="cannot be empty"):
        enforce_runner_policy(unsafe_runner(), command)


def test_allows_newline_in_command() -> None:
    enforce_runner_policy(unsafe_runner(), "echo hello\nwhoami")


@pytest.mark.parametrize("command", ["echo hello\rwhoami", "echo a\x00b"])
def test_rejects_cr_and_nul(command: str) -> None:
    with pytest.raises(PolicyError, match="control characters"):
        enforce_runner_policy(unsafe_runner(), command)


def test_length_limit_is_in_bytes_and_inclusive() -> None:
    enforce_runner_policy(unsafe_runner(), "x" * MAX_COMMAND_BYTES)
    with pytest.raises(PolicyError, match="too long"):
        enforce_runner_policy(unsafe_runner(), "x" * (MAX_COMMAND_BYTES + 1))
    # 'é' is two bytes in UTF-8: fewer characters than the limit, more bytes.
    with pytest.raises(PolicyError, match="too long"):
        enforce_runner_policy(unsafe_runner(), "é" * (MAX_COMMAND_BYTES // 2 + 1))
    assert MAX_COMMAND_BYTES == 131072


def test_allowlist_rejects_disallowed_shell() -> None:
    runner = unsafe_runner()
    runner.policy = "allowlist"  # type: ignore[assignment]
    runner.shell = "/bin/sh"
    with pytest.raises(
        PolicyError, match=r"runner\.shell '/bin/sh' is not in runner\.allowed_shells"
    ):
        enforce_runner_policy(runner, "echo hello")


def test_allowlist_rejects_disallowed_shell_arg() -> None:
    runner = unsafe_runner()
    runner.policy = "allowlist"  # type: ignore[assignment]
    runner.shell_arg = "-c"
    with pytest.raises(PolicyError, match=r"runner\.shell_arg '-c' is not in"):
        enforce_runner_policy(runner, "echo hello")


def test_unsafe_policy_allows_any_shell() -> None:
    runner = unsafe_runner()
    runner.shell = "/usr/bin/fish"
    runner.shell_arg = "-x"
    enforce_runner_policy(runner, "echo hello")


def test_default_allowlist_accepts_every_listed_combination() -> None:
    runner = RunnerConfig()
    for shell in runner.allowed_shells:
        for arg in runner.allowed_shell_args:
            enforce_runner_policy(
                runner.model_copy(update={"shell": shell, "shell_arg": arg}), "true"
            )


def test_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        enforce_runner_policy(unsafe_runner(), "")


# --- guard_daemon_pid_kill ---------------------------------------------------

PID = 12345


@pytest.mark.parametrize(
    ("command", "pattern"),
    [
        ("kill $(cat data/daemon.pid)", "kill + daemon.pid"),
        ("echo start && kill $(cat data/daemon.pid) && echo done", "kill + daemon.pid"),
        ("kill -9 12345", "kill 12345"),
        ("kill -TERM 12345", "kill 12345"),
        ("sleep 1; kill 12345", "kill 12345"),
        ("kill $ORCHESTRATOR_DAEMON_PID", "kill + $ORCHESTRATOR_DAEMON_PID"),
        ("kill ${ORCHESTRATOR_DAEMON_PID}", "kill + $ORCHESTRATOR_DAEMON_PID"),
        ("pkill orchestratord", "pkill orchestratord"),
        ("pkill -9 -f orchestratord", "pkill orchestratord"),
        ("killall orchestratord", "killall orchestratord"),
        ("orchestrator daemon stop", "orchestrator daemon stop"),
        ("./target/release/orchestrator daemon stop", "orchestrator daemon stop"),
        ("orchestrator daemon stop 2>&1", "orchestrator daemon stop"),
        ("echo start && orchestrator daemon stop && echo done", "orchestrator daemon stop"),
    ],
)
def test_guard_blocks(command: str, pattern: str) -> None:
    with pytest.raises(DaemonPidGuardBlocked) as info:
        guard_daemon_pid_kill(command, PID)
    assert info.value.matched_pattern == pattern
    assert str(PID) in info.value.reason
    assert pattern in str(info.value)


@pytest.mark.parametrize(
    ("command", "pid"),
    [
        ("kill -9 99999", PID),
        ("kill 54321", PID),
        ("echo hello world", PID),
        ("echo 'kill the process'", PID),
        ("kill 12345", 123),  # 123 is not a whole number inside 12345
        ("kill 123456", PID),
        ("orchestrator daemon status", PID),
        ("orchestrator task stop abc123", PID),
        ("skill 12345", PID),  # not the word "kill"
        ("echo 12345", PID),
        ("pkill -f other-daemon", PID),
    ],
)
def test_guard_allows(command: str, pid: int) -> None:
    guard_daemon_pid_kill(command, pid)


def test_guard_first_pattern_in_seed_order_wins() -> None:
    # Matches both "daemon stop" and the literal PID: the Rust runner reports the former.
    with pytest.raises(DaemonPidGuardBlocked) as info:
        guard_daemon_pid_kill("kill 12345; orchestrator daemon stop", PID)
    assert info.value.matched_pattern == "orchestrator daemon stop"


def test_guard_rejects_nonpositive_pid() -> None:
    with pytest.raises(ValueError, match="positive"):
        guard_daemon_pid_kill("true", 0)


def test_guard_error_pickles_and_is_permission_error() -> None:
    with pytest.raises(DaemonPidGuardBlocked) as info:
        guard_daemon_pid_kill("pkill orchestratord", PID)
    assert isinstance(info.value, PermissionError)
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.reason, clone.matched_pattern) == (info.value.reason, info.value.matched_pattern)
