"""The only module that imports the cffi ``ffi``/``lib`` of the C core.

It checks arguments before each call, and turns the C core's return codes
(0 or -errno, plus a stage) into this package's exceptions in one place.
Sections below belong to the parts of the core: keep each part's wrappers in
its own section.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from orchestrator_spawn.errors import SpawnError

try:
    from orchestrator_spawn._core import ffi, lib
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "the C core of orchestrator_spawn (orchestrator_spawn._core) is not built; "
        "install the package with pip, or run `python setup.py build_ext --inplace` "
        "in a source checkout"
    ) from err

__all__ = ["CORE_VERSION", "ffi", "lib"]

# Must equal OS_CORE_VERSION in csrc/core_api.h.
CORE_VERSION = 1

if lib.os_core_version() != CORE_VERSION:  # pragma: no cover - broken install
    raise ImportError(
        f"orchestrator_spawn: C core version {lib.os_core_version()} does not match "
        f"the Python package (expects {CORE_VERSION}); reinstall the package"
    )

def _names(name_of: Any) -> dict[int, str]:
    """The table ``value -> name`` of a C enum, from its name function
    (NULL past the last value)."""
    names: dict[int, str] = {}
    for value in range(64):
        text = name_of(value)
        if text != ffi.NULL:
            names[value] = ffi.string(text).decode()
    return names


# --- spawn --------------------------------------------------------------------


FD_INHERIT: int = lib.OS_SPAWN_FD_INHERIT
FD_DEVNULL: int = lib.OS_SPAWN_FD_DEVNULL


NEW_PROCESS_GROUP: int = lib.OS_SPAWN_NEW_PROCESS_GROUP
WANT_PIDFD: int = lib.OS_SPAWN_WANT_PIDFD
FORCE_FORK: int = lib.OS_SPAWN_FORCE_FORK
DIE_WITH_PARENT: int = lib.OS_SPAWN_DIE_WITH_PARENT
NEW_PID_NS: int = lib.OS_SPAWN_NEW_PID_NS
CONTAINED_CGROUP: int = lib.OS_CONTAINED_CGROUP
CONTAINED_PID_NS: int = lib.OS_CONTAINED_PID_NS
NO_LIMITS = (-1, -1, -1, -1)

_BAD_STRINGS: int = lib.OS_SPAWN_BAD_STRINGS
_os_spawn_packed = lib.os_spawn_packed
_new = ffi.new
_NULL = ffi.NULL


def spawn_packed(
    program: bytes,
    search_path: bytes | None,
    argv_block: bytes,
    argc: int,
    env_block: bytes | None,
    envc: int,
    cwd: bytes | None,
    stdin_fd: int,
    stdout_fd: int,
    stderr_fd: int,
    pass_fds: tuple[int, ...],
    flags: int,
    rlimits: tuple[int, int, int, int],
    cgroup_fd: int,
    sandbox_plan: Any,
) -> tuple[int, int, int]:
    """The hot path of :func:`native_spawn`: positional arguments, one foreign
    call (``os_spawn_packed``, GIL released), the bytes passed without copies.

    ``flags`` ORs ``NEW_PROCESS_GROUP``, ``WANT_PIDFD``, ``FORCE_FORK``,
    ``DIE_WITH_PARENT``, ``NEW_PID_NS``; ``cgroup_fd`` is a directory fd of
    the job's (empty) cgroup v2, or -1. Returns ``(pid, pidfd, contained)``
    (``CONTAINED_*`` bits: what holds the job); raises as :func:`native_spawn`
    does."""
    out = _new("int[5]")
    rc = _os_spawn_packed(
        program,
        _NULL if search_path is None else search_path,
        argv_block,
        len(argv_block),
        argc,
        _NULL if env_block is None else env_block,
        0 if env_block is None else len(env_block),
        envc,
        _NULL if cwd is None else cwd,
        stdin_fd,
        stdout_fd,
        stderr_fd,
        list(pass_fds) if pass_fds else _NULL,
        len(pass_fds),
        flags,
        _NULL if rlimits is NO_LIMITS else list(rlimits),
        cgroup_fd,
        _NULL if sandbox_plan is None else sandbox_plan,
        out,
    )
    if rc == 0:
        return out[0], out[1], out[4]
    if rc == _BAD_STRINGS:
        raise ValueError("embedded null byte")
    stage = ffi.string(lib.os_spawn_stage_name(out[2])).decode()
    name = os.fsdecode(program)
    err = out[3]
    raise SpawnError(
        err,
        f"cannot spawn {name!r}: {stage} failed: {os.strerror(err)} (errno {err})",
        stage=stage,
        program=name,
    )


def native_spawn(
    *,
    program: bytes,
    search_path: bytes | None,
    argv_block: bytes,
    argc: int,
    env_block: bytes | None,
    envc: int,
    cwd: bytes | None,
    stdio: tuple[int, int, int],
    pass_fds: tuple[int, ...],
    new_process_group: bool,
    rlimits: tuple[int, int, int, int],
    sandbox_plan: Any,
    want_pidfd: bool,
    force_fork: bool = False,
    cgroup_fd: int = -1,
    die_with_parent: bool = False,
) -> tuple[int, int]:
    """Forks and execs through ``os_spawn`` (GIL released); returns ``(pid, pidfd)``.

    ``argv_block``/``env_block`` hold ``argc``/``envc`` NUL-terminated strings
    back to back (``b"a\\0b\\0"``); ``env_block=None`` passes the process's
    own C ``environ`` (what ``os.environ`` writes through to), like subprocess.

    ``pidfd`` is -1 when not asked for or not supported by the kernel.
    ``force_fork`` (tests) takes the real-fork path a sandbox plan takes;
    ``cgroup_fd``/``die_with_parent`` as in :func:`spawn_packed`. Raises
    ``ValueError`` if a block holds another number of strings (an embedded NUL
    byte), ``SpawnError`` (with ``.stage``, ``.errno``, ``.program``) when the
    child failed before exec or the fork itself failed; no child is left
    behind then.
    """
    flags = (
        (NEW_PROCESS_GROUP if new_process_group else 0)
        | (WANT_PIDFD if want_pidfd else 0)
        | (FORCE_FORK if force_fork else 0)
        | (DIE_WITH_PARENT if die_with_parent else 0)
    )
    pid, pidfd, _contained = spawn_packed(
        program,
        search_path,
        argv_block,
        argc,
        env_block,
        envc,
        cwd,
        stdio[0],
        stdio[1],
        stdio[2],
        pass_fds,
        flags,
        rlimits,
        cgroup_fd,
        sandbox_plan,
    )
    return pid, pidfd


# Moves an fd the library keeps for a child's lifetime above the range new fds
# come from, so spawns stay cheap with thousands open (csrc/fdpark_api.h).
park_fd: Any = lib.os_fd_park

# Sleeps until the child exited, without reaping it: 0 or -errno (see spawn_api.h).
wait_exit_nowait: Any = lib.os_wait_exit_nowait
_os_reap = lib.os_reap


def reap(pid: int) -> tuple[int, int, int, int] | None:
    """``wait4(pid, WNOHANG)``: None while the child runs, else its exit code
    (negative signal number), user and system CPU in microseconds and
    ``ru_maxrss``. Raises ``OSError`` (``ChildProcessError`` if it was reaped
    elsewhere)."""
    out = _new("long long[4]")
    rc = _os_reap(pid, out)
    if rc == 1:
        return out[0], out[1], out[2], out[3]
    if rc == 0:
        return None
    raise OSError(-rc, f"wait4({pid}) failed: {os.strerror(-rc)}")


def install_sigchld_wakeup(fd: int) -> None:
    """Makes SIGCHLD write one byte to ``fd`` (non-blocking), chaining to the
    previous handler. Raises ``OSError`` if ``sigaction`` fails."""
    rc = lib.os_sigchld_install(fd)
    if rc != 0:
        raise OSError(-rc, f"cannot install the SIGCHLD handler: {os.strerror(-rc)}")


# --- cgroup containment -------------------------------------------------------
# Thin wrappers over csrc/cgroup_api.h: each takes a directory fd of a cgroup
# v2 and raises OSError (naming the call) where the C side returned -errno.


def _cgroup_check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what} failed: {os.strerror(-rc)}")
    return rc


def cgroup_kill(dirfd: int) -> None:
    """SIGKILLs every process of the cgroup and its descendants (cgroup.kill,
    or freeze + kill + thaw before Linux 5.14)."""
    _cgroup_check(lib.os_cgroup_kill(dirfd), "cgroup.kill")


def cgroup_kill_frozen(dirfd: int) -> None:
    """``cgroup_kill``'s fallback for kernels before 5.14, on its own (tests)."""
    _cgroup_check(lib.os_cgroup_kill_frozen(dirfd), "freeze + SIGKILL + thaw")


