"""Runner policy checks: pure functions over strings, no I/O.

Both checks follow the Rust runner (``orchestrator-runner``) rule for rule, so that a
command refused there is refused here and vice versa:

* :func:`enforce_runner_policy` refuses empty (or all-blank) commands, NUL and
  CR characters (newlines are fine: ``bash -c`` runs multi-line scripts),
  commands longer than :data:`MAX_COMMAND_BYTES` bytes, and, under the
  ``allowlist`` policy, a shell or shell argument outside the allow lists.
* :func:`guard_daemon_pid_kill` is the self-referential guard: when the
  orchestrator runs tasks against its own source tree it must not let a task
  kill the daemon that runs it. It is a best-effort textual screen of the
  command string, not a sandbox (a program started by the command can still
  signal the daemon).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from orchestrator_spawn.errors import DaemonPidGuardBlocked, PolicyError

if TYPE_CHECKING:
    from orchestrator_spawn.config import RunnerConfig, RunnerPolicy

__all__ = ["MAX_COMMAND_BYTES", "enforce_runner_policy", "guard_daemon_pid_kill"]

MAX_COMMAND_BYTES = 131_072
"""The longest command accepted, in bytes of its UTF-8 encoding."""

# Shell separators that start a new simple command; the Rust runner splits on these
# before looking for ``orchestrator daemon stop``.
_SEGMENT_SPLIT = re.compile(r"[;&|]")
_DIGITS = frozenset("0123456789")


def enforce_runner_policy(runner: RunnerConfig, command: str) -> None:
    """Check ``command`` and ``runner`` against the runner policy.

    Raises :class:`PolicyError` when the command is empty or blank, contains
    NUL or CR, is longer than 131072 bytes (UTF-8), or, with
    ``runner.policy == "allowlist"``, when ``runner.shell`` is not in
    ``runner.allowed_shells`` or ``runner.shell_arg`` is not in
    ``runner.allowed_shell_args``. Returns None when everything is allowed.
    """
    if not command.strip():
        raise PolicyError("runner command cannot be empty")
    if "\x00" in command or "\r" in command:
        raise PolicyError("runner command contains blocked control characters (NUL/CR)")
    # Cheap bound first: UTF-8 never uses fewer bytes than characters.
    if len(command) > MAX_COMMAND_BYTES or len(command.encode("utf-8", "surrogatepass")) > (
        MAX_COMMAND_BYTES
    ):
        raise PolicyError(f"runner command too long (>{MAX_COMMAND_BYTES} bytes)")
    if _is_allowlist(runner.policy):
        if runner.shell not in runner.allowed_shells:
            raise PolicyError(f"runner.shell {runner.shell!r} is not in runner.allowed_shells")
        if runner.shell_arg not in runner.allowed_shell_args:
            raise PolicyError(
                f"runner.shell_arg {runner.shell_arg!r} is not in runner.allowed_shell_args"
            )


def _is_allowlist(policy: object) -> bool:
    """``RunnerPolicy(policy) is RunnerPolicy.ALLOWLIST`` (raising for a
    value that is no policy), without the enum call or the import for a
    member, the usual case: this runs for every runner job."""
    global _policy_type
    if _policy_type is None:
        # Imported late: the configuration's module imports pydantic.
        from orchestrator_spawn.config import RunnerPolicy

        _policy_type = RunnerPolicy
    if policy is _policy_type.ALLOWLIST:
        return True
    if policy is _policy_type.UNSAFE:
        return False
    return _policy_type(policy) is _policy_type.ALLOWLIST


_policy_type: type[RunnerPolicy] | None = None


def guard_daemon_pid_kill(command: str, daemon_pid: int) -> None:
    """Refuse commands that would terminate the orchestrator daemon.

    The Rust runner's six patterns, checked in its order (the first match
    decides ``matched_pattern``):

    1. ``orchestrator daemon stop`` in any simple command (any path prefix
       ending in ``orchestrator``) -- ``"orchestrator daemon stop"``;
    2. ``kill`` anywhere together with ``daemon.pid`` (e.g.
       ``kill $(cat data/daemon.pid)``) -- ``"kill + daemon.pid"``;
    3. ``kill`` together with ``$ORCHESTRATOR_DAEMON_PID`` or
       ``${ORCHESTRATOR_DAEMON_PID}`` -- ``"kill + $ORCHESTRATOR_DAEMON_PID"``;
    4. ``pkill`` (as a word start) followed anywhere by ``orchestratord`` --
       ``"pkill orchestratord"``;
    5. the same for ``killall`` -- ``"killall orchestratord"``;
    6. the word ``kill`` followed anywhere later by the literal daemon PID as a
       whole number (``kill -9 12345``, not ``123456``) -- ``"kill <pid>"``.

    Raises :class:`DaemonPidGuardBlocked` with ``.reason`` and
    ``.matched_pattern``; returns None when no pattern matches.
    """
    if daemon_pid <= 0:
        # kill(0) / kill(-1) address whole groups, never "the daemon";
        # a non-positive PID is a caller bug, refused rather than ignored.
        raise ValueError(f"daemon_pid must be a positive PID, got {daemon_pid}")
    pid = str(daemon_pid)

    if _contains_daemon_stop(command):
        _block(
            f"command uses 'orchestrator daemon stop' which sends SIGTERM to daemon (PID {pid})",
            "orchestrator daemon stop",
        )
    if "daemon.pid" in command and "kill" in command:
        _block(
            f"command references daemon.pid in a kill context (daemon PID {pid})",
            "kill + daemon.pid",
        )
    if "kill" in command and (
        "$ORCHESTRATOR_DAEMON_PID" in command or "${ORCHESTRATOR_DAEMON_PID}" in command
    ):
        _block(
            f"command uses ORCHESTRATOR_DAEMON_PID env var in a kill context (daemon PID {pid})",
            "kill + $ORCHESTRATOR_DAEMON_PID",
        )
    for tool in ("pkill", "killall"):
        if _contains_process_kill(command, tool, "orchestratord"):
            _block(
                f"command uses {tool} to target orchestratord (daemon PID {pid})",
                f"{tool} orchestratord",
            )
    if _contains_kill_pid(command, pid):
        _block(f"command contains kill targeting literal daemon PID {pid}", f"kill {pid}")


def _block(reason: str, matched_pattern: str) -> None:
    raise DaemonPidGuardBlocked(reason, matched_pattern)


def _is_word_char(char: str) -> bool:
    # The Rust runner's notion of a word character: ASCII letters, digits, '_'.
    return char.isascii() and (char.isalnum() or char == "_")


def _contains_daemon_stop(command: str) -> bool:
    for segment in _SEGMENT_SPLIT.split(command):
        tokens = segment.split()
        for first, second, third in zip(tokens, tokens[1:], tokens[2:], strict=False):
            if first.endswith("orchestrator") and second == "daemon" and third == "stop":
                return True
    return False


def _contains_process_kill(command: str, tool: str, target: str) -> bool:
    start = command.find(tool)
    while start != -1:
        at_word_start = start == 0 or not _is_word_char(command[start - 1])
        if at_word_start and target in command[start + len(tool) :]:
            return True
        start = command.find(tool, start + 1)
    return False


def _contains_kill_pid(command: str, pid: str) -> bool:
    start = command.find("kill")
    while start != -1:
        end = start + len("kill")
        standalone = (start == 0 or not _is_word_char(command[start - 1])) and (
            end == len(command) or not _is_word_char(command[end])
        )
        if standalone and _contains_whole_number(command[end:], pid):
            return True
        start = command.find("kill", start + 1)
    return False


def _contains_whole_number(text: str, number: str) -> bool:
    at = text.find(number)
    while at != -1:
        before_ok = at == 0 or text[at - 1] not in _DIGITS
        after = at + len(number)
        after_ok = after == len(text) or text[after] not in _DIGITS
        if before_ok and after_ok:
            return True
        at = text.find(number, at + 1)
    return False
