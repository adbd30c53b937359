"""The sandbox entry points on every platform: host mode, preflight, doctor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator_spawn import SandboxBackendError, sandbox_preflight
from orchestrator_spawn.sandbox import (
    PreparedSandbox,
    backend_name,
    prepare_sandbox,
    sandbox_doctor,
)
from orchestrator_spawn.sandbox.linux import DISABLE_ENV
from tests.helpers.sandbox import profile


def test_host_profile_needs_nothing_and_changes_nothing(tmp_path: Path) -> None:
    prof = profile(tmp_path, mode="host")
    assert sandbox_preflight(prof) == []
    prepared = prepare_sandbox(prof, ("/bin/echo", "hi"))
    assert isinstance(prepared, PreparedSandbox)
    assert prepared.argv == ["/bin/echo", "hi"]
    assert prepared.env_overrides == {}
    assert prepared.native_plan is None
    assert prepared.backend == "host"
    prepared.close()
    prepared.close()


def test_doctor_names_the_backend_and_each_feature() -> None:
    lines = sandbox_doctor()
    assert lines[0].startswith("backend: ")
    if sys.platform.startswith("linux"):
        text = "\n".join(lines)
        for feature in ("landlock", "namespaces", "seccomp"):
            assert feature in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux probes")
def test_doctor_reports_a_disabled_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "seccomp")
    assert any("seccomp" in line and DISABLE_ENV in line for line in sandbox_doctor())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux probes")
def test_doctor_reports_each_hardening_protection(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator_spawn._cli_doctor import collect, render_text

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    names = ("metadata", "other processes", "signals", "readable_paths", "terminals", "handoff")
    report = collect()
    protections = report["sandbox"]["protections"]
    for name in names:
        assert any(name in key for key in protections), (name, protections)
    text = "\n".join(render_text(report))
    assert "sandbox protections (this kernel):" in text
    monkeypatch.setenv(DISABLE_ENV, "userns")
    protections = collect()["sandbox"]["protections"]
    terminals = next(v for k, v in protections.items() if "terminals" in k)
    assert terminals["given"] is False
    assert DISABLE_ENV in terminals["detail"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux plan")
def test_close_frees_the_plan_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    prof = profile(tmp_path, network_mode="deny")
    if sandbox_preflight(prof):
        pytest.skip("; ".join(sandbox_preflight(prof)))
    prepared = prepare_sandbox(prof, ["/bin/true"])
    plan = prepared.native_plan
    assert plan is not None
    assert prepared.backend == "linux_native"
    assert "open" in repr(prepared)
    prepared.close()
    prepared.close()
    assert prepared.native_plan is None
    assert plan.closed  # freed now, not at the next collection
    assert "closed" in repr(prepared)


def test_one_label_names_the_backend() -> None:
    # The runner's errors, the sandbox layer and the doctor say the same.
    from orchestrator_spawn.runner import default_sandbox_backend

    label = backend_name()
    assert default_sandbox_backend() == label
    if sys.platform.startswith("linux"):
        assert label == "linux_native"
    elif sys.platform == "darwin":
        assert label == "macos_seatbelt"


def test_malformed_allowlist_is_refused_before_anything_runs(tmp_path: Path) -> None:
    # The config model refuses such entries too; the sandbox must not rely on it.
    valid = profile(tmp_path, network_mode="allowlist", network_allowlist=["example.org"])
    prof = valid.model_copy(update={"network_allowlist": ("*.example.org",)})
    assert any("*.example.org" in line for line in sandbox_preflight(prof))
    with pytest.raises(SandboxBackendError) as info:
        prepare_sandbox(prof, ["/bin/true"])
    assert info.value.reason_code == "unsupported_backend_feature"
    assert "*.example.org" in str(info.value)


def test_cli_doctor_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator_spawn.cli import main

    assert main(["doctor"]) == 0
    # The CLI's doctor grew (see tests/test_cli_doctor.py); it still names the
    # backend and each sandbox feature.
    out = capsys.readouterr().out
    backend = sandbox_doctor()[0].split(": ", 1)[1]
    assert f"(backend {backend})" in out
    for feature in ("landlock", "user_namespaces", "seccomp"):
        assert f"  {feature} " in out