def cgroup_signal(dirfd: int, sig: int) -> None:
    """Sends ``sig`` to every process of the cgroup and its descendants."""
    _cgroup_check(lib.os_cgroup_signal(dirfd, sig), f"signalling a cgroup with {sig}")


def cgroup_populated(dirfd: int) -> bool:
    """Whether a live process remains in the cgroup or below (cgroup.events)."""
    return _cgroup_check(lib.os_cgroup_populated(dirfd), "reading cgroup.events") == 1


def cgroup_count_procs(dirfd: int) -> int:
    """The number of processes listed in the cgroup's own cgroup.procs."""
    return _cgroup_check(lib.os_cgroup_count_procs(dirfd), "reading cgroup.procs")


def cgroup_wait_empty(dirfd: int, timeout_ms: int) -> int:
    """Sleeps in poll() until the cgroup is unpopulated (1) or ``timeout_ms``
    passed (0; negative waits forever); -EINTR when a signal arrived."""
    rc: int = lib.os_cgroup_wait_empty(dirfd, timeout_ms)
    if rc == -errno.EINTR:
        return rc
    return _cgroup_check(rc, "waiting on cgroup.events")


def cgroup_events_watch(dirfd: int) -> int:
    """A non-blocking inotify fd that turns readable when cgroup.events changes."""
    return _cgroup_check(lib.os_cgroup_events_watch(dirfd), "inotify on cgroup.events")


