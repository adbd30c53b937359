"""``orchestrator-spawn doctor``, run as a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import orchestrator_spawn
from orchestrator_spawn import _native, sandbox_preflight
from orchestrator_spawn._cli_doctor import FEATURE_NAMES, KERNEL_PROBES, SANDBOX_MODES
from orchestrator_spawn._native import doctor as native_doctor
from orchestrator_spawn.config import load_config_file
from orchestrator_spawn.sandbox.linux import DISABLE_ENV
from tests.helpers.processes import run_cli

# The directory holding the package the tests import (source tree or site-packages).
LINUX = sys.platform.startswith("linux")

CONFIG = """\
execution_profiles:
  readonly_offline:
    mode: sandbox
    fs_mode: workspace_readonly
    network_mode: deny
  limited:
    mode: host
    max_open_files: 256
"""


def doctor(
    *args: str, disable: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli("doctor", *args, env={DISABLE_ENV: disable}, cwd=cwd)


def doctor_json(*args: str, disable: str | None = None) -> dict[str, Any]:
    done = doctor("--json", *args, disable=disable)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "runner.yaml"
    path.write_text(CONFIG)
    return path


def test_text_names_each_feature_and_its_state() -> None:
    done = doctor()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in FEATURE_NAMES:
        rows = [line for line in lines if re.match(rf"^  {name} +(yes|no) ", line)]
        assert len(rows) == 1, (name, done.stdout)
    for probe in KERNEL_PROBES.values():
        assert f"probe: {probe}" in done.stdout
    assert re.search(r"^pcre2: \d+\.\d+ .*, JIT ", done.stdout, re.MULTILINE), done.stdout
    for label in SANDBOX_MODES:
        assert re.search(rf"^  {re.escape(label)} +(enforced|refused)$", done.stdout, re.M), label
    assert f"orchestrator-spawn {orchestrator_spawn.__version__}" in lines[0]
    assert "python: " in done.stdout
    assert "platform: " in done.stdout


def test_json_matches_the_probes() -> None:
    report = doctor_json()
    assert list(report["features"]) == list(FEATURE_NAMES)
    for name in KERNEL_PROBES:
        feature = report["features"][name]
        assert feature["available"] is (native_doctor.doctor_kernel_probe(name) == 0), name
        assert feature["probe"] == KERNEL_PROBES[name]
    version, jit_built, jit_usable, target = native_doctor.doctor_pcre2()
    assert report["pcre2"] == {
        "version": version,
        "jit_built": jit_built,
        "jit_usable": jit_usable,
        "jit_target": target,
    }
    assert re.match(r"^10\.\d+ ", version), version
    assert report["package"]["version"] == orchestrator_spawn.__version__
    assert report["package"]["core_version"] == _native.CORE_VERSION
    assert set(report["sandbox"]["modes"]) == set(SANDBOX_MODES)
    if LINUX:
        from orchestrator_spawn.sandbox.linux import probe_capabilities

        caps = probe_capabilities()
        features = report["features"]
        assert features["landlock"]["abi"] == caps.landlock_abi
        assert features["landlock"]["available"] is (caps.landlock is None)
        assert features["user_namespaces"]["available"] is (caps.userns is None)
        assert features["seccomp"]["available"] is (caps.seccomp is None)
        assert report["sandbox"]["backend"] == "linux_native"


def test_json_mode_states_match_sandbox_preflight(tmp_path: Path) -> None:
    from orchestrator_spawn.config import ExecutionProfile

    report = doctor_json()
    (tmp_path / "ro").mkdir()
    for label, fields in SANDBOX_MODES.items():
        profile = ExecutionProfile(mode="sandbox", **fields).resolve(label, tmp_path)
        expected = "refused" if sandbox_preflight(profile) else "enforced"
        assert report["sandbox"]["modes"][label]["state"] == expected, label


@pytest.mark.linux_only
@pytest.mark.skipif(not LINUX, reason=f"{DISABLE_ENV} is read by the Linux backend")
def test_a_disabled_feature_shows_as_unavailable_and_refuses_every_mode() -> None:
    from orchestrator_spawn.sandbox.linux import probe_capabilities

    if probe_capabilities().seccomp is not None:
        pytest.skip("seccomp is unavailable here anyway")
    report = doctor_json(disable="seccomp")
    seccomp = report["features"]["seccomp"]
    assert seccomp["available"] is False
    assert DISABLE_ENV in seccomp["detail"]
    # Every sandbox profile needs the seccomp filter.
    for label, mode in report["sandbox"]["modes"].items():
        assert mode["state"] == "refused", label
        assert any("seccomp" in text for text in mode["missing"]), label


def test_an_enforceable_profile_exits_zero(config_file: Path) -> None:
    resolved = load_config_file(config_file).resolve_profile("readonly_offline", os.getcwd())
    missing = sandbox_preflight(resolved)
    if missing:
        pytest.skip(f"this machine cannot enforce the profile: {missing}")
    done = doctor("--config", str(config_file), "--profile", "readonly_offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "profile 'readonly_offline'" in done.stdout
    assert "can be enforced here" in done.stdout


@pytest.mark.linux_only
@pytest.mark.skipif(not LINUX, reason=f"{DISABLE_ENV} is read by the Linux backend")
def test_an_unenforceable_profile_exits_non_zero_and_says_what_is_missing(
    config_file: Path,
) -> None:
    args = ("--config", str(config_file), "--profile", "readonly_offline")
    done = doctor(*args, disable="landlock")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CANNOT be enforced" in done.stdout
    needs = [
        line for line in done.stdout.splitlines() if "fs_mode='workspace_readonly' needs" in line
    ]
    assert needs, done.stdout
    assert "landlock" in needs[-1].lower(), done.stdout
    report = json.loads(doctor("--json", *args, disable="landlock").stdout)
    assert report["profile"]["enforceable"] is False
    assert any("landlock" in text for text in report["profile"]["missing"])


def test_host_profiles_are_always_enforceable(config_file: Path) -> None:
    done = doctor("--config", str(config_file), "--profile", "limited", disable="all")
    assert done.returncode == 0, done.stdout + done.stderr
    done = doctor("--profile", "host", disable="all")
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_unknown_profile_or_bad_config_exits_two(config_file: Path, tmp_path: Path) -> None:
    done = doctor("--config", str(config_file), "--profile", "nope")
    assert done.returncode == 2
    assert "unknown execution profile 'nope'" in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("execution_profiles:\n  x:\n    mode: jail\n")
    done = doctor("--config", str(bad), "--profile", "x")
    assert done.returncode == 2
    assert "mode" in done.stderr


@pytest.mark.parametrize("command", [(), ("run",), ("doctor",), ("bench",)])
def test_help_shows_examples(command: tuple[str, ...]) -> None:
    done = run_cli(*command, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "examples:" in done.stdout
    examples = done.stdout.split("examples:", 1)[1]
    assert re.search(rf"^  orchestrator-spawn {' '.join(command)}", examples, re.M)


def _doctor_exit_notification(disable_pidfd: str | None) -> str:
    done = run_cli("doctor", "--json", env={"ORCHESTRATOR_SPAWN_DISABLE_PIDFD": disable_pidfd})
    assert done.returncode == 0, done.stderr
    mechanism: str = json.loads(done.stdout)["exit_notification"]
    return mechanism


@pytest.mark.skipif(not LINUX or not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_exit_notification_is_pidfd_when_pidfds_are_used() -> None:
    # The mechanism the children really got (their notifier), both ways.
    for unset_or_zero in (None, "0"):
        mechanism = _doctor_exit_notification(unset_or_zero)
        assert mechanism.startswith("pidfd ("), mechanism
        assert "disabled" not in mechanism


@pytest.mark.skipif(not LINUX, reason="the SIGCHLD fallback is the Linux one")
def test_exit_notification_is_the_reaper_when_pidfd_is_disabled() -> None:
    mechanism = _doctor_exit_notification("1")
    assert mechanism == "SIGCHLD reaper thread (pidfd disabled by ORCHESTRATOR_SPAWN_DISABLE_PIDFD)"
