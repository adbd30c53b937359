"""The runner entry points: run ``[shell, shell_arg, command]`` as the Rust runner
(``orchestrator-runner``) does.

:func:`spawn_with_runner` checks the runner policy and the daemon-PID guard,
builds the child's environment from the policy, opens the output files,
prepares the sandbox for a ``sandbox`` profile (failing closed when it cannot
be enforced) and starts the shell in its own process group with the
profile's resource limits. A failed spawn is classified: under a sandbox
profile into :class:`SandboxBackendError` with the Rust runner's reason codes,
otherwise into :class:`SpawnError` naming ``shell=`` and ``shell_arg=``.

:func:`spawn_with_runner_and_capture` does the same with both output streams
piped through the native redaction pump into the files.
"""

from __future__ import annotations

import errno as errno_codes
import functools
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from orchestrator_spawn._aio import in_event_loop
from orchestrator_spawn.config import ResolvedExecutionProfile, RunnerConfig, RunnerPolicy
from orchestrator_spawn.errors import (
    OrchestratorSpawnError,
    PolicyError,
    SandboxBackendError,
    SpawnError,
)
from orchestrator_spawn.policy import _is_allowlist, enforce_runner_policy, guard_daemon_pid_kill
from orchestrator_spawn.pump import (
    Redaction,
    ResolvedRedaction,
    resolve_redaction,
    spawn_captured,
)
from orchestrator_spawn.redact import Redactor
from orchestrator_spawn.sandbox import PreparedSandbox, prepare_sandbox
from orchestrator_spawn.sandbox import backend_name as sandbox_backend_name
from orchestrator_spawn.spawn import (
    PIPE,
    PackedEnv,
    env_entry,
    environ_entries,
    pack_entries,
    spawn,
)

if TYPE_CHECKING:
    from orchestrator_spawn.child import Child

__all__ = [
    "DAEMON_PID_ENV",
    "CapturedChild",
    "OutputTarget",
    "build_child_env",
    "classify_spawn_error",
    "redaction_config",
    "spawn_with_runner",
    "spawn_with_runner_and_capture",
]

DAEMON_PID_ENV = "ORCHESTRATOR_DAEMON_PID"
"""Present in ``extra_env``, this turns on :func:`guard_daemon_pid_kill`."""

OutputTarget = IO[Any] | int | str | os.PathLike[str]
"""Where a stream goes: an object with ``fileno()``, an int fd, or a path
(created, or truncated if it exists)."""

# Reason codes by resource kind (the event payload labels, as the Rust runner's).
_REASON_BY_KIND = {
    "memory": "memory_limit_exceeded",
    "cpu": "cpu_limit_exceeded",
    "processes": "processes_limit_exceeded",
    "open_files": "open_files_limit_exceeded",
}
# The errno that each configured limit produces when exhausted (the Rust
# runner matched the strerror texts of these: "cannot allocate memory", "resource
# temporarily unavailable", "too many open files").
_KIND_BY_ERRNO = {
    errno_codes.ENOMEM: ("memory", "max_memory_mb"),
    errno_codes.EAGAIN: ("processes", "max_processes"),
    errno_codes.EMFILE: ("open_files", "max_open_files"),
    errno_codes.ENFILE: ("open_files", "max_open_files"),
}
# Errors that name a wrong program or directory, never an exhausted limit:
# the single-configured-limit rule does not claim them (a deviation from the
# Rust runner, which would have reported a missing shell as, say, a CPU overrun).
_NOT_A_LIMIT = frozenset(
    {
        errno_codes.ENOENT,
        errno_codes.ENOTDIR,
        errno_codes.EACCES,
        errno_codes.ENOEXEC,
        errno_codes.ELOOP,
        errno_codes.ENAMETOOLONG,
        errno_codes.EISDIR,
    }
)


def default_sandbox_backend() -> str:
    """The label of the sandbox backend this platform would use (the Rust runner's labels)."""
    return sandbox_backend_name()