cgroup_events_drain: Any = lib.os_cgroup_events_drain


def keeper_start(watch_fd: int, kill_groups: bool, own_dirfd: int, name: bytes | None) -> int:
    """Forks the keeper (csrc/cgroup.c); returns its pid. ``own_dirfd`` -1
    (and ``name`` None): no cgroups, only the registered process groups."""
    rc = lib.os_keeper_start(watch_fd, int(kill_groups), own_dirfd, _NULL if name is None else name)
    return _cgroup_check(rc, "starting the keeper")


def keeper_groups_new() -> None:
    """A fresh table of process groups for the next keeper to kill."""
    _cgroup_check(lib.os_keeper_groups_new(), "mapping the keeper's table")


# (pgid, 1) registers a process group with the keeper, (pgid, 0) forgets it.
keeper_group_set: Any = lib.os_keeper_group_set


# --- redaction ----------------------------------------------------------------

REDACT_IGNORE_CASE: int = lib.OS_REDACT_IGNORE_CASE
_REDACT_E_COMPILE: int = lib.OS_REDACT_E_COMPILE
_REDACT_E_EMPTY_MATCH: int = lib.OS_REDACT_E_EMPTY_MATCH


class PatternSet:
    """An immutable compiled pattern set (``os_pattern_set``), shareable by
    redactors of many threads. Freed when the last reference goes away."""

    __slots__ = ("__weakref__", "_ptr", "size")

    def __init__(self, patterns: Sequence[bytes], literals: Sequence[bytes], flags: int) -> None:
        """Compile; raises ``ValueError`` naming the entry that does not compile
        (with the offset of the error) or that can match the empty string."""
        entries = [*patterns, *literals]
        keep = [ffi.new("char[]", e) for e in entries]
        pats = ffi.new("const char *[]", keep[: len(patterns)] or [ffi.NULL])
        plens = ffi.new("size_t[]", [len(p) for p in patterns] or [0])
        lits = ffi.new("const char *[]", keep[len(patterns) :] or [ffi.NULL])
        llens = ffi.new("size_t[]", [len(x) for x in literals] or [0])
        out = ffi.new("os_pattern_set **")
        idx = ffi.new("size_t *")
        off = ffi.new("size_t *")
        msg = ffi.new("char[256]")
        rc = lib.os_pattern_set_new(
            pats, plens, len(patterns), lits, llens, len(literals), flags, out, idx, off, msg, 256
        )
        if rc != 0:
            _raise_pattern_error(rc, entries, len(patterns), idx[0], off[0], ffi.string(msg))
        self._ptr = ffi.gc(out[0], lib.os_pattern_set_free)
        self.size = len(entries)

    @property
    def scanner(self) -> str:
        """The literal scan loop in use: ``scalar``, ``ssse3``, ``avx2`` or ``neon``
        (chosen from the CPU; ``OS_REDACT_SCAN=<name>`` forces a supported one)."""
        return str(ffi.string(lib.os_pattern_set_scanner(self._ptr)).decode())

    def anchor(self, index: int) -> tuple[int, int, int]:
        """(number of anchor literals, min offset, max offset) of entry ``index``;
        0 literals means the entry is searched without a prefilter. The
        offsets (bytes from the match start) are those of the literal's start,
        or of its end for a literal taken from a lookbehind (then usually
        <= 0): see :meth:`anchor_at_end`. ``IndexError`` for a bad index."""
        return self._anchor(index)[:3]

    def anchor_at_end(self, index: int) -> bool:
        """Whether the offsets of :meth:`anchor` locate the end of the literal
        (a lookbehind's literal, which precedes the match) rather than its start."""
        return self._anchor(index)[3]

    def _anchor(self, index: int) -> tuple[int, int, int, bool]:
        dmin = ffi.new("int32_t *")
        dmax = ffi.new("int32_t *")
        rel_end = ffi.new("int *")
        n = lib.os_pattern_set_anchor_ex(self._ptr, index, dmin, dmax, rel_end)
        if n < 0:
            raise IndexError(index)
        return int(n), int(dmin[0]), int(dmax[0]), bool(rel_end[0])


