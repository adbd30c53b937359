"""The Linux sandbox (``csrc/sandbox*.c``): plans applied in the child between
fork and exec, and the probes of what the kernel offers."""

from __future__ import annotations

import os
from typing import Any

from orchestrator_spawn._native import check, check_no_nul, enum_names, ffi, lib

SANDBOX_NET_DENY: int = lib.OS_SANDBOX_NET_DENY
SANDBOX_NET_ALLOWLIST: int = lib.OS_SANDBOX_NET_ALLOWLIST
SANDBOX_ACCESS_READ: int = lib.OS_SANDBOX_ACCESS_READ
SANDBOX_ACCESS_WRITE: int = lib.OS_SANDBOX_ACCESS_WRITE
SANDBOX_ACCESS_DEVICE: int = lib.OS_SANDBOX_ACCESS_DEVICE
SANDBOX_PROBE_USERNS: int = lib.OS_SANDBOX_PROBE_USERNS
SANDBOX_PROBE_LANDLOCK: int = lib.OS_SANDBOX_PROBE_LANDLOCK
SANDBOX_PROBE_SECCOMP: int = lib.OS_SANDBOX_PROBE_SECCOMP

# OS_SANDBOX_STEP_* -> the words used in error messages (named in C, next to them).
SANDBOX_STEPS: dict[int, str] = enum_names(lib.os_sandbox_step_name)


def sandbox_landlock_abi() -> int:
    """The kernel's Landlock ABI version (>= 1); raises OSError when absent."""
    return check(lib.os_sandbox_landlock_abi(), "landlock_create_ruleset(VERSION)")


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


class SandboxPlan:
    """A native sandbox plan (``os_sandbox_plan``), opaque: built through its
    methods in the parent, handed to a spawn (``spawn(_sandbox_plan=...)``),
    which the child applies between fork and exec.

    ``close()`` frees it (idempotent; also on collection, or as a context
    manager); a closed plan raises ``ValueError`` when used. Each builder
    raises ``OSError`` (errno and the step) where the C side refused.
    """

    __slots__ = ("__weakref__", "_plan")

    def __init__(self) -> None:
        plan = lib.os_sandbox_plan_new()
        if plan == ffi.NULL:
            raise MemoryError("os_sandbox_plan_new")
        self._plan: Any = ffi.gc(plan, lib.os_sandbox_plan_free)

    def handle(self) -> Any:
        """The cffi pointer, for :func:`orchestrator_spawn._native.spawn.spawn_packed`
        only. Raises ``ValueError`` once closed."""
        plan = self._plan
        if plan is None:
            raise ValueError("the sandbox plan is closed")
        return plan

    @property
    def closed(self) -> bool:
        return self._plan is None

    def close(self) -> None:
        """Free the plan now (idempotent)."""
        plan, self._plan = self._plan, None
        if plan is not None:
            ffi.release(plan)

    def __enter__(self) -> SandboxPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SandboxPlan {'closed' if self._plan is None else 'open'}>"

    def use_userns(self, uid: int, gid: int, *, new_netns: bool) -> None:
        """Make the child enter user + mount (+ network) namespaces, ids mapped to themselves."""
        check(
            lib.os_sandbox_plan_use_userns(self.handle(), uid, gid, int(new_netns)),
            "sandbox plan: userns",
        )

    def _add_path(self, add: Any, what: str, path: str, *args: int) -> None:
        check_no_nul(path)
        check(add(self.handle(), os.fsencode(path), *args), f"sandbox plan: {what} {path!r}")

    def add_readonly_bind(self, path: str) -> None:
        """Bind-mount the absolute ``path`` read-only onto itself in the child."""
        self._add_path(lib.os_sandbox_plan_add_readonly_bind, "read-only bind", path)

    def add_pinned_dir(self, path: str) -> None:
        """Bind-mount the absolute directory ``path`` onto itself (it cannot be renamed then)."""
        self._add_path(lib.os_sandbox_plan_add_pinned_dir, "pinned directory", path)

    def set_readonly_tree(self) -> None:
        """Make every mount read-only in the child but the writable mounts added."""
        check(lib.os_sandbox_plan_set_readonly_tree(self.handle()), "sandbox plan: read-only tree")

    def add_writable_mount(self, path: str) -> None:
        """Keep the absolute ``path`` (and beneath) writable under the read-only tree."""
        self._add_path(lib.os_sandbox_plan_add_writable_mount, "writable mount", path)

    def set_private_ptys(self) -> None:
        """Mount a new devpts instance on /dev/pts in the child."""
        check(lib.os_sandbox_plan_set_private_ptys(self.handle()), "sandbox plan: private ptys")

    def inherited_fd(self) -> int:
        """The fd the spawn must keep open in the child for the plan (-1: none)."""
        return int(lib.os_sandbox_plan_inherited_fd(self.handle()))

    def set_landlock(self, abi: int, *, restrict_fs: bool) -> None:
        """Apply a Landlock ruleset of ``abi``; with ``restrict_fs`` only path
        rules grant access."""
        check(
            lib.os_sandbox_plan_set_landlock(self.handle(), abi, int(restrict_fs)),
            "sandbox plan: Landlock",
        )

    def add_path_rule(self, path: str, access: int) -> None:
        """Grant ``access`` (SANDBOX_ACCESS_* bits) on the absolute ``path`` and beneath."""
        self._add_path(lib.os_sandbox_plan_add_path_rule, "path rule", path, access)

    def set_network(self, mode: int, *, proxy_port: int = 0, handoff_fd: int = -1) -> None:
        """Set the network mode (SANDBOX_NET_*); allowlist needs the port and the
        handoff fd (a socketpair end > 2, kept open in the child by the spawn)."""
        check(
            lib.os_sandbox_plan_set_network(self.handle(), mode, proxy_port, handoff_fd),
            "sandbox plan: network",
        )

    def set_seccomp(
        self, *, deny_ip_sockets: bool, allow_inet_only: bool, deny_metadata: bool = False
    ) -> None:
        """Build the seccomp filter the child installs right before exec."""
        check(
            lib.os_sandbox_plan_set_seccomp(
                self.handle(), int(deny_ip_sockets), int(allow_inet_only), int(deny_metadata)
            ),
            "sandbox plan: seccomp",
        )