def classify_spawn_error(
    err: OSError,
    runner: RunnerConfig,
    execution_profile: ResolvedExecutionProfile,
    *,
    backend: str | None = None,
) -> OrchestratorSpawnError:
    """Turn a failed spawn into the error the runner raises (returned, not raised).

    Under a ``sandbox`` profile, in this order (the Rust runner's, then ours):

    1. ``ENOMEM`` with ``max_memory_mb`` set, ``EAGAIN`` with
       ``max_processes`` set, ``EMFILE``/``ENFILE`` with ``max_open_files``
       set: ``SandboxBackendError(event_type="sandbox_resource_exceeded")``
       with the matching reason code and resource kind;
    2. a failure in the child's ``sandbox`` stage:
       ``event_type="sandbox_denied"``, ``reason_code=
       "sandbox_backend_unavailable"`` (the backend could not be applied);
    3. the single-configured-limit rule: if exactly one of the four
       limits is set, the failure is attributed to it -- except for errors
       that plainly name a bad program or directory (``ENOENT``, ``EACCES``,
       ``ENOTDIR``, ...), which fall through.

    Everything else (and every failure under a host profile) becomes a
    :class:`SpawnError` with the original errno and stage whose message
    reads ``failed to spawn runner shell=... shell_arg=...: <cause>``.
    ``backend`` is the label of the backend that was used (default: this
    platform's).
    """
    code = err.errno or 0
    stage = getattr(err, "stage", "fork")
    if execution_profile.mode == "sandbox":
        label = backend or default_sandbox_backend()
        kind_field = _KIND_BY_ERRNO.get(code)
        if kind_field is not None and getattr(execution_profile, kind_field[1]) is not None:
            return _resource_exceeded(execution_profile, label, kind_field[0], err)
        if stage == "sandbox":
            return SandboxBackendError(
                execution_profile.name,
                label,
                "sandbox_denied",
                "sandbox_backend_unavailable",
                None,
                f"the sandbox could not be applied in the child: {err}",
            )
        configured = [
            kind
            for kind, field in (
                ("memory", "max_memory_mb"),
                ("processes", "max_processes"),
                ("open_files", "max_open_files"),
                ("cpu", "max_cpu_seconds"),
            )
            if getattr(execution_profile, field) is not None
        ]
        if len(configured) == 1 and code not in _NOT_A_LIMIT:
            return _resource_exceeded(execution_profile, label, configured[0], err)
    cause = err.strerror if isinstance(err, SpawnError) else str(err)
    message = f"failed to spawn runner shell={runner.shell} shell_arg={runner.shell_arg}: {cause}"
    return SpawnError(code, message, stage=stage, program=runner.shell)


def _resource_exceeded(
    profile: ResolvedExecutionProfile, backend: str, kind: str, err: OSError
) -> SandboxBackendError:
    return SandboxBackendError(
        profile.name,
        backend,
        "sandbox_resource_exceeded",
        _REASON_BY_KIND[kind],
        kind,
        f"sandbox process spawn failed under execution profile {profile.name!r}: {err}",
    )