def _raise_pattern_error(
    rc: int, entries: list[bytes], n_patterns: int, index: int, offset: int, msg: bytes
) -> None:
    if rc == -errno.ENOMEM:
        raise MemoryError("orchestrator_spawn: out of memory compiling redaction patterns")
    kind = "pattern" if index < n_patterns else "literal"
    what = entries[index] if index < len(entries) else b"?"
    text = msg.decode("utf-8", "replace")
    if rc == _REDACT_E_EMPTY_MATCH:
        hint = " (or a look-ahead hides its width)" if "look-ahead" in text else ""
        raise ValueError(f"redaction {kind} {what!r} can match the empty string{hint}")
    if rc == _REDACT_E_COMPILE:
        raise ValueError(f"redaction {kind} {what!r} does not compile: {text} (at offset {offset})")
    raise OSError(-rc, f"os_pattern_set_new failed: {errno.errorcode.get(-rc, rc)}")


# CPython's bytes keep their data inline and fixed, so C may fill a fresh one
# through ffi.from_buffer; elsewhere the result goes through a cffi buffer.
_FILL_BYTES = sys.implementation.name == "cpython"


class NativeRedactor:
    """One stream's redactor (``os_redactor``): one thread at a time.

    ``feed``/``finish`` run in C with the GIL released and return the bytes
    decided so far. Raises ``MemoryError`` when the engine runs out of memory
    and ``ValueError`` after ``finish``."""

    __slots__ = ("_lenp", "_ptr", "_set")

    def __init__(self, pattern_set: PatternSet, replacement: bytes, max_hold: int) -> None:
        ptr = lib.os_redactor_new(pattern_set._ptr, replacement, len(replacement), max_hold)
        if ptr == ffi.NULL:
            raise MemoryError("orchestrator_spawn: out of memory creating a redactor")
        self._ptr = ffi.gc(ptr, lib.os_redactor_free)
        self._set = pattern_set  # the set must outlive the redactor
        self._lenp = ffi.new("size_t *")

    @staticmethod
    def _check(rc: int, call: str) -> None:
        if rc == -errno.ENOMEM:
            raise MemoryError(f"orchestrator_spawn: out of memory in {call}")
        if rc == -errno.EINVAL:
            raise ValueError(f"{call} after finish()")
        if rc != 0:
            raise OSError(-rc, f"{call} failed")

    def _take(self, rc: int, call: str) -> bytes:
        self._check(rc, call)
        ptr = lib.os_redactor_output(self._ptr, self._lenp)
        n = self._lenp[0]
        if n == 0:
            return b""
        data: bytes = ffi.buffer(ptr, n)[:]
        lib.os_redactor_consume(self._ptr, n)
        return data

    def feed(self, chunk: Any) -> bytes:
        """Feed a bytes-like chunk; returns the output decided so far."""
        with ffi.from_buffer(chunk) as buf:
            rc = lib.os_redactor_feed(self._ptr, buf, len(buf))
        return self._take(rc, "os_redactor_feed")

    def finish(self) -> bytes:
        """End of stream; returns the rest of the output."""
        return self._take(lib.os_redactor_finish(self._ptr), "os_redactor_finish")

    def abort(self) -> bytes:
        """The stream was cut short; returns the rest of the output, what is
        still held becoming one replacement (``os_redactor_abort``)."""
        return self._take(lib.os_redactor_abort(self._ptr), "os_redactor_abort")

    def redact_whole(self, data: Any) -> bytes:
        """Redact all of ``data`` and end the stream, on a fresh redactor.

        The engine first matches the whole buffer (in cache-sized pieces, in
        place) and records what the output is made of; the result is then
        allocated once at its final size and written once, instead of going
        through the engine's buffer, a copy and a concatenation.

        Both steps read ``data``: a writable buffer is copied first, so that
        a change to it in between cannot put unmatched bytes in the output."""
        if not isinstance(data, bytes):
            with memoryview(data) as view:
                if not view.readonly:
                    data = view.tobytes()
        with ffi.from_buffer(data) as buf:
            rc = lib.os_redactor_plan(self._ptr, buf, len(buf), self._lenp)
            self._check(rc, "os_redactor_plan")
            n = self._lenp[0]
            if n < 2 or not _FILL_BYTES:
                out = ffi.new("uint8_t[]", max(n, 1))
                lib.os_redactor_write_plan(self._ptr, buf, out)
                small: bytes = ffi.buffer(out, n)[:]
                return small
            # A fresh bytes object of n >= 2 bytes (never a shared singleton),
            # filled before anything else can see it: the one copy.
            result = bytes(n)
            with ffi.from_buffer(result) as dst:
                lib.os_redactor_write_plan(self._ptr, buf, dst)
            return result

    @property
    def held(self) -> int:
        """Bytes fed but not yet decided."""
        return int(lib.os_redactor_held(self._ptr))


