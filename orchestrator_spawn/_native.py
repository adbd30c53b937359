"""The only module that imports the cffi ``ffi``/``lib`` of the C core.

It checks arguments before each call, and turns the C core's return codes
(0 or -errno, plus a stage) into this package's exceptions in one place.
Sections below belong to the parts of the core: keep each part's wrappers in
its own section.
"""

from __future__ import annotations

import os
from typing import Any

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

# --- spawn --------------------------------------------------------------------

_STAGE_NAMES = {
    lib.OS_STAGE_CHDIR: "chdir",
    lib.OS_STAGE_SETPGID: "setpgid",
    lib.OS_STAGE_SETRLIMIT: "setrlimit",
    lib.OS_STAGE_DUP2: "dup2",
    lib.OS_STAGE_SANDBOX: "sandbox",
    lib.OS_STAGE_EXEC: "exec",
    lib.OS_STAGE_FORK: "fork",
}

FD_INHERIT: int = lib.OS_SPAWN_FD_INHERIT
FD_DEVNULL: int = lib.OS_SPAWN_FD_DEVNULL


def _string_array(block: bytes, count: int) -> tuple[Any, Any]:
    """A NULL-terminated ``char *[]`` over the ``count`` NUL-terminated strings
    packed in ``block``, and the buffer it points into (keep both alive).

    Raises ``ValueError`` if ``block`` holds another number of strings (a
    string with an embedded NUL byte)."""
    buffer = ffi.from_buffer("char[]", block)
    array = ffi.new("char *[]", count + 1)
    if lib.os_split_strings(buffer, len(block), array, count) != count:
        raise ValueError("embedded null byte")
    return array, buffer


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
) -> tuple[int, int]:
    """Forks and execs through ``os_spawn`` (GIL released); returns ``(pid, pidfd)``.

    ``argv_block``/``env_block`` hold ``argc``/``envc`` NUL-terminated strings
    back to back (``b"a\\0b\\0"``); ``env_block=None`` passes the process's
    own C ``environ`` (what ``os.environ`` writes through to), like subprocess.

    ``pidfd`` is -1 when not asked for or not supported by the kernel.
    ``force_fork`` (tests) takes the real-fork path a sandbox plan takes. Raises
    ``SpawnError`` (with ``.stage``, ``.errno``, ``.program``) when the child
    failed before exec or the fork itself failed; no child is left behind then.
    """
    c_argv, argv_keep = _string_array(argv_block, argc)
    if env_block is None:
        c_envp, envp_keep = ffi.NULL, None
    else:
        c_envp, envp_keep = _string_array(env_block, envc)
    c_program = ffi.new("char[]", program)
    c_search = ffi.new("char[]", search_path) if search_path is not None else ffi.NULL
    c_cwd = ffi.new("char[]", cwd) if cwd is not None else ffi.NULL
    c_pass = ffi.new("int[]", list(pass_fds)) if pass_fds else ffi.NULL

    request = ffi.new("os_spawn_request *")
    request.file = c_program
    request.search_path = c_search
    request.argv = c_argv
    request.envp = c_envp
    request.cwd = c_cwd
    request.stdio = list(stdio)
    request.pass_fds = c_pass
    request.n_pass_fds = len(pass_fds)
    request.new_process_group = 1 if new_process_group else 0
    request.rlimits = list(rlimits)
    request.sandbox = sandbox_plan if sandbox_plan is not None else ffi.NULL
    request.want_pidfd = 1 if want_pidfd else 0
    request.force_fork = 1 if force_fork else 0
    result = ffi.new("os_spawn_result *")

    rc = lib.os_spawn(request, result)
    # The buffers must outlive the call: keep them referenced until here.
    del argv_keep, envp_keep, c_program, c_search, c_cwd, c_pass
    if rc != 0:
        stage = _STAGE_NAMES.get(result.stage, "exec")
        name = os.fsdecode(program)
        err = result.error
        raise SpawnError(
            err,
            f"cannot spawn {name!r}: {stage} failed: {os.strerror(err)} (errno {err})",
            stage=stage,
            program=name,
        )
    return int(result.pid), int(result.pidfd)


def install_sigchld_wakeup(fd: int) -> None:
    """Makes SIGCHLD write one byte to ``fd`` (non-blocking), chaining to the
    previous handler. Raises ``OSError`` if ``sigaction`` fails."""
    rc = lib.os_sigchld_install(fd)
    if rc != 0:
        raise OSError(-rc, f"cannot install the SIGCHLD handler: {os.strerror(-rc)}")


# --- redaction ----------------------------------------------------------------


# --- pump ---------------------------------------------------------------------


# --- sandbox ------------------------------------------------------------------
