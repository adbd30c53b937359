"""The only module that imports the cffi ``ffi``/``lib`` of the C core.

It checks arguments before each call, and turns the C core's return codes
(0 or -errno, plus a stage) into this package's exceptions in one place.
Sections below belong to the parts of the core: keep each part's wrappers in
its own section.
"""

from __future__ import annotations

import os
from typing import Any

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