# --- pump ---------------------------------------------------------------------

PUMP_SINK_DISCARD: int = lib.OS_PUMP_SINK_DISCARD
PUMP_SINK_MEMORY: int = lib.OS_PUMP_SINK_MEMORY
PUMP_SINK_PATH: int = lib.OS_PUMP_SINK_PATH
PUMP_SOURCE_PIPE: int = lib.OS_PUMP_SOURCE_PIPE
PUMP_MAX_STREAMS: int = lib.OS_PUMP_MAX_STREAMS
PUMP_STAGES: dict[int, str] = _names(lib.os_pump_stage_name)


_PUMP_PARTS: dict[int, str] = _names(lib.os_pump_part_name)


def _pump_os_error(rc: int, what: str) -> OSError:
    err = -rc
    return OSError(err, f"pump: {what} failed: {os.strerror(err)}")


class PumpRedaction:
    """The C side of one redaction configuration, built once and shared.

    ``patterns`` is an ``os_pattern_set *`` cdata owned by ``owner`` (kept
    referenced by every capture using it); ``replacement`` a C copy of the
    replacement bytes (the redactors copy it again); ``max_hold`` in bytes.
    """

    __slots__ = ("max_hold", "owner", "patterns", "replacement", "replacement_len")

    def __init__(self, owner: Any, patterns: Any, replacement: bytes, max_hold: int) -> None:
        self.owner = owner
        self.patterns = patterns
        self.replacement = ffi.new("uint8_t[]", replacement or b"\0")
        self.replacement_len = len(replacement)
        self.max_hold = max_hold


class PumpStreamSpec(NamedTuple):
    """One stream for ``pump_capture_start``.

    ``src_fd`` (unless ``PUMP_SOURCE_PIPE``: the pump makes a new pipe),
    ``sink_fd`` (unless a ``PUMP_SINK_*`` value) and ``tee_fd`` (unless -1)
    are handed over to the pump on success. With ``PUMP_SINK_PATH`` the pump
    opens ``sink_path`` (created or truncated). ``redaction`` None passes
    bytes through unchanged.
    """

    src_fd: int
    sink_fd: int = PUMP_SINK_DISCARD
    tee_fd: int = -1
    redaction: PumpRedaction | None = None
    sink_path: bytes | None = None


class PumpStreamStats(NamedTuple):
    """Counters of one pumped stream (bytes); ``error`` is an errno or 0.

    A named tuple: one is made per stream of every finished capture.
    """

    bytes_read: int
    bytes_written: int
    bytes_teed: int
    error: int
    stage: str


