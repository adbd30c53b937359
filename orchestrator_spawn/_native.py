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


def _string_array(items: list[bytes]) -> tuple[Any, Any]:
    """A NULL-terminated ``char *[]`` over ``items`` (and the buffer it points into).

    The caller has already refused embedded NUL bytes; the C side re-checks.
    """
    block = b"\0".join(items) + b"\0" if items else b""
    buffer = ffi.from_buffer("char[]", block)
    array = ffi.new("char *[]", len(items) + 1)
    if lib.os_split_strings(buffer, len(block), array, len(items)) != len(items):
        raise ValueError("embedded null byte")
    return array, (block, buffer)


def native_spawn(
    *,
    program: bytes,
    search_path: bytes | None,
    argv: list[bytes],
    envp: list[bytes],
    cwd: bytes | None,
    stdio: tuple[int, int, int],
    pass_fds: tuple[int, ...],
    new_process_group: bool,
    rlimits: tuple[int, int, int, int],
    sandbox_plan: Any,
    want_pidfd: bool,
) -> tuple[int, int]:
    """Forks and execs through ``os_spawn`` (GIL released); returns ``(pid, pidfd)``.

    ``pidfd`` is -1 when not asked for or not supported by the kernel. Raises
    ``SpawnError`` (with ``.stage``, ``.errno``, ``.program``) when the child
    failed before exec or the fork itself failed; no child is left behind then.
    """
    c_argv, argv_keep = _string_array(argv)
    c_envp, envp_keep = _string_array(envp)
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

SANDBOX_NET_INHERIT: int = lib.OS_SANDBOX_NET_INHERIT
SANDBOX_NET_DENY: int = lib.OS_SANDBOX_NET_DENY
SANDBOX_NET_ALLOWLIST: int = lib.OS_SANDBOX_NET_ALLOWLIST
SANDBOX_ACCESS_READ: int = lib.OS_SANDBOX_ACCESS_READ
SANDBOX_ACCESS_WRITE: int = lib.OS_SANDBOX_ACCESS_WRITE
SANDBOX_ACCESS_DEVICE: int = lib.OS_SANDBOX_ACCESS_DEVICE
SANDBOX_PROBE_USERNS: int = lib.OS_SANDBOX_PROBE_USERNS
SANDBOX_PROBE_LANDLOCK: int = lib.OS_SANDBOX_PROBE_LANDLOCK
SANDBOX_PROBE_SECCOMP: int = lib.OS_SANDBOX_PROBE_SECCOMP

# OS_SANDBOX_STEP_* -> the words used in error messages.
SANDBOX_STEPS: dict[int, str] = {
    0: "exec",
    -1: "setrlimit",
    lib.OS_SANDBOX_STEP_FORK: "fork",
    lib.OS_SANDBOX_STEP_UNSHARE: "unshare(user, mount, net namespaces)",
    lib.OS_SANDBOX_STEP_SETGROUPS: "write /proc/self/setgroups",
    lib.OS_SANDBOX_STEP_UID_MAP: "write /proc/self/uid_map",
    lib.OS_SANDBOX_STEP_GID_MAP: "write /proc/self/gid_map",
    lib.OS_SANDBOX_STEP_MOUNT_PRIVATE: "make mounts private",
    lib.OS_SANDBOX_STEP_BIND_READONLY: "bind-mount read-only",
    lib.OS_SANDBOX_STEP_LOOPBACK: "bring loopback up",
    lib.OS_SANDBOX_STEP_NO_NEW_PRIVS: "prctl(PR_SET_NO_NEW_PRIVS)",
    lib.OS_SANDBOX_STEP_LANDLOCK: "Landlock",
    lib.OS_SANDBOX_STEP_SECCOMP: "seccomp filter",
    lib.OS_SANDBOX_STEP_PROXY_HANDOFF: "hand the proxy listener to the parent",
    lib.OS_SANDBOX_STEP_CAPABILITIES: "drop capabilities",
}


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
    plan: Any, mode: int, *, proxy_port: int = 0, handoff_path: str | None = None
) -> None:
    """Set the network mode (SANDBOX_NET_*); allowlist needs the port and handoff socket."""
    path = ffi.NULL if handoff_path is None else os.fsencode(handoff_path)
    _sandbox_check(
        lib.os_sandbox_plan_set_network(plan, mode, proxy_port, path), "sandbox plan: network"
    )


def sandbox_plan_set_seccomp(plan: Any, *, deny_ip_sockets: bool, allow_inet_only: bool) -> None:
    """Build the seccomp filter the child installs right before exec."""
    _sandbox_check(
        lib.os_sandbox_plan_set_seccomp(plan, int(deny_ip_sockets), int(allow_inet_only)),
        "sandbox plan: seccomp",
    )


def sandbox_test_spawn(plan: Any, argv: list[str], env: dict[str, str], *, nproc: int = 0) -> int:
    """TEST ONLY: fork, apply ``plan`` as the spawn core would, exec ``argv[0]`` (a path).

    Returns the pid (reap it with ``os.waitpid``). Raises OSError whose message
    names the failing step when the child fails before exec.
    """
    for item in [*argv, *env, *env.values()]:
        _check_no_nul(item)
    c_args = [ffi.new("char[]", os.fsencode(a)) for a in argv]
    c_env = [ffi.new("char[]", os.fsencode(f"{k}={v}")) for k, v in env.items()]
    argv_arr = ffi.new("char *[]", [*c_args, ffi.NULL])
    env_arr = ffi.new("char *[]", [*c_env, ffi.NULL])
    step = ffi.new("int *")
    rc = lib.os_sandbox_test_spawn(plan, argv_arr, env_arr, nproc, step)
    if rc < 0:
        where = SANDBOX_STEPS.get(step[0], f"step {step[0]}")
        raise OSError(-rc, f"sandbox child failed at {where}: {os.strerror(-rc)}")
    return int(rc)


def _check_no_nul(text: str) -> None:
    if "\0" in text:
        raise ValueError(f"embedded NUL byte in {text!r}")
