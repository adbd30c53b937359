"""Runner layer without children: env rules, guard wiring, classification, fail-closed sandbox."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import (
    DaemonPidGuardBlocked,
    ExecutionProfile,
    PolicyError,
    ResolvedExecutionProfile,
    RunnerConfig,
    RunnerPolicy,
    SandboxBackendError,
    SpawnError,
    spawn_with_runner,
    spawn_with_runner_and_capture,
)
from orchestrator_spawn.runner import (
    build_child_env,
    classify_spawn_error,
    default_sandbox_backend,
)

PARENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/u",
    "RUNNER_ALLOWED_TEST": "visible",
    "RUNNER_BLOCKED_TEST": "hidden",
    "CLAUDECODE": "nested-session",
}


# --- environment -------------------------------------------------------------


def test_allowlist_env_keeps_only_listed_parent_vars_then_extra() -> None:
    runner = RunnerConfig(env_allowlist=["RUNNER_ALLOWED_TEST", "PATH", "NOT_SET"])
    env = build_child_env(runner, {"EXTRA": "x", "PATH": "/override"}, PARENT)
    assert env == {"RUNNER_ALLOWED_TEST": "visible", "PATH": "/override", "EXTRA": "x"}


def test_unsafe_env_is_parent_plus_extra_minus_removed() -> None:
    runner = RunnerConfig(policy=RunnerPolicy.UNSAFE)
    env = build_child_env(runner, {"EXTRA": "x"}, PARENT)
    expected = {k: v for k, v in PARENT.items() if k != "CLAUDECODE"}
    assert env == {**expected, "EXTRA": "x"}


def test_env_remove_beats_extra_env_and_allowlist() -> None:
    runner = RunnerConfig(env_allowlist=["CLAUDECODE", "PATH"], env_remove=["CLAUDECODE", "PATH"])
    env = build_child_env(runner, {"CLAUDECODE": "again", "KEEP": "1"}, PARENT)
    assert env == {"KEEP": "1"}


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("RUNNER_BLOCKED_TEST", "hidden")
    env = build_child_env(RunnerConfig(), {})
    assert env["LANG"] == "C.UTF-8"
    assert "RUNNER_BLOCKED_TEST" not in env


# --- checks before any spawn -------------------------------------------------


def test_policy_is_enforced_before_spawning(tmp_path: Path) -> None:
    runner = RunnerConfig(shell="/bin/dash")
    with pytest.raises(PolicyError, match="allowed_shells"):
        spawn_with_runner(runner, "true", tmp_path, tmp_path / "o", tmp_path / "e")


def test_guard_is_on_when_daemon_pid_in_extra_env(tmp_path: Path) -> None:
    with pytest.raises(DaemonPidGuardBlocked) as info:
        spawn_with_runner(
            RunnerConfig(),
            "kill -9 4242",
            tmp_path,
            tmp_path / "o",
            tmp_path / "e",
            {"ORCHESTRATOR_DAEMON_PID": "4242"},
        )
    assert info.value.matched_pattern == "kill 4242"
    with pytest.raises(DaemonPidGuardBlocked):
        spawn_with_runner_and_capture(
            RunnerConfig(),
            "pkill orchestratord",
            tmp_path,
            1,
            2,
            None,
            {"ORCHESTRATOR_DAEMON_PID": "7"},
        )


@pytest.mark.parametrize("value", ["", "abc", "-5", "0", "12 34", "١٢"])
def test_unparsable_daemon_pid_fails_closed(tmp_path: Path, value: str) -> None:
    with pytest.raises(PolicyError, match="ORCHESTRATOR_DAEMON_PID"):
        spawn_with_runner(
            RunnerConfig(),
            "true",
            tmp_path,
            tmp_path / "o",
            tmp_path / "e",
            {"ORCHESTRATOR_DAEMON_PID": value},
        )


def test_bad_output_target_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="stdout"):
        spawn_with_runner(RunnerConfig(), "true", tmp_path, object(), 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stderr"):
        spawn_with_runner(RunnerConfig(), "true", tmp_path, 1, True)


def test_unopenable_output_path_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        spawn_with_runner(RunnerConfig(), "true", tmp_path, tmp_path / "no" / "such", 2)


def _sandbox(**limits: Any) -> ResolvedExecutionProfile:
    return ExecutionProfile(mode="sandbox", **limits).resolve("sbx", "/w")


def test_unenforceable_sandbox_profile_fails_closed(tmp_path: Path) -> None:
    # Built directly (ExecutionProfile would refuse the wildcard at load time):
    # the backend cannot enforce it, so the command must never run.
    profile = ResolvedExecutionProfile(
        name="wild",
        mode="sandbox",
        fs_mode="inherit",
        writable_paths=(),
        readable_paths=(),
        network_mode="allowlist",
        network_allowlist=("*.example.org",),
        max_memory_mb=None,
        max_cpu_seconds=None,
        max_processes=None,
        max_open_files=None,
        workspace_root=tmp_path,
    )
    marker = tmp_path / "ran"
    with pytest.raises(SandboxBackendError) as info:
        spawn_with_runner(
            RunnerConfig(),
            f"touch {marker}",
            tmp_path,
            os.devnull,
            os.devnull,
            None,
            False,
            profile,
        )
    assert info.value.reason_code in ("unsupported_backend_feature", "sandbox_backend_unavailable")
    assert info.value.execution_profile == "wild"
    assert info.value.backend == default_sandbox_backend()
    assert not marker.exists()


# --- classification ----------------------------------------------------------

RUNNER = RunnerConfig()


def _err(code: int, stage: str = "exec") -> SpawnError:
    return SpawnError(
        code,
        f"{stage} of '/bin/bash' failed: {os.strerror(code)}",
        stage=stage,
        program="/bin/bash",
    )


@pytest.mark.parametrize(
    ("code", "limits", "kind"),
    [
        (errno.ENOMEM, {"max_memory_mb": 64, "max_processes": 5}, "memory"),
        (errno.EAGAIN, {"max_processes": 5, "max_open_files": 9}, "processes"),
        (errno.EMFILE, {"max_open_files": 9, "max_memory_mb": 64}, "open_files"),
        (errno.ENFILE, {"max_open_files": 9, "max_cpu_seconds": 3}, "open_files"),
        # The single-configured-limit rule: the only limit set takes the blame.
        (errno.EPERM, {"max_cpu_seconds": 3}, "cpu"),
        (errno.EINVAL, {"max_memory_mb": 64}, "memory"),
        (errno.ENOMEM, {"max_cpu_seconds": 3}, "cpu"),
    ],
)
def test_sandbox_resource_classification(code: int, limits: dict[str, int], kind: str) -> None:
    err = classify_spawn_error(
        _err(code, "setrlimit"), RUNNER, _sandbox(**limits), backend="linux_native"
    )
    assert isinstance(err, SandboxBackendError)
    # The reason code names the resource kind: memory -> memory_limit_exceeded.
    assert (err.reason_code, err.resource_kind) == (f"{kind}_limit_exceeded", kind)
    assert err.event_type == "sandbox_resource_exceeded"
    assert (err.execution_profile, err.backend) == ("sbx", "linux_native")
    assert os.strerror(code) in str(err)


def test_sandbox_stage_failure_is_backend_unavailable() -> None:
    err = classify_spawn_error(_err(errno.EPERM, "sandbox"), RUNNER, _sandbox(), backend="x")
    assert isinstance(err, SandboxBackendError)
    assert (err.event_type, err.reason_code, err.resource_kind) == (
        "sandbox_denied",
        "sandbox_backend_unavailable",
        None,
    )


@pytest.mark.parametrize(
    ("code", "stage", "limits"),
    [
        (errno.EPERM, "exec", {"max_cpu_seconds": 3, "max_memory_mb": 5}),  # two limits: no rule
        (errno.ENOENT, "exec", {"max_cpu_seconds": 3}),  # a missing shell is not a limit
        (errno.EACCES, "chdir", {"max_open_files": 3}),
        (errno.ENOMEM, "exec", {}),
    ],
)
def test_unclassified_sandbox_failures_stay_spawn_errors(
    code: int, stage: str, limits: dict[str, int]
) -> None:
    err = classify_spawn_error(_err(code, stage), RUNNER, _sandbox(**limits))
    assert isinstance(err, SpawnError)
    assert (err.errno, err.stage, err.program) == (code, stage, "/bin/bash")


@pytest.mark.parametrize("code", [errno.ENOMEM, errno.EAGAIN, errno.EMFILE, errno.ENOENT])
def test_host_failures_are_spawn_errors_naming_shell(code: int) -> None:
    host = ExecutionProfile(max_memory_mb=1, max_processes=1, max_open_files=1).resolve("h", "/w")
    runner = RunnerConfig(shell="/bin/sh", shell_arg="-c")
    err = classify_spawn_error(_err(code), runner, host)
    assert isinstance(err, SpawnError)
    assert "failed to spawn runner shell=/bin/sh shell_arg=-c" in str(err)
    assert os.strerror(code) in str(err)
    assert err.errno == code


def test_refused_command_does_not_touch_output_files(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    out.write_text("previous run")
    with pytest.raises(PolicyError):
        spawn_with_runner(RunnerConfig(), "", tmp_path, out, out)
    assert out.read_text() == "previous run"