class PumpCapture:
    """The native capture handle; released when this object is collected."""

    __slots__ = ("_keepalive", "_ptr", "id", "n_streams")

    def __init__(self, ptr: Any, capture_id: int, n_streams: int, keepalive: Any) -> None:
        self._ptr = ffi.gc(ptr, lib.os_pump_capture_release)
        self._keepalive = keepalive
        self.id = capture_id
        self.n_streams = n_streams

    def truncate(self) -> None:
        """The streams will end early (see ``os_pump_capture_truncate``)."""
        lib.os_pump_capture_truncate(self._ptr)

    def watch_child(self, pid: int) -> None:
        """The streams are child ``pid``'s (see ``os_pump_capture_watch_child``)."""
        lib.os_pump_capture_watch_child(self._ptr, pid)

    def child_exit(self, killed: bool) -> None:
        """The watched child was reaped (``os_pump_capture_child_exit``)."""
        lib.os_pump_capture_child_exit(self._ptr, int(killed))

    def abort(self) -> None:
        """Stop waiting for end of file (see ``os_pump_capture_abort``)."""
        rc = lib.os_pump_capture_abort(self._ptr)
        if rc < 0:
            raise _pump_os_error(rc, "abort")

    def done(self) -> bool:
        return bool(lib.os_pump_capture_done(self._ptr))

    def wait(self, timeout: float | None) -> bool:
        """Block (GIL released) up to ``timeout`` seconds; True once done."""
        timeout_ms = -1 if timeout is None else max(0, int(timeout * 1000))
        rc = lib.os_pump_capture_wait(self._ptr, timeout_ms)
        if rc == -errno.ETIMEDOUT:
            return False
        if rc == -errno.ECHILD:
            raise RuntimeError(
                "pump: this capture belongs to the parent process; it cannot be "
                "waited for after fork()"
            )
        if rc < 0:
            raise _pump_os_error(rc, "wait")
        return True

    def stats(self, index: int) -> PumpStreamStats:
        out = ffi.new("os_pump_stream_stats *")
        rc = lib.os_pump_capture_stats(self._ptr, index, out)
        if rc < 0:
            raise _pump_os_error(rc, "stats")
        return PumpStreamStats(
            bytes_read=int(out.bytes_read),
            bytes_written=int(out.bytes_written),
            bytes_teed=int(out.bytes_teed),
            error=int(out.error),
            stage=PUMP_STAGES.get(int(out.stage), str(out.stage)),
        )

    def stats_all(self) -> list[PumpStreamStats]:
        """Counters of every stream, in order (one consistent call)."""
        out = ffi.new("os_pump_stream_stats[]", self.n_streams)
        n = lib.os_pump_capture_stats_all(self._ptr, out)
        stats = []
        for i in range(n):
            raw = out[i]
            stage = raw.stage
            stats.append(
                PumpStreamStats(
                    raw.bytes_read,
                    raw.bytes_written,
                    raw.bytes_teed,
                    raw.error,
                    PUMP_STAGES[stage] if stage in PUMP_STAGES else str(stage),
                )
            )
        return stats

    def memory(self, index: int) -> bytes:
        """The bytes kept by a ``PUMP_SINK_MEMORY`` stream (once done)."""
        data = ffi.new("const uint8_t **")
        length = ffi.new("size_t *")
        rc = lib.os_pump_capture_memory(self._ptr, index, data, length)
        if rc < 0:
            raise _pump_os_error(rc, "reading the in-memory sink")
        if length[0] == 0:
            return b""
        return bytes(ffi.buffer(data[0], length[0]))


def pump_capture_start(specs: Sequence[PumpStreamSpec]) -> tuple[PumpCapture, list[int]]:
    """Start pumping ``specs``; returns the handle and, per spec, the write
    end of the pipe the pump made (``PUMP_SOURCE_PIPE``; the caller owns it)
    or -1. Raises ``OSError`` (the given fds stay the caller's, nothing the
    pump made is left open).
    """
    n = len(specs)
    if not 1 <= n <= PUMP_MAX_STREAMS:
        raise ValueError(f"pump: 1 to {PUMP_MAX_STREAMS} streams per capture, got {n}")
    c_specs = ffi.new("os_pump_stream_spec[]", n)
    keepalive: list[Any] = []  # the paths' C strings, only for the call
    # The pattern sets must outlive the capture (the redactors use them):
    # the one they all share, or the list of them.
    owner: Any = None
    for c_spec, (src_fd, sink_fd, tee_fd, redaction, sink_path) in zip(c_specs, specs, strict=True):
        c_spec.src_fd = src_fd
        c_spec.sink_fd = sink_fd
        c_spec.tee_fd = tee_fd
        if sink_path is not None:
            path = ffi.new("char[]", sink_path)
            keepalive.append(path)
            c_spec.sink_path = path
        if redaction is not None:
            c_spec.patterns = redaction.patterns
            c_spec.replacement = redaction.replacement
            c_spec.replacement_len = redaction.replacement_len
            c_spec.max_hold = redaction.max_hold
            if owner is None:
                owner = redaction.owner
            elif owner is not redaction.owner:
                owner = [spec.redaction.owner for spec in specs if spec.redaction is not None]
    capture_id = ffi.new("uint64_t *")
    out = ffi.new("os_pump_capture **")
    rc = lib.os_pump_capture_start(c_specs, n, capture_id, out)
    if rc < 0:
        for c_spec, spec in zip(c_specs, specs, strict=True):
            part = c_spec.failed_part
            if part == lib.OS_PUMP_PART_SINK and spec.sink_path is not None:
                # As os.open would say it: errno, message and the path.
                raise OSError(-rc, os.strerror(-rc), os.fsdecode(spec.sink_path))
            if part != lib.OS_PUMP_PART_NONE:
                what = _PUMP_PARTS.get(part, "a stream")
                raise _pump_os_error(rc, f"starting a capture ({what} of stream {spec.src_fd})")
        raise _pump_os_error(rc, "starting a capture")
    capture = PumpCapture(out[0], capture_id[0], n, owner if owner is not None else [])
    return capture, [
        c_spec.pipe_w if spec.src_fd == PUMP_SOURCE_PIPE else -1
        for c_spec, spec in zip(c_specs, specs, strict=True)
    ]


