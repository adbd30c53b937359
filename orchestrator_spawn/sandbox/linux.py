"""The Linux backend: probe the kernel once, then build native plans.

What a sandbox profile needs, and from which kernel feature:

- filesystem scoping (fs_mode != inherit): Landlock (required). Read and
  execute everywhere; write only beneath the writable paths and to
  ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/tty``, ``/dev/ptmx``,
  ``/dev/pts``.
- every sandbox profile: a user + mount namespace (required). In it /dev/pts
  is a new devpts instance (other sessions' terminals cannot be opened; the
  job's own terminal stays reachable through its fds and /dev/tty), and
  under fs scoping the whole mount tree is read-only except the writable
  paths, so inode metadata (mode, owner, times, xattrs) outside them cannot
  change by path (EROFS): Landlock has no right for metadata.
- metadata under workspace_readonly: seccomp refuses every metadata call,
  path and fd forms (so fds inherited from outside and /proc/self/fd/N are
  covered too); under every profile, setting a setuid/setgid bit.
- readable_paths inside writable_paths: a read-only bind mount, because
  Landlock rights only add up and cannot take write access away below a
  writable directory, and every directory between the writable root and the
  readable path bind-mounted onto itself, because a mount point cannot be
  renamed or removed: the path keeps naming the same file on the host.
- other processes: seccomp lets prlimit, setpriority, sched_set*,
  ioprio_set, migrate_pages, move_pages and get_robust_list act on the
  caller only (pid 0), and refuses kcmp, process_madvise, process_mrelease,
  process_vm_readv/writev, pidfd_getfd and ptrace.
- network deny: seccomp (required: ``socket()`` for any family but AF_UNIX
  fails with EPERM, so TCP, UDP, IPv4, IPv6, raw and netlink are covered); an
  empty network namespace and Landlock TCP rules (ABI >= 4) on top when the
  kernel has them.
- network allowlist: a user + network namespace (required), with only
  loopback up; the child's loopback listener is served by the parent's proxy
  (see proxy.py), handed over an inherited socketpair; Landlock (ABI >= 4)
  allows TCP connect to the proxy port only.
- escape hatches (ptrace, io_uring, namespaces, mounts, bpf, keyrings, perf,
  TIOCSTI, ...): seccomp (required for every sandbox profile).
- signals and abstract unix sockets scoped to the sandbox: Landlock ABI >= 6,
  when available. The child keeps no capability in the host's namespace.

Not enforced: connecting to filesystem unix sockets (Landlock has no right for
it yet; file permissions still apply); under workspace_rw_scoped, the mode
(not setuid/setgid), times and xattrs of files the orchestrator hands in as
open fds (stdout to a file) through ``/proc/self/fd/N``; POSIX shared memory in ``/dev/shm``
is not writable (add it to writable_paths if needed), and ``readable_paths``
mean nothing under ``fs_mode="inherit"``.

Probes run once per process (in throwaway children) and their definite
answers are cached; a probe that failed for a transient reason (EAGAIN,
ENOMEM, EINTR: no fork possible at that moment) is tried again next time. The
environment variable ``ORCHESTRATOR_SPAWN_SANDBOX_DISABLE`` (comma-separated
``userns``, ``landlock``, ``seccomp`` or ``all``) marks features unavailable
on top of the probes, for administrators and for tests of the fail-closed path;
it is read on every call, so it needs no cache reset.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orchestrator_spawn._native.sandbox import SandboxPlan

DISABLE_ENV = "ORCHESTRATOR_SPAWN_SANDBOX_DISABLE"

# The port the child's loopback listener uses inside its own network
# namespace; the namespace is empty, so any port is free there.
PROXY_PORT_IN_NETNS = 3128

# Devices that stay writable in every fs_mode (the "/dev/null-style" ones).
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts")

FEATURES = ("userns", "landlock", "seccomp")


class SandboxProfile(Protocol):
    """The attributes of a resolved execution profile the sandbox reads."""

    @property
    def name(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def fs_mode(self) -> str: ...
    @property
    def writable_paths(self) -> tuple[Path, ...]: ...
    @property
    def readable_paths(self) -> tuple[Path, ...]: ...
    @property
    def network_mode(self) -> str: ...
    @property
    def network_allowlist(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class LinuxCapabilities:
    """What the kernel offers: ``None`` for a working feature, else why not."""

    landlock_abi: int
    userns: str | None
    landlock: str | None
    seccomp: str | None

    def unavailable(self, feature: str) -> str | None:
        reason: str | None = getattr(self, feature)
        return reason


_probe_lock = threading.Lock()
_probed: LinuxCapabilities | None = None


# A probe failing with one of these says nothing about the kernel: the fork
# or an allocation failed at that moment (RLIMIT_NPROC exhausted by another
# process of the user, memory pressure). Such results are not cached.
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EINTR})


def _probe_all() -> LinuxCapabilities:
    caps, _ = _probe_all_definite()
    return caps


def _probe_all_definite() -> tuple[LinuxCapabilities, bool]:
    """The probes' results, and whether every one of them is definite."""
    from orchestrator_spawn._native import sandbox as _native

    transient: list[bool] = []

    try:
        abi = _native.sandbox_landlock_abi()
    except OSError as err:
        abi = 0
        landlock: str | None = f"Landlock is not available: {err.strerror}"
    else:
        landlock = _probe_message(_native.SANDBOX_PROBE_LANDLOCK, "Landlock", "/", transient)
    with tempfile.TemporaryDirectory(prefix="orchestrator-spawn-probe-") as scratch:
        userns = _probe_message(
            _native.SANDBOX_PROBE_USERNS, "user/mount/network namespaces", scratch, transient
        )
    seccomp = _probe_message(_native.SANDBOX_PROBE_SECCOMP, "seccomp filter", "/", transient)
    caps = LinuxCapabilities(abi if landlock is None else 0, userns, landlock, seccomp)
    return caps, not any(transient)