def build_child_env(
    runner: RunnerConfig,
    extra_env: Mapping[str, str],
    parent_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The runner child's environment.

    Under ``allowlist``: only the parent's variables named in
    ``runner.env_allowlist`` (those that are set), then ``extra_env``. Under
    ``unsafe``: the parent's whole environment, then ``extra_env``. Last,
    every name in ``runner.env_remove`` is dropped, even if ``extra_env`` set
    it. ``parent_env`` defaults to ``os.environ``.
    """
    parent = os.environ if parent_env is None else parent_env
    if RunnerPolicy(runner.policy) is RunnerPolicy.ALLOWLIST:
        env = {name: parent[name] for name in runner.env_allowlist if name in parent}
    else:
        env = dict(parent)
    env.update(extra_env)
    for name in runner.env_remove:
        env.pop(name, None)
    return env


# The runner's environments from the cached encoding of os.environ: for one
# encoding (compared by identity), (allowlist or None, env_remove) -> (the
# entries before extra_env, the env_remove names encoded, the packed
# environment without extra_env).
_EnvKey = tuple[tuple[str, ...] | None, tuple[str, ...]]
_EnvBase = tuple[Mapping[bytes, bytes], tuple[bytes, ...], PackedEnv]
_env_bases: tuple[dict[bytes, bytes], dict[_EnvKey, _EnvBase]] | None = None
_ENV_BASES_MAX = 32


def _child_env(runner: RunnerConfig, extra_env: Mapping[str, str]) -> Mapping[str, str]:
    """:func:`build_child_env` ``(runner, extra_env)``, ready for ``spawn``.

    The same variables, values and order, but built from the encoding of
    ``os.environ`` that ``spawn`` keeps until ``os.environ`` changes, so a
    job pays for encoding ``extra_env`` only. Falls back to
    :func:`build_child_env` for what the fast path does not cover (an
    ``os.environ`` replaced by another mapping, non-str names).
    """
    global _env_bases
    memo = _allowlisted_unchanged(runner)
    if memo is not None:
        found, key_remove = memo.base, memo.remove_key
    else:
        entries = environ_entries()
        if entries is None:
            return build_child_env(runner, extra_env)
        allowlist = tuple(runner.env_allowlist) if _is_allowlist(runner.policy) else None
        key: _EnvKey = (allowlist, tuple(runner.env_remove))
        bases = _env_bases
        if bases is None or bases[0] is not entries or len(bases[1]) >= _ENV_BASES_MAX:
            bases = _env_bases = (entries, {})
        cached = bases[1].get(key)
        if cached is None:
            cached = _env_base(entries, *key)
            if cached is None:
                return build_child_env(runner, extra_env)
            bases[1][key] = cached
        if allowlist is not None:
            _remember_allowlisted(runner, key[1], cached)
        found, key_remove = cached, key[1]
    base, remove, packed = found
    if not extra_env:
        return packed
    env = dict(base)
    removed = key_remove
    for name, value in extra_env.items():
        if type(name) is not str:
            return build_child_env(runner, extra_env)
        if name in removed:
            continue  # dropped below anyway, unread as before
        encoded, entry = env_entry(name, value)
        env[encoded] = entry
    for encoded in remove:
        env.pop(encoded, None)
    return pack_entries(env)


@dataclass(frozen=True, slots=True)
class _AllowlistMemo:
    """The last allowlisted environment base built (see ``_child_env``).

    It depends on os.environ's allowlisted variables only, so it is kept
    with the runner's two lists (the objects and copies of them),
    os.environ's data dict and the value objects that dict held for the
    allowlisted names (None: unset). While those are the same it is reused
    without reading the rest of os.environ: every change made through
    os.environ puts a new value object in the data dict or takes one out.
    """

    allowlist: list[str]
    allowlist_copy: list[str]
    remove: list[str]
    remove_key: tuple[str, ...]  # a copy of remove
    data: dict[bytes, bytes]
    values: tuple[tuple[bytes, bytes | None], ...]
    base: _EnvBase


_allowlist_memo: _AllowlistMemo | None = None


def _allowlisted_unchanged(runner: RunnerConfig) -> _AllowlistMemo | None:
    """The remembered allowlisted environment if it still holds."""
    memo = _allowlist_memo
    if memo is None:
        return None
    allowlist, remove = runner.env_allowlist, runner.env_remove
    if (
        allowlist is not memo.allowlist
        or remove is not memo.remove
        or allowlist != memo.allowlist_copy
        or tuple(remove) != memo.remove_key
        or getattr(os.environ, "_data", None) is not memo.data
        or not _is_allowlist(runner.policy)
    ):
        return None
    data = memo.data
    for name, value in memo.values:
        if data.get(name) is not value:
            return None
    return memo


def _remember_allowlisted(
    runner: RunnerConfig, remove_key: tuple[str, ...], found: _EnvBase
) -> None:
    global _allowlist_memo
    data = getattr(os.environ, "_data", None)
    allowlist, remove = runner.env_allowlist, runner.env_remove
    if type(data) is not dict or type(allowlist) is not list or type(remove) is not list:
        return
    base = found[0]
    values = []
    for name in map(os.fsencode, allowlist):
        value = data.get(name)
        # Only if the base was built from these very values (another thread
        # may have changed os.environ since).
        entry = base.get(name)
        if (entry is None) != (value is None) or (
            entry is not None and entry != name + b"=" + value  # type: ignore[operator]
        ):
            return
        values.append((name, value))
    _allowlist_memo = _AllowlistMemo(
        allowlist, list(allowlist), remove, remove_key, data, tuple(values), found
    )


def _env_base(
    entries: dict[bytes, bytes], allowlist: tuple[str, ...] | None, env_remove: tuple[str, ...]
) -> _EnvBase | None:
    if any(type(name) is not str for name in (*(allowlist or ()), *env_remove)):
        return None
    base: Mapping[bytes, bytes]
    if allowlist is None:
        base = entries  # never modified: copied before extra_env goes in
    else:
        base = {}
        for name in allowlist:
            encoded = os.fsencode(name)
            entry = entries.get(encoded)
            if entry is not None:
                base.setdefault(encoded, entry)
    remove = tuple(os.fsencode(name) for name in env_remove)
    final = {name: entry for name, entry in base.items() if name not in remove}
    return base, remove, pack_entries(final)


def _host_profile(cwd: str | os.PathLike[str]) -> ResolvedExecutionProfile:
    """``ResolvedExecutionProfile.host(cwd)``, made once per directory.

    The profile is immutable and, for an absolute ``cwd`` with nothing to
    expand (no ``~`` prefix, no ``$``), depends on that string alone; any
    other ``cwd`` depends on the current directory or the environment and
    is resolved afresh.
    """
    path = os.fspath(cwd)
    if type(path) is str and path.startswith("/") and "$" not in path:
        return _host_profile_of(path)
    return ResolvedExecutionProfile.host(cwd)


@functools.lru_cache(maxsize=64)
def _host_profile_of(path: str) -> ResolvedExecutionProfile:
    return ResolvedExecutionProfile.host(path)


def _preflight(runner: RunnerConfig, command: str, extra_env: Mapping[str, str]) -> None:
    """Policy and guard, before anything with a side effect (like truncating files)."""
    enforce_runner_policy(runner, command)
    if extra_env:
        _check_guard(command, extra_env)


def _check_guard(command: str, extra_env: Mapping[str, str]) -> None:
    raw = extra_env.get(DAEMON_PID_ENV)
    if raw is None:
        return
    # The Rust runner silently skipped the guard for an unparsable value; a safety
    # check must not switch itself off on a typo, so refuse instead.
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or int(text) <= 0:
        raise PolicyError(f"{DAEMON_PID_ENV}={raw!r} in extra_env is not a positive PID")
    guard_daemon_pid_kill(command, int(text))


def _prepare_sandbox(profile: ResolvedExecutionProfile, argv: list[str]) -> PreparedSandbox:
    """Ask the sandbox backend to prepare ``argv``; it fails closed with
    ``SandboxBackendError`` when it cannot enforce ``profile``."""
    return prepare_sandbox(profile, argv)


class _OpenedOutputs:
    """stdout/stderr targets turned into fds; closes only what it opened."""

    def __init__(self, stdout: OutputTarget, stderr: OutputTarget) -> None:
        self._owned: list[IO[bytes]] = []
        self._by_file: dict[tuple[int, int], IO[bytes]] = {}
        try:
            self.stdout = self._fd(stdout, "stdout")
            self.stderr = self._fd(stderr, "stderr")
        except BaseException:
            self.close()
            raise

    def _fd(self, target: OutputTarget, name: str) -> int:
        if isinstance(target, bool):
            raise TypeError(f"{name} must be a file object, an fd or a path, not a bool")
        if isinstance(target, int):
            return target
        if isinstance(target, (str, os.PathLike)):
            handle = open(target, "wb")  # noqa: SIM115 - closed in close()
            # The same file for both streams (by device and inode, whatever
            # the names: "out.log", "./out.log", a link) shares one open file
            # and one offset, so the two streams interleave instead of
            # overwriting each other.
            info = os.fstat(handle.fileno())
            shared = self._by_file.get((info.st_dev, info.st_ino))
            if shared is not None:
                handle.close()
                return shared.fileno()
            self._owned.append(handle)
            self._by_file[(info.st_dev, info.st_ino)] = handle
            return handle.fileno()
        fileno = getattr(target, "fileno", None)
        if fileno is None:
            raise TypeError(
                f"{name} must be a file object with fileno(), an fd or a path, "
                f"not {type(target).__name__}"
            )
        result: int = fileno()
        return result

    def close(self) -> None:
        for handle in self._owned:
            handle.close()
        self._owned.clear()


def _start(
    runner: RunnerConfig,
    command: str,
    cwd: str | os.PathLike[str],
    stdout: Any,
    stderr: Any,
    extra_env: Mapping[str, str],
    pipe_stdin: bool,
    profile: ResolvedExecutionProfile,
    follower: Any = None,
) -> Child:
    """Environment, sandbox, spawn, classification: shared by both entry points.

    The policy checks (:func:`_preflight`) must have passed already.
    ``follower``: the capture's handle, given to ``spawn`` (see
    ``pump.spawn_captured``).
    """
    if pipe_stdin and not in_event_loop():
        raise RuntimeError(
            "pipe_stdin=True gives child.stdin as an async stream (as open_process() "
            "does): call this inside a running event loop (asyncio or trio)"
        )
    argv = [runner.shell, runner.shell_arg, command]
    prepared: PreparedSandbox | None = None
    options: dict[str, Any] = {}
    env: Mapping[str, str]
    if profile.mode == "sandbox":
        sandbox_env = build_child_env(runner, extra_env)
        prepared = _prepare_sandbox(profile, argv)
        argv = list(prepared.argv)
        sandbox_env.update(prepared.env_overrides)
        env = sandbox_env
        if prepared.native_plan is not None:
            options["_sandbox_plan"] = prepared.native_plan
    else:
        env = _child_env(runner, extra_env)
    try:
        child: Child[Any, Any] = spawn(
            argv,
            cwd=cwd,
            env=env,
            stdin=PIPE if pipe_stdin else None,
            stdout=stdout,
            stderr=stderr,
            process_group=True,
            limits=profile.resource_limits(),
            _async_streams=pipe_stdin,
            _output_follower=follower,
            **options,
        )
    except OSError as err:
        if prepared is not None:
            prepared.close()
        backend = prepared.backend if prepared is not None else None
        raise classify_spawn_error(err, runner, profile, backend=backend) from err
    except BaseException:
        if prepared is not None:
            prepared.close()
        raise
    if prepared is not None:
        _close_with_child(child, prepared)
    return child


def _close_with_child(child: Child, prepared: PreparedSandbox) -> None:
    # The prepared sandbox (e.g. the allowlist proxy) must outlive the child:
    # it is released once the child is reaped, without blocking the reaping
    # thread (an event loop, maybe). A handle dropped while the child runs
    # kills and reaps it, which releases it too; the finalizer is a backstop
    # (close() is idempotent).
    child._call_when_reaped(functools.partial(prepared.close, wait=False))
    weakref.finalize(child, prepared.close)


def spawn_with_runner(
    runner: RunnerConfig,
    command: str,
    cwd: str | os.PathLike[str],
    stdout: OutputTarget,
    stderr: OutputTarget,
    extra_env: Mapping[str, str] | None = None,
    pipe_stdin: bool = False,
    execution_profile: ResolvedExecutionProfile | None = None,
) -> Child:
    """Run ``[runner.shell, runner.shell_arg, command]`` with output into files.

    The child runs in ``cwd`` in its own process group (``child.pgid ==
    child.pid``), with the resource limits and sandbox of
    ``execution_profile`` (default: the host profile rooted at ``cwd``).
    ``stdout``/``stderr`` are file objects, fds or paths (paths are created
    or truncated, and closed in the parent once the child has them; fds and
    file objects stay the caller's). With ``pipe_stdin`` the child's stdin is
    a pipe (``child.stdin``); otherwise it is inherited.

    Environment: see :func:`build_child_env`. ``ORCHESTRATOR_DAEMON_PID`` in
    ``extra_env`` turns on :func:`guard_daemon_pid_kill`.

    Raises :class:`PolicyError` (policy, or an unparsable daemon PID),
    :class:`DaemonPidGuardBlocked`, :class:`SandboxBackendError` (sandbox
    unavailable, or a classified spawn failure under a sandbox profile),
    :class:`SpawnError` naming ``shell=``/``shell_arg=``, ``OSError`` if an
    output path cannot be opened, ``TypeError`` for a bad output target.
    """
    _preflight(runner, command, extra_env or {})
    profile = execution_profile or _host_profile(cwd)
    outputs = _OpenedOutputs(stdout, stderr)
    try:
        return _start(
            runner,
            command,
            cwd,
            outputs.stdout,
            outputs.stderr,
            extra_env or {},
            pipe_stdin,
            profile,
        )
    finally:
        outputs.close()


@dataclass(frozen=True)
class CapturedChild:
    """A runner child whose output is being redacted into files.

    ``child`` is the :class:`Child`; ``output_capture`` has ``async wait()``,
    which returns once both streams reached EOF and every byte was redacted
    and written, and raises if writing failed.
    """

    child: Child
    output_capture: Any


def spawn_with_runner_and_capture(
    runner: RunnerConfig,
    command: str,
    cwd: str | os.PathLike[str],
    stdout: OutputTarget,
    stderr: OutputTarget,
    redaction_patterns: Sequence[str] | Redaction | None = None,
    extra_env: Mapping[str, str] | None = None,
    pipe_stdin: bool = False,
    execution_profile: ResolvedExecutionProfile | None = None,
) -> CapturedChild:
    """Like :func:`spawn_with_runner`, with both streams redacted into the files.

    The child's stdout and stderr are pipes read by the native output pump,
    which runs each stream through its own streaming redactor and writes the
    result to ``stdout``/``stderr`` (file objects, fds or paths, as for
    :func:`spawn_with_runner`; the same path twice shares one file).
    ``redaction_patterns``: regexes (case-insensitive, as
    :class:`Redactor` applies them), or a pump ``Redaction`` (e.g. with
    ``literals=``); None means ``runner.redaction_patterns`` (by default the
    built-in secret pack); an empty sequence disables redaction.

    ``CapturedChild.output_capture.wait()`` returns once both streams reached
    EOF and every byte was redacted and written, and raises ``OSError`` if
    writing failed (disk full, closed fd). Raises what
    :func:`spawn_with_runner` raises, plus ``ValueError`` for a pattern that
    does not compile or can match the empty string (before anything runs).
    """
    _preflight(runner, command, extra_env or {})
    patterns: Sequence[str] | Redaction = (
        runner.redaction_patterns if redaction_patterns is None else redaction_patterns
    )
    redaction = _capture_redaction(patterns)
    profile = execution_profile or _host_profile(cwd)
    # The capture starts first: a sink that cannot be opened then fails the
    # call before the command ran at all. The pump gives both pipes (made
    # ahead on its reactor, see pump.spawn_captured).
    child, capture = spawn_captured(
        stdout,
        stderr,
        redaction,
        lambda out, err, follower: _start(
            runner, command, cwd, out, err, extra_env or {}, pipe_stdin, profile, follower
        ),
    )
    return CapturedChild(child, capture)


def _capture_redaction(patterns: Sequence[str] | Redaction) -> ResolvedRedaction | None:
    """``redaction_config(patterns)`` as the pump's checked C-side setup.

    A sequence of patterns (``runner.redaction_patterns``, the same for every
    job) is checked once per distinct content and then looked up by a
    snapshot of its entries; only configurations that passed are kept, and
    one with an unhashable entry (``bytearray``) is checked every time. The
    list last looked up is also remembered with a copy of it: the same list
    with the same entries (compared by identity, without reading them) is
    answered at once."""
    memo = _last_capture_redaction
    if memo is not None and patterns is memo[0] and patterns == memo[1]:
        return memo[2]
    key: tuple[Any, ...] | None = None
    if not isinstance(patterns, (Redaction, str, bytes)):
        try:
            key = tuple(patterns)
            known = _capture_redactions.get(key)
        except (TypeError, ValueError):  # unhashable entries
            key = known = None
        if known is not None:
            _remember_capture_redaction(patterns, known)
            return known
    config = redaction_config(patterns)
    resolved = None if config is None else resolve_redaction(config)
    if key is not None and resolved is not None:
        if len(_capture_redactions) >= 64:
            _capture_redactions.clear()
        _capture_redactions[key] = resolved
        _remember_capture_redaction(patterns, resolved)
    return resolved


def _remember_capture_redaction(patterns: object, resolved: ResolvedRedaction) -> None:
    global _last_capture_redaction
    if type(patterns) is list:  # a runner's redaction_patterns
        _last_capture_redaction = (patterns, list(patterns), resolved)


# Pattern sequences already checked -> their pump setup (_capture_redaction).
_capture_redactions: dict[tuple[Any, ...], ResolvedRedaction] = {}
# The list last looked up, a copy of its entries, its pump setup.
_last_capture_redaction: tuple[list[Any], list[Any], ResolvedRedaction] | None = None


def redaction_config(patterns: Sequence[str] | Redaction) -> Redaction | None:
    """The pump's :class:`Redaction` for ``patterns``, compiled once to validate it.

    Returns None when there is nothing to redact. Raises ``ValueError`` naming
    a pattern that does not compile or can match the empty string, and
    ``TypeError`` for a single string where a sequence belongs.
    """
    if isinstance(patterns, Redaction):
        config = patterns
    elif isinstance(patterns, (str, bytes)):
        raise TypeError("redaction_patterns must be a sequence of patterns, not one string")
    else:
        config = Redaction(patterns=tuple(patterns))
    if not config.patterns and not config.literals:
        return None
    # The pump compiles the same set again (cached); doing it here first makes
    # a bad pattern fail before the command runs rather than after. A
    # configuration that passed once passes again: each is checked once.
    # The key holds the scalars' types too (1 == True == 1.0, yet only some
    # of them are accepted).
    key = (
        tuple(config.patterns),
        tuple(config.literals),
        config.replacement,
        config.ignore_case,
        config.max_hold,
        type(config.replacement),
        type(config.ignore_case),
        type(config.max_hold),
    )
    try:
        hash(key)
    except TypeError:  # e.g. a bytearray pattern: checked afresh every time
        _check_redaction(key)
    else:
        _checked_redaction(key)
    return config


def _check_redaction(key: tuple[Any, ...]) -> None:
    patterns, literals, replacement, ignore_case, max_hold = key[:5]
    Redactor(
        patterns,
        literals=literals,
        replacement=replacement,
        ignore_case=ignore_case,
        max_hold=max_hold,
    )


# Remembers the configurations that passed (a failure raises, so is not kept).
_checked_redaction = functools.lru_cache(maxsize=64)(_check_redaction)
