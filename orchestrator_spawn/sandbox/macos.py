"""The macOS backend: a generated Seatbelt profile run through ``sandbox-exec``.

The profile denies by default, allows reading everywhere, allows writing
only beneath the canonicalised writable paths and to ``/dev/null``-style
devices and terminals, keeps ``readable_paths`` read-only even inside writable
paths (a later deny rule wins in SBPL), and restricts the network per mode:
``deny`` allows no network operation but unix sockets, ``allowlist`` allows
outbound TCP only to the parent's proxy port on ``localhost``. The profile
never names an IP or host literal other than ``localhost`` and has no
``local ip`` outbound rule (which would open every loopback service).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from orchestrator_spawn.sandbox.linux import SandboxProfile

SANDBOX_EXEC = "/usr/bin/sandbox-exec"

# Device files writable in every fs_mode.
_DEVICE_LITERALS = ("/dev/null", "/dev/zero", "/dev/tty", "/dev/dtracehelper")
_DEVICE_REGEXES = (r"^/dev/ttys[0-9]+$", r"^/dev/fd/[0-9]+$")


def _quote(text: str) -> str:
    """An SBPL string literal (backslash and double quote escaped)."""
    if "\0" in text or "\n" in text:
        raise ValueError(f"path {text!r} cannot appear in a Seatbelt profile")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canonical(path: Path | str) -> str:
    """The path with symlinks resolved (``/tmp`` is ``/private/tmp`` on macOS)."""
    return os.path.realpath(os.fspath(path))


def seatbelt_profile(profile: SandboxProfile, proxy_port: int | None = None) -> str:
    """The SBPL text enforcing ``profile``; allowlist mode needs ``proxy_port``.

    Raises ValueError for an unknown mode, a missing proxy port, or a path that
    cannot be written into a profile.
    """
    lines = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec)",
        "(allow process-fork)",
        "(allow process-info* (target same-sandbox))",
        "(allow signal (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow mach-lookup)",
        "(allow ipc-posix-shm-read-data)",
        "(allow ipc-posix-sem)",
        "(allow pseudo-tty)",
        "(allow file-read*)",
        "(allow file-ioctl "
        + " ".join(f"(literal {_quote(d)})" for d in _DEVICE_LITERALS)
        + " "
        + " ".join(f"(regex #{_quote(r)})" for r in _DEVICE_REGEXES)
        + ")",
    ]
    lines.append(_file_write_rules(profile))
    if profile.fs_mode != "inherit":
        readable = [canonical(p) for p in profile.readable_paths]
        if readable:
            lines.append(
                "(deny file-write* " + " ".join(f"(subpath {_quote(p)})" for p in readable) + ")"
            )
    lines.extend(_network_rules(profile.network_mode, proxy_port))
    return "\n".join(lines) + "\n"


def _file_write_rules(profile: SandboxProfile) -> str:
    if profile.fs_mode == "inherit":
        return "(allow file-write*)"
    if profile.fs_mode not in ("workspace_readonly", "workspace_rw_scoped"):
        raise ValueError(f"unknown fs_mode {profile.fs_mode!r}")
    filters = [f"(literal {_quote(d)})" for d in _DEVICE_LITERALS]
    filters += [f"(regex #{_quote(r)})" for r in _DEVICE_REGEXES]
    if profile.fs_mode == "workspace_rw_scoped":
        filters += [f"(subpath {_quote(canonical(p))})" for p in profile.writable_paths]
    return "(allow file-write* " + " ".join(filters) + ")"


def _network_rules(mode: str, proxy_port: int | None) -> list[str]:
    if mode == "inherit":
        return ["(allow network*)"]
    unix = [
        "(allow network* (local unix-socket) (remote unix-socket))",
        "(allow system-socket (socket-domain AF_UNIX))",
    ]
    if mode == "deny":
        return unix
    if mode == "allowlist":
        if proxy_port is None or not 0 < proxy_port < 65536:
            raise ValueError("network_mode='allowlist' needs the proxy port")
        return [
            *unix,
            f'(allow network-outbound (remote tcp "localhost:{proxy_port}"))',
            "(allow system-socket (socket-domain AF_INET) (socket-domain AF_INET6))",
        ]
    raise ValueError(f"unknown network_mode {mode!r}")


def sandboxed_argv(profile_text: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run under ``sandbox-exec -p <profile>``."""
    return [SANDBOX_EXEC, "-p", profile_text, *argv]


def missing_features() -> list[str]:
    """What this Mac lacks (only ``sandbox-exec`` itself can be missing)."""
    if not os.access(SANDBOX_EXEC, os.X_OK):
        return [f"{SANDBOX_EXEC} is not available"]
    return []