def pump_notify_fd() -> int:
    """The fd that is readable while finished capture ids wait (starts the pump)."""
    fd = int(lib.os_pump_notify_fd())
    if fd < 0:
        raise _pump_os_error(fd, "starting the reactor")
    return fd


_DONE_BATCH = 256


def pump_done_pending() -> int:
    """How many finished capture ids ``pump_take_done`` would return (cheap)."""
    return int(lib.os_pump_done_pending())


def pump_take_done() -> list[int]:
    """Ids of the captures finished since the last call (resets the notify fd)."""
    ids: list[int] = []
    buf = ffi.new("uint64_t[]", _DONE_BATCH)
    while True:
        n = int(lib.os_pump_take_done(buf, _DONE_BATCH))
        ids.extend(int(buf[i]) for i in range(n))
        if n < _DONE_BATCH:
            return ids


def pump_active_captures() -> int:
    """How many captures the reactor is pumping right now."""
    return int(lib.os_pump_active_captures())


# --- sandbox ------------------------------------------------------------------

SANDBOX_NET_INHERIT: int = lib.OS_SANDBOX_NET_INHERIT
SANDBOX_NET_DENY: int = lib.OS_SANDBOX_NET_DENY
SANDBOX_NET_ALLOWLIST: int = lib.OS_SANDBOX_NET_ALLOWLIST
SANDBOX_ACCESS_READ: int = lib.OS_SANDBOX_ACCESS_READ
SANDBOX_ACCESS_WRITE: int = lib.OS_SANDBOX_ACCESS_WRITE
SANDBOX_ACCESS_DEVICE: int = lib.OS_SANDBOX_ACCESS_DEVICE
SANDBOX_PROBE_USERNS: int = lib.OS_SANDBOX_PROBE_USERNS
SANDBOX_PROBE_LANDLOCK: int = lib.OS_SANDBOX_PROBE_LANDLOCK
SANDBOX_PROBE_SECCOMP: int = lib.OS_SANDBOX_PROBE_SECCOMP

# OS_SANDBOX_STEP_* -> the words used in error messages (named in C).
SANDBOX_STEPS: dict[int, str] = _names(lib.os_sandbox_step_name)


def _sandbox_check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def sandbox_landlock_abi() -> int:
    """The kernel's Landlock ABI version (>= 1); raises OSError when absent."""
    return _sandbox_check(lib.os_sandbox_landlock_abi(), "landlock_create_ruleset(VERSION)")


def sandbox_probe(what: int, scratch_dir: str) -> tuple[int, str]:
    """Try one feature (SANDBOX_PROBE_*) in a throwaway child.

    Returns ``(0, "")`` when it works, else ``(errno, failing step)``.
    ``scratch_dir`` is an existing absolute directory the user-namespace probe
    bind-mounts read-only in its own (private, short-lived) mount namespace.
    """
    step = ffi.new("int *")
    rc = lib.os_sandbox_probe(what, os.fsencode(scratch_dir), step)
    if rc == 0:
        return 0, ""
    return -rc, SANDBOX_STEPS.get(step[0], f"step {step[0]}")


def sandbox_plan_new() -> Any:
    """A new native plan (cffi ``os_sandbox_plan *``) freed on GC or ``ffi.release``."""
    plan = lib.os_sandbox_plan_new()
    if plan == ffi.NULL:
        raise MemoryError("os_sandbox_plan_new")
    return ffi.gc(plan, lib.os_sandbox_plan_free)


def sandbox_plan_use_userns(plan: Any, uid: int, gid: int, *, new_netns: bool) -> None:
    """Make the child enter user + mount (+ network) namespaces, ids mapped to themselves."""
    _sandbox_check(
        lib.os_sandbox_plan_use_userns(plan, uid, gid, int(new_netns)), "sandbox plan: userns"
    )


def sandbox_plan_add_readonly_bind(plan: Any, path: str) -> None:
    """Bind-mount the absolute ``path`` read-only onto itself in the child."""
    _check_no_nul(path)
    _sandbox_check(
        lib.os_sandbox_plan_add_readonly_bind(plan, os.fsencode(path)),
        f"sandbox plan: read-only bind {path!r}",
    )


def sandbox_plan_add_pinned_dir(plan: Any, path: str) -> None:
    """Bind-mount the absolute directory ``path`` onto itself (it cannot be renamed then)."""
    _check_no_nul(path)
    _sandbox_check(
        lib.os_sandbox_plan_add_pinned_dir(plan, os.fsencode(path)),
        f"sandbox plan: pinned directory {path!r}",
    )