def _probe_message(what: int, feature: str, scratch: str, transient: list[bool]) -> str | None:
    from orchestrator_spawn._native import sandbox as _native

    errno_, step = _native.sandbox_probe(what, scratch)
    if errno_ == 0:
        return None
    transient.append(errno_ in TRANSIENT_ERRNOS)
    return f"{feature} failed at {step}: {os.strerror(errno_)} (errno {errno_})"


def probe_capabilities() -> LinuxCapabilities:
    """The kernel's sandbox features, probed once per process and cached.

    Only definite answers are cached: after a transient failure (a fork that
    failed with EAGAIN, say) the next call probes again. Features listed in
    ``ORCHESTRATOR_SPAWN_SANDBOX_DISABLE`` are reported as unavailable
    whatever the probe found.
    """
    global _probed
    with _probe_lock:
        caps = _probed
        if caps is None:
            caps, definite = _probe_all_definite()
            if definite:
                _probed = caps
    disabled = {part.strip() for part in os.environ.get(DISABLE_ENV, "").split(",")}
    if "all" in disabled:
        disabled.update(FEATURES)
    for feature in FEATURES:
        if feature in disabled and caps.unavailable(feature) is None:
            why = f"{feature} disabled by {DISABLE_ENV}"
            if feature == "userns":
                caps = replace(caps, userns=why)
            elif feature == "landlock":
                caps = replace(caps, landlock=why)
            else:
                caps = replace(caps, seccomp=why)
    if caps.landlock is not None:
        caps = replace(caps, landlock_abi=0)
    return caps


@dataclass(frozen=True)
class Missing:
    """One thing the platform cannot enforce for a profile."""

    reason_code: str  # "sandbox_backend_unavailable" | "unsupported_backend_feature"
    text: str


def _real(path: Path | str) -> str:
    return os.path.realpath(os.fspath(path))


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def writable_paths(profile: SandboxProfile) -> list[str]:
    """The canonical writable paths the fs_mode grants (none unless rw_scoped)."""
    if profile.fs_mode != "workspace_rw_scoped":
        return []
    return [_real(p) for p in profile.writable_paths]


def readonly_binds(profile: SandboxProfile) -> list[str]:
    """readable_paths that lie inside a writable path: they need a read-only bind."""
    writable = writable_paths(profile)
    return [
        real
        for real in (_real(p) for p in profile.readable_paths)
        if any(_is_within(real, w) for w in writable)
    ]


def pinned_dirs(profile: SandboxProfile) -> list[str]:
    """The directories between each read-only bind and its outermost writable
    root (both exclusive), outer first: each is bind-mounted onto itself so
    that it cannot be renamed or removed."""
    writable = writable_paths(profile)
    out: list[str] = []
    for path in readonly_binds(profile):
        root = min((w for w in writable if _is_within(path, w)), key=len)
        chain = []
        parent = os.path.dirname(path)
        while parent != root and _is_within(parent, root):
            chain.append(parent)
            parent = os.path.dirname(parent)
        out.extend(d for d in reversed(chain) if d not in out)
    return out


def writable_mounts(profile: SandboxProfile) -> list[str]:
    """The writable paths to keep writable under the read-only tree, outer
    first; empty when the tree is not made read-only (fs_mode inherit, or a
    writable path is ``/``)."""
    if profile.fs_mode == "inherit":
        return []
    writable = sorted(set(writable_paths(profile)), key=lambda p: (len(p), p))
    return writable


