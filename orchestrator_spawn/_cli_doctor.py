"""``orchestrator-spawn doctor``: what this machine offers, and what a profile needs.

:func:`collect` gathers one report (a JSON-ready dict): the package, Python
and platform; each kernel feature the core uses, with the call that was
probed and what came back; the linked PCRE2 and its JIT; what each sandbox
mode would do here (enforced, or refused with the reason); optionally, whether
one execution profile from a config file can be enforced.

The probes are the ones the package itself relies on, not a second set: the
sandbox's cached :func:`~orchestrator_spawn.sandbox.linux.probe_capabilities`
(so ``ORCHESTRATOR_SPAWN_SANDBOX_DISABLE`` shows up here exactly as it
affects spawns), :func:`~orchestrator_spawn.sandbox.sandbox_preflight` for the
modes and profiles, and small native probes (``csrc/doctor.c``) for the
spawn core's pidfd and close_range calls and for PCRE2.

Exit status of the subcommand: 0, or 1 when ``--profile`` names a profile
that cannot be enforced here, or 2 when the config or profile is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["EPILOG", "add_doctor_options", "collect", "render_text", "run_doctor"]

EPILOG = """\
examples:
  orchestrator-spawn doctor
  orchestrator-spawn doctor --json | python -m json.tool
  orchestrator-spawn doctor --config runner.yaml --profile sandbox_write