def sandbox_plan_set_readonly_tree(plan: Any) -> None:
    """Make every mount read-only in the child but the writable mounts added."""
    _sandbox_check(lib.os_sandbox_plan_set_readonly_tree(plan), "sandbox plan: read-only tree")


def sandbox_plan_add_writable_mount(plan: Any, path: str) -> None:
    """Keep the absolute ``path`` (and beneath) writable under the read-only tree."""
    _check_no_nul(path)
    _sandbox_check(
        lib.os_sandbox_plan_add_writable_mount(plan, os.fsencode(path)),
        f"sandbox plan: writable mount {path!r}",
    )


def sandbox_plan_set_private_ptys(plan: Any) -> None:
    """Mount a new devpts instance on /dev/pts in the child."""
    _sandbox_check(lib.os_sandbox_plan_set_private_ptys(plan), "sandbox plan: private ptys")


def sandbox_plan_inherited_fd(plan: Any) -> int:
    """The fd the spawn must keep open in the child for the plan (-1: none)."""
    return int(lib.os_sandbox_plan_inherited_fd(plan))


def sandbox_plan_set_landlock(plan: Any, abi: int, *, restrict_fs: bool) -> None:
    """Apply a Landlock ruleset of ``abi``; with ``restrict_fs`` only path rules grant access."""
    _sandbox_check(
        lib.os_sandbox_plan_set_landlock(plan, abi, int(restrict_fs)), "sandbox plan: Landlock"
    )


def sandbox_plan_add_path_rule(plan: Any, path: str, access: int) -> None:
    """Grant ``access`` (SANDBOX_ACCESS_* bits) on the absolute ``path`` and beneath."""
    _check_no_nul(path)
    _sandbox_check(
        lib.os_sandbox_plan_add_path_rule(plan, os.fsencode(path), access),
        f"sandbox plan: path rule {path!r}",
    )


def sandbox_plan_set_network(
    plan: Any, mode: int, *, proxy_port: int = 0, handoff_fd: int = -1
) -> None:
    """Set the network mode (SANDBOX_NET_*); allowlist needs the port and the
    handoff fd (a socketpair end > 2, kept open in the child by the spawn)."""
    _sandbox_check(
        lib.os_sandbox_plan_set_network(plan, mode, proxy_port, handoff_fd),
        "sandbox plan: network",
    )


def sandbox_plan_set_seccomp(
    plan: Any, *, deny_ip_sockets: bool, allow_inet_only: bool, deny_metadata: bool = False
) -> None:
    """Build the seccomp filter the child installs right before exec."""
    _sandbox_check(
        lib.os_sandbox_plan_set_seccomp(
            plan, int(deny_ip_sockets), int(allow_inet_only), int(deny_metadata)
        ),
        "sandbox plan: seccomp",
    )


def _check_no_nul(text: str) -> None:
    if "\0" in text:
        raise ValueError(f"embedded NUL byte in {text!r}")


# --- doctor -------------------------------------------------------------------

# (os is imported at the top.)

_DOCTOR_TEXT = 256


def doctor_kernel_probe(name: str) -> int:
    """Try one kernel feature the spawn core uses; 0 when it works, else the errno.

    ``name``: ``"pidfd_open"``, ``"close_range"`` or ``"clone_pidfd"`` (a
    real ``clone(CLONE_PIDFD)`` of a child that exits at once and is reaped).
    Other platforms than Linux report ``ENOSYS``. Raises ``KeyError`` for an
    unknown name.
    """
    probes = {
        "pidfd_open": lib.os_doctor_pidfd_open,
        "close_range": lib.os_doctor_close_range,
        "clone_pidfd": lib.os_doctor_clone_pidfd,
    }
    return -int(probes[name]())


def _doctor_text(call: Any) -> str:
    buf = ffi.new("char[]", _DOCTOR_TEXT)
    rc = call(buf, _DOCTOR_TEXT)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return bytes(ffi.string(buf)).decode("ascii", "replace")


def doctor_pcre2() -> tuple[str, bool, bool, str]:
    """The linked PCRE2: ``(version, JIT built in, JIT usable here, JIT target)``.

    "Usable" means JIT-compiling a trivial pattern succeeded (it fails where
    the system refuses executable memory). Raises ``MemoryError``.
    """
    works = int(lib.os_doctor_pcre2_jit_works())
    if works < 0:
        raise MemoryError("orchestrator_spawn: out of memory probing the PCRE2 JIT")
    return (
        _doctor_text(lib.os_doctor_pcre2_version),
        bool(lib.os_doctor_pcre2_jit_built()),
        bool(works),
        _doctor_text(lib.os_doctor_pcre2_jit_target),
    )