def missing_features(profile: SandboxProfile, caps: LinuxCapabilities) -> list[Missing]:
    """What this kernel lacks to enforce ``profile`` (empty: it can be enforced)."""
    out: list[Missing] = []

    def need(feature: str, why: str) -> None:
        reason = caps.unavailable(feature)
        if reason is not None:
            out.append(Missing("sandbox_backend_unavailable", f"{why} needs {reason}"))

    need("seccomp", "every sandbox profile (escape-hatch filter)")
    need("userns", "every sandbox profile (private /dev/pts, read-only mounts)")
    if profile.fs_mode != "inherit":
        need("landlock", f"fs_mode={profile.fs_mode!r}")
    binds = readonly_binds(profile)
    if binds:
        need("userns", f"readable_paths inside writable_paths ({', '.join(binds)})")
        for path in binds:
            if not os.path.exists(path):
                out.append(
                    Missing(
                        "unsupported_backend_feature",
                        f"readable path {path} does not exist inside a writable path, "
                        "so it cannot be kept read-only",
                    )
                )
    if profile.network_mode == "allowlist":
        need("userns", "network_mode='allowlist'")
    if profile.network_mode not in ("inherit", "deny", "allowlist"):
        out.append(Missing("unsupported_backend_feature", f"network_mode={profile.network_mode!r}"))
    if profile.fs_mode not in ("inherit", "workspace_readonly", "workspace_rw_scoped"):
        out.append(Missing("unsupported_backend_feature", f"fs_mode={profile.fs_mode!r}"))
    return out


def build_plan(
    profile: SandboxProfile, caps: LinuxCapabilities, *, handoff_fd: int = -1
) -> SandboxPlan:
    """The native plan enforcing ``profile`` (opaque; ``close()`` frees it).

    The caller has checked ``missing_features`` is empty. ``handoff_fd`` is
    the child's end of the allowlist proxy's socketpair (the spawn keeps it
    open in the child: ``SandboxPlan.inherited_fd``). Raises OSError from the
    native builder (the plan is freed then).
    """
    from orchestrator_spawn._native import sandbox as _native

    plan = _native.SandboxPlan()
    try:
        _fill_plan(plan, profile, caps, handoff_fd)
    except BaseException:
        plan.close()
        raise
    return plan


def _fill_plan(
    plan: SandboxPlan, profile: SandboxProfile, caps: LinuxCapabilities, handoff_fd: int
) -> None:
    from orchestrator_spawn._native import sandbox as _native

    net = profile.network_mode
    if caps.userns is None:
        plan.use_userns(os.geteuid(), os.getegid(), new_netns=net in ("deny", "allowlist"))
        plan.set_private_ptys()
        mounts = writable_mounts(profile)
        if profile.fs_mode != "inherit" and "/" not in mounts:
            plan.set_readonly_tree()
            for path in mounts:
                plan.add_writable_mount(path)
        for path in pinned_dirs(profile):
            plan.add_pinned_dir(path)
        for path in readonly_binds(profile):
            plan.add_readonly_bind(path)

    if caps.landlock is None:
        restrict_fs = profile.fs_mode != "inherit"
        plan.set_landlock(caps.landlock_abi, restrict_fs=restrict_fs)
        if restrict_fs:
            _add_fs_rules(plan, writable_paths(profile))

    if net == "deny":
        plan.set_network(_native.SANDBOX_NET_DENY)
    elif net == "allowlist":
        plan.set_network(
            _native.SANDBOX_NET_ALLOWLIST, proxy_port=PROXY_PORT_IN_NETNS, handoff_fd=handoff_fd
        )
    plan.set_seccomp(
        deny_ip_sockets=net == "deny",
        allow_inet_only=net == "allowlist",
        deny_metadata=profile.fs_mode == "workspace_readonly",
    )


def _add_fs_rules(plan: SandboxPlan, writable: Iterable[str]) -> None:
    from orchestrator_spawn._native import sandbox as _native

    plan.add_path_rule("/", _native.SANDBOX_ACCESS_READ)
    for device in WRITABLE_DEVICES:
        plan.add_path_rule(device, _native.SANDBOX_ACCESS_DEVICE)
    for path in writable:
        plan.add_path_rule(path, _native.SANDBOX_ACCESS_WRITE)


def protections(caps: LinuxCapabilities) -> dict[str, str | None]:
    """The hardening this kernel gives sandboxed children: name -> ``None``
    when given, else why not (then sandbox profiles are refused)."""

    def needs(*features: str) -> str | None:
        for feature in features:
            reason = caps.unavailable(feature)
            if reason is not None:
                return reason
        return None

    return {
        "metadata outside writable paths (read-only mounts, seccomp)": needs("userns", "seccomp"),
        "other processes' limits/priority/scheduling (seccomp pid checks)": needs("seccomp"),
        "signals to other processes (Landlock scope)": (
            needs("landlock")
            or (None if caps.landlock_abi >= 6 else f"Landlock ABI {caps.landlock_abi} < 6")
        ),
        "readable_paths pinned (bind mounts)": needs("userns"),
        "other terminals hidden (private devpts)": needs("userns"),
        "proxy handoff over an inherited socketpair": needs("userns"),
    }


def describe(caps: LinuxCapabilities) -> list[str]:
    """Human-readable lines for ``orchestrator-spawn doctor``."""
    lines = [
        f"landlock: ABI {caps.landlock_abi}"
        if caps.landlock is None
        else f"landlock: {caps.landlock}",
        "user/mount/network namespaces: ok"
        if caps.userns is None
        else f"namespaces: {caps.userns}",
        "seccomp: ok" if caps.seccomp is None else f"seccomp: {caps.seccomp}",
    ]
    for name, why in protections(caps).items():
        lines.append(f"{name}: {'yes' if why is None else 'no: ' + why}")
    return lines