exit status: 0; 1 when --profile cannot be enforced on this machine (what is
missing is printed); 2 when the config file or the profile name is invalid.
"""

# Feature name -> the call the probe makes (shown and put in the JSON).
KERNEL_PROBES: dict[str, str] = {
    "pidfd_open": "pidfd_open(getpid(), 0)",
    "close_range": "close_range(fd, fd, 0) on an fd of /dev/null",
    "clone_pidfd": "clone(CLONE_PIDFD | SIGCHLD) of a child that exits at once",
}
SANDBOX_PROBES: dict[str, str] = {
    "landlock": "landlock_create_ruleset(VERSION); a filesystem ruleset in a throwaway child",
    "user_namespaces": (
        "unshare(NEWUSER|NEWNS|NEWNET), id maps, a read-only bind, loopback up, "
        "the read-only mount tree (open_tree, mount_setattr, move_mount), a private "
        "devpts, in a throwaway child"
    ),
    "seccomp": "no_new_privs + the sandbox's seccomp filter in a throwaway child",
}
FEATURE_NAMES = (*KERNEL_PROBES, *SANDBOX_PROBES)

# Sandbox modes shown by the doctor: label -> ExecutionProfile fields.
# Paths are relative to a scratch workspace that holds a "ro" directory.
SANDBOX_MODES: dict[str, dict[str, Any]] = {
    "fs_mode=inherit, network_mode=inherit": {},
    "fs_mode=workspace_readonly": {"fs_mode": "workspace_readonly"},
    "fs_mode=workspace_rw_scoped": {
        "fs_mode": "workspace_rw_scoped",
        "writable_paths": ["."],
    },
    "fs_mode=workspace_rw_scoped + readable_paths inside": {
        "fs_mode": "workspace_rw_scoped",
        "writable_paths": ["."],
        "readable_paths": ["ro"],
    },
    "network_mode=deny": {"network_mode": "deny"},
    "network_mode=allowlist": {
        "network_mode": "allowlist",
        "network_allowlist": ["example.com:443"],
    },
}


def add_doctor_options(parser: argparse.ArgumentParser) -> None:
    """Adds ``--json``, ``--config`` and ``--profile`` to the doctor parser."""
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON config file with 'execution_profiles' (for --profile)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="check that this execution profile can be enforced here; exit 1 if not",
    )


def _feature(available: bool, detail: str, probe: str) -> dict[str, Any]:
    return {"available": available, "detail": detail, "probe": probe}


def _kernel_features() -> dict[str, dict[str, Any]]:
    from orchestrator_spawn._native import doctor as _native

    if not sys.platform.startswith("linux"):
        why = f"Linux only (not on {sys.platform})"
        return {name: _feature(False, why, probe) for name, probe in KERNEL_PROBES.items()}
    out = {}
    for name, probe in KERNEL_PROBES.items():
        err = _native.doctor_kernel_probe(name)
        detail = "ok" if err == 0 else f"{os.strerror(err)} (errno {err})"
        out[name] = _feature(err == 0, detail, probe)
    return out


def _sandbox_features() -> dict[str, dict[str, Any]]:
    if not sys.platform.startswith("linux"):
        why = f"Linux only (the {sys.platform} backend does not use it)"
        return {name: _feature(False, why, probe) for name, probe in SANDBOX_PROBES.items()}
    from orchestrator_spawn.sandbox import linux

    caps = linux.probe_capabilities()
    landlock = (
        _feature(True, f"ABI {caps.landlock_abi}", SANDBOX_PROBES["landlock"])
        if caps.landlock is None
        else _feature(False, caps.landlock, SANDBOX_PROBES["landlock"])
    )
    return {
        "landlock": {**landlock, "abi": caps.landlock_abi},
        "user_namespaces": _feature(
            caps.userns is None,
            caps.userns or "ok (user + mount + network)",
            SANDBOX_PROBES["user_namespaces"],
        ),
        "seccomp": _feature(caps.seccomp is None, caps.seccomp or "ok", SANDBOX_PROBES["seccomp"]),
    }


def _pcre2() -> dict[str, Any]:
    from orchestrator_spawn._native import doctor as _native

    version, jit_built, jit_usable, target = _native.doctor_pcre2()
    return {
        "version": version,
        "jit_built": jit_built,
        "jit_usable": jit_usable,
        "jit_target": target,
    }


def _exit_notification() -> str:
    """The exit-notification mechanism a child spawned now actually gets.

    Read off a real child (``/bin/true`` or ``true`` on PATH), not guessed
    from the settings: what the kernel gives decides too."""
    from orchestrator_spawn import _platform
    from orchestrator_spawn.spawn import spawn

    try:
        child = spawn(["true"])
    except OSError:
        kind = None
    else:
        with child:
            kind = type(child._notifier).__name__
            child.wait_blocking()
    if kind == "KqueueExit":
        return "kqueue (EVFILT_PROC)"
    if kind == "PidfdExit":
        if _platform.lazy_pidfd:
            return "pidfd (opened with pidfd_open when a wait needs one)"
        return "pidfd (clone CLONE_PIDFD)"
    if _platform.pidfd_enabled():
        why = "the kernel gives no pidfd" if kind is not None else "no child could be spawned"
    else:
        why = f"pidfd disabled by {_platform.DISABLE_PIDFD_ENV}"
    return f"SIGCHLD reaper thread ({why})"


DELEGATION_HINT = (
    "run as root, or inside a cgroup delegated to your user, e.g. "
    "`systemd-run --user --scope -p Delegate=yes <command>`"
)


def _containment() -> dict[str, Any]:
    """How jobs are held together here (CONTRACT §7), and what is missing."""
    from orchestrator_spawn._platform import cgroup

    status = cgroup.status()
    missing: list[str] = []
    if status.available:
        mechanism = "cgroup"
        detail = f"one cgroup v2 per job below {status.own_cgroup}"
        base = cgroup._base
        if base is not None and not os.path.exists(os.path.join(base.path, "jobs", "cgroup.kill")):
            detail += "; no cgroup.kill (Linux < 5.14): kills freeze, signal and thaw"
        die_with_parent = (
            f"a keeper process (pid {base.keeper_pid if base else '?'}) kills the jobs"
        )
    else:
        mechanism = "process_group"
        detail = status.reason
        if sys.platform.startswith("linux"):
            if cgroup.DISABLE_CGROUP_ENV in status.reason:
                missing.append(f"unset {cgroup.DISABLE_CGROUP_ENV}")
            elif status.own_cgroup is None:
                missing.append(
                    "a cgroup v2 hierarchy (boot with systemd.unified_cgroup_hierarchy=1, or "
                    "mount -t cgroup2 none /sys/fs/cgroup/unified)"
                )
            else:
                missing.append(f"a writable cgroup v2 directory: {DELEGATION_HINT}")
            die_with_parent = (
                "a keeper process kills the jobs' process groups (descendants that "
                "called setsid survive the orchestrator)"
            )
        else:
            missing.append(f"nothing better exists on {sys.platform}: jobs are process groups")
            die_with_parent = "not available"
    sandbox_pidns = "no (Linux only)"
    if sys.platform.startswith("linux"):
        from orchestrator_spawn.sandbox import linux

        userns = linux.probe_capabilities().userns
        sandbox_pidns = "yes" if userns is None else f"no: {userns}"
    return {
        "mechanism": mechanism,
        "detail": detail,
        "die_with_parent": die_with_parent,
        "sandboxed_jobs_pid_namespace": sandbox_pidns,
        "missing": missing,
    }


def _preflight_state(missing: list[str]) -> dict[str, Any]:
    return {"state": "refused" if missing else "enforced", "missing": missing}


def _sandbox_modes() -> dict[str, Any]:
    from orchestrator_spawn.config import ExecutionProfile
    from orchestrator_spawn.sandbox import backend_name, sandbox_preflight

    modes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="orchestrator-spawn-doctor-") as workspace:
        os.mkdir(os.path.join(workspace, "ro"))
        for label, fields in SANDBOX_MODES.items():
            profile = ExecutionProfile(mode="sandbox", **fields).resolve(label, workspace)
            modes[label] = _preflight_state(sandbox_preflight(profile))
    return {"backend": backend_name(), "modes": modes, "protections": _sandbox_protections()}


def _sandbox_protections() -> dict[str, dict[str, Any]]:
    """Which hardening of a sandboxed child this kernel gives (Linux)."""
    if not sys.platform.startswith("linux"):
        return {}
    from orchestrator_spawn.sandbox import linux

    protections = linux.protections(linux.probe_capabilities())
    return {
        name: {"given": why is None, "detail": "yes" if why is None else why}
        for name, why in protections.items()
    }


def _package() -> dict[str, Any]:
    import orchestrator_spawn
    from orchestrator_spawn._native import CORE_VERSION

    return {
        "name": "orchestrator-spawn",
        "version": orchestrator_spawn.__version__,
        "core_version": CORE_VERSION,
        "location": os.path.dirname(orchestrator_spawn.__file__ or ""),
    }


def _platform_info() -> dict[str, Any]:
    libc, libc_version = platform.libc_ver()
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "libc": f"{libc} {libc_version}".strip() or "unknown",
    }


def check_profile(config_path: str | None, name: str) -> dict[str, Any]:
    """Whether the profile ``name`` of ``config_path`` can be enforced here.

    Paths resolve against the current directory, as ``run`` does. Raises
    ``OSError`` (unreadable file), ``ValueError`` (bad document or field) or
    ``KeyError`` (unknown profile).
    """
    from orchestrator_spawn.config import ConfigFile, load_config_file
    from orchestrator_spawn.sandbox import sandbox_preflight

    config = load_config_file(config_path) if config_path else ConfigFile()
    resolved = config.resolve_profile(name, os.getcwd())
    missing = sandbox_preflight(resolved)
    return {
        "name": name,
        "config": config_path,
        "mode": resolved.mode,
        "fs_mode": resolved.fs_mode,
        "network_mode": resolved.network_mode,
        "enforceable": not missing,
        "missing": missing,
    }


def collect() -> dict[str, Any]:
    """The doctor report for this machine (JSON-ready)."""
    return {
        "package": _package(),
        "python": {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
            "executable": sys.executable,
        },
        "platform": _platform_info(),
        "features": {**_kernel_features(), **_sandbox_features()},
        "exit_notification": _exit_notification(),
        "containment": _containment(),
        "pcre2": _pcre2(),
        "sandbox": _sandbox_modes(),
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_text(report: dict[str, Any]) -> list[str]:
    """The report as the lines the doctor prints."""
    pkg, py, plat = report["package"], report["python"], report["platform"]
    lines = [
        f"orchestrator-spawn {pkg['version']} (C core {pkg['core_version']}) at {pkg['location']}",
        f"python: {py['implementation']} {py['version']} ({py['executable']})",
        f"platform: {plat['system']} {plat['release']} {plat['machine']} ({plat['libc']})",
        "",
        "kernel features (probed):",
    ]
    width = max(len(name) for name in report["features"])
    for name, feature in report["features"].items():
        lines.append(f"  {name:<{width}}  {_yes(feature['available']):<3}  {feature['detail']}")
        lines.append(f"  {'':<{width}}       probe: {feature['probe']}")
    lines.append(f"  exit notification: {report['exit_notification']}")
    containment = report["containment"]
    lines += [
        "",
        f"job containment: {containment['mechanism']} ({containment['detail']})",
        f"  die with parent: {containment['die_with_parent']}",
        f"  sandboxed jobs in a pid namespace: {containment['sandboxed_jobs_pid_namespace']}",
    ]
    lines.extend(f"  missing: {text}" for text in containment["missing"])
    pcre2 = report["pcre2"]
    jit = "not built in"
    if pcre2["jit_built"]:
        usable = "usable" if pcre2["jit_usable"] else "built in but refused here"
        jit = f"{usable} ({pcre2['jit_target']})"
    lines += ["", f"pcre2: {pcre2['version']}, JIT {jit}", ""]
    sandbox = report["sandbox"]
    lines.append(f"sandbox modes (backend {sandbox['backend']}):")
    width = max(len(label) for label in sandbox["modes"])
    for label, mode in sandbox["modes"].items():
        lines.append(f"  {label:<{width}}  {mode['state']}")
        lines.extend(f"      - {text}" for text in mode["missing"])
    protections = sandbox.get("protections") or {}
    if protections:
        lines.append("sandbox protections (this kernel):")
        width = max(len(name) for name in protections)
        for name, given in protections.items():
            lines.append(f"  {name:<{width}}  {given['detail']}")
    profile = report.get("profile")
    if profile is not None:
        source = f" from {profile['config']}" if profile["config"] else ""
        lines.append("")
        if profile["enforceable"]:
            lines.append(f"profile {profile['name']!r}{source}: can be enforced here")
        else:
            lines.append(f"profile {profile['name']!r}{source}: CANNOT be enforced here; missing:")
            lines.extend(f"  - {text}" for text in profile["missing"])
    return lines


def run_doctor(args: argparse.Namespace, write: Callable[[str], None] = print) -> int:
    """Runs the doctor subcommand for parsed ``args``; returns the exit status."""
    report = collect()
    if args.profile is not None or args.config is not None:
        try:
            report["profile"] = check_profile(args.config, args.profile or "host")
        except (OSError, ValueError, KeyError) as err:
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            print(f"orchestrator-spawn doctor: {text}", file=sys.stderr)
            return 2
    if args.json:
        write(json.dumps(report, indent=2))
    else:
        for line in render_text(report):
            write(line)
    profile = report.get("profile")
    return 1 if profile is not None and not profile["enforceable"] else 0
