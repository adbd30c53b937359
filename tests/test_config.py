"""Runner configuration models: defaults, validation, loading, resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydantic
import pytest
import yaml

from orchestrator_spawn import (
    ExecutionProfile,
    ResolvedExecutionProfile,
    RunnerConfig,
    RunnerPolicy,
)
from orchestrator_spawn.config import ConfigFile, load_config_file, parse_config_text
from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS

# --- defaults ----------------------------------------------------------------


def test_runner_defaults_match_the_contract() -> None:
    runner = RunnerConfig()
    assert runner.shell == "/bin/bash"
    assert runner.shell_arg == "-lc"
    assert runner.policy is RunnerPolicy.ALLOWLIST
    assert runner.policy == "allowlist"  # type: ignore[comparison-overlap]  # a str enum
    assert runner.executor == "shell"
    assert runner.allowed_shells == ["/bin/bash", "/bin/zsh", "/bin/sh"]
    assert runner.allowed_shell_args == ["-lc", "-c"]
    assert runner.env_allowlist == ["PATH", "HOME", "USER", "LANG", "TERM"]
    assert runner.redaction_patterns == list(DEFAULT_REDACTION_PATTERNS)
    assert runner.env_remove == ["CLAUDECODE"]


def test_defaults_are_not_shared_between_instances() -> None:
    first, second = RunnerConfig(), RunnerConfig()
    first.env_allowlist.append("EXTRA")
    assert "EXTRA" not in second.env_allowlist


def test_profile_defaults() -> None:
    profile = ExecutionProfile()
    assert (profile.mode, profile.fs_mode, profile.network_mode) == ("host", "inherit", "inherit")
    assert profile.writable_paths == profile.readable_paths == profile.network_allowlist == []
    assert profile.max_memory_mb is None
    assert profile.max_cpu_seconds is None
    assert profile.max_processes is None
    assert profile.max_open_files is None


# --- validation --------------------------------------------------------------


def _error_locs(err: pydantic.ValidationError) -> list[str]:
    return [".".join(str(part) for part in e["loc"]) for e in err.errors()]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"shell": "bash"}, "shell"),
        ({"policy": "yolo"}, "policy"),
        ({"executor": "docker"}, "executor"),
        ({"allowed_shells": ["/bin/bash", "sh"]}, "allowed_shells"),
        ({"shell_arg": ""}, "shell_arg"),
        ({"env_allowlist": ["A=B"]}, "env_allowlist"),
        ({"env_remove": [""]}, "env_remove"),
        ({"redaction_patterns": ["(unclosed"]}, "redaction_patterns"),
        ({"redaction_patterns": ["a*"]}, "redaction_patterns"),
        ({"shel": "/bin/bash"}, "shel"),
    ],
)
def test_runner_validation_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        RunnerConfig.model_validate(data)
    assert field in _error_locs(info.value)


def test_bad_regex_error_names_pattern_and_offset() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        RunnerConfig(redaction_patterns=["ok", "ab(cd"])
    message = str(info.value)
    assert "redaction_patterns[1]" in message
    assert "'ab(cd'" in message
    # The offset is PCRE2's (the engine that runs the pattern): the end of
    # the pattern, where the closing parenthesis is missing.
    assert "offset 5" in message


def test_pattern_checked_by_the_engine_that_runs_it() -> None:
    # PCRE2 syntax that Python re refuses loads, because the pump runs PCRE2.
    config = RunnerConfig(redaction_patterns=["(?<tok>ghp_[A-Za-z0-9]{36})"])
    assert config.redaction_patterns == ["(?<tok>ghp_[A-Za-z0-9]{36})"]
    with pytest.raises(pydantic.ValidationError, match=r"redaction_patterns\[0\]"):
        RunnerConfig(redaction_patterns=["(?=x)"])


def test_empty_match_pattern_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="empty string"):
        RunnerConfig(redaction_patterns=["x?"])


def test_assignment_is_validated() -> None:
    runner = RunnerConfig()
    with pytest.raises(pydantic.ValidationError):
        runner.shell = "relative/sh"
    assert runner.shell == "/bin/bash"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"mode": "vm"}, "mode"),
        ({"fs_mode": "rw"}, "fs_mode"),
        ({"network_mode": "open"}, "network_mode"),
        ({"max_memory_mb": 0}, "max_memory_mb"),
        ({"max_cpu_seconds": -1}, "max_cpu_seconds"),
        ({"max_processes": True}, "max_processes"),
        ({"max_open_files": "many"}, "max_open_files"),
        ({"max_memory_mb": 1 << 60}, "max_memory_mb"),
        ({"writable": ["src"]}, "writable"),
        (
            {"mode": "sandbox", "network_mode": "allowlist", "network_allowlist": ["http://x"]},
            "network_allowlist",
        ),
        (
            {"mode": "sandbox", "network_mode": "allowlist", "network_allowlist": ["host:0"]},
            "network_allowlist",
        ),
        (  # the allowlist proxy serves exact hosts only
            {
                "mode": "sandbox",
                "network_mode": "allowlist",
                "network_allowlist": ["*.example.org"],
            },
            "network_allowlist",
        ),
        ({"mode": "sandbox", "writable_paths": ["a\x00b"]}, "writable_paths"),
    ],
)
def test_profile_validation_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ExecutionProfile.model_validate(data)
    assert field in _error_locs(info.value)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"fs_mode": "workspace_readonly"}, "fs_mode"),
        ({"network_mode": "deny"}, "network_mode"),
        ({"mode": "sandbox", "fs_mode": "workspace_rw_scoped", "readable_paths": []}, None),
        ({"mode": "sandbox", "network_allowlist": ["example.com"]}, "network_allowlist"),
        (
            {"mode": "sandbox", "fs_mode": "workspace_readonly", "writable_paths": ["x"]},
            "writable_paths",
        ),
    ],
)
def test_profile_cross_field_rules(data: dict[str, object], needle: str | None) -> None:
    if needle is None:
        ExecutionProfile.model_validate(data)
        return
    with pytest.raises(pydantic.ValidationError, match=needle):
        ExecutionProfile.model_validate(data)


def test_host_profile_may_carry_resource_limits() -> None:
    profile = ExecutionProfile(max_open_files=64, max_cpu_seconds=5)
    assert profile.mode == "host"


@pytest.mark.parametrize(
    "entry", ["example.com", "api.example.com:443", "127.0.0.1:8080", "[::1]:80"]
)
def test_network_allowlist_accepts_host_port(entry: str) -> None:
    ExecutionProfile(mode="sandbox", network_mode="allowlist", network_allowlist=[entry])


# --- loading -----------------------------------------------------------------

DOCUMENT = """
runner:
  shell: /bin/sh
  shell_arg: -c
  policy: unsafe
  env_allowlist: [PATH, LANG]
  redaction_patterns: ['secret-[0-9]+']
execution_profiles:
  sandbox_write:
    mode: sandbox
    fs_mode: workspace_rw_scoped
    writable_paths: [src, docs]
    network_mode: deny
    max_processes: 32
    max_open_files: 256
"""


def test_yaml_document_loads(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(DOCUMENT)
    config = load_config_file(path)
    assert config.runner.shell == "/bin/sh"
    assert config.runner.policy is RunnerPolicy.UNSAFE
    assert config.runner.redaction_patterns == ["secret-[0-9]+"]
    assert config.runner.env_remove == ["CLAUDECODE"]  # untouched default
    profile = config.execution_profiles["sandbox_write"]
    assert profile.max_open_files == 256
    assert profile.writable_paths == ["src", "docs"]


def test_yaml_and_json_round_trip(tmp_path: Path) -> None:
    config = ConfigFile.model_validate(parse_config_text(DOCUMENT))
    dumped = config.model_dump(mode="json")
    yaml_path = tmp_path / "again.yml"
    yaml_path.write_text(yaml.safe_dump(dumped))
    json_path = tmp_path / "again.json"
    json_path.write_text(json.dumps(dumped))
    assert load_config_file(yaml_path) == config
    assert load_config_file(json_path) == config
    # The runner alone round-trips through JSON with the default pattern pack.
    runner = RunnerConfig()
    assert RunnerConfig.model_validate_json(runner.model_dump_json()) == runner


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # an unknown key
        ("runner:\n  shell: /bin/bash\n  sheel_arg: -c\n", "runner.sheel_arg"),
        # a bad limit names the profile's field
        (
            "execution_profiles:\n  p:\n    max_open_files: 0\n",
            "execution_profiles.p.max_open_files",
        ),
    ],
    ids=["unknown-key", "bad-limit"],
)
def test_bad_field_in_file_is_named(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(pydantic.ValidationError) as info:
        load_config_file(path)
    assert where in _error_locs(info.value)


@pytest.mark.parametrize(
    ("name", "text"), [("x.yaml", "runner: [\n"), ("x.json", "{"), ("x.yaml", "- a\n- b\n")]
)
def test_unparsable_file_is_named(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=name):
        load_config_file(path)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config_file(path) == ConfigFile()


def test_host_profile_name_is_reserved() -> None:
    with pytest.raises(pydantic.ValidationError, match="reserved"):
        ConfigFile.model_validate({"execution_profiles": {"host": {"max_processes": 3}}})


# --- resolution --------------------------------------------------------------


def test_resolve_joins_expands_and_orders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", "/users/test")
    monkeypatch.setenv("CI_CACHE", "/cache")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    profile = ExecutionProfile(
        mode="sandbox",
        fs_mode="workspace_rw_scoped",
        writable_paths=["src", "~/.cache/tool", "/abs/out", "src/../docs", "$NOT_SET_ANYWHERE/x"],
        readable_paths=["/shared/artifacts", "~/.orchestratord/logs", "$CI_CACHE/data", "rel"],
        max_memory_mb=512,
    )
    resolved = profile.resolve("sbx", "/workspace/proj", always_writable=["/tmp/always", "out"])
    assert resolved.name == "sbx"
    assert resolved.writable_paths == (
        Path("/tmp/always"),
        Path("/workspace/proj/out"),
        Path("/workspace/proj/src"),
        Path("/users/test/.cache/tool"),
        Path("/abs/out"),
        Path("/workspace/proj/docs"),
        Path("/workspace/proj/$NOT_SET_ANYWHERE/x"),
    )
    assert resolved.readable_paths == (
        Path("/shared/artifacts"),
        Path("/users/test/.orchestratord/logs"),
        Path("/cache/data"),
        Path("/workspace/proj/rel"),
    )
    assert resolved.workspace_root == Path("/workspace/proj")
    assert resolved.max_memory_mb == 512
    assert all(p.is_absolute() for p in resolved.writable_paths + resolved.readable_paths)


def test_resolve_drops_duplicate_writable_paths() -> None:
    profile = ExecutionProfile(
        mode="sandbox", fs_mode="workspace_rw_scoped", writable_paths=["a", "a/"]
    )
    resolved = profile.resolve("p", "/w", always_writable=["/w/a"])
    assert resolved.writable_paths == (Path("/w/a"),)


def test_relative_workspace_root_becomes_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = ExecutionProfile().resolve("p", "ws")
    assert resolved.workspace_root == tmp_path / "ws"


def test_resolved_profile_is_frozen_and_requires_absolute_paths() -> None:
    resolved = ResolvedExecutionProfile.host("/w")
    with pytest.raises(pydantic.ValidationError):
        resolved.name = "other"
    with pytest.raises(pydantic.ValidationError, match="absolute"):
        resolved.model_copy(update={}).model_validate(
            {**resolved.model_dump(), "writable_paths": ("relative",)}
        )


def test_host_profile() -> None:
    host = ResolvedExecutionProfile.host()
    assert host.name == "host"
    assert host.mode == "host"
    assert host.fs_mode == "inherit"
    assert host.network_mode == "inherit"
    assert host.writable_paths == host.readable_paths == ()
    assert host.network_allowlist == ()
    assert host.workspace_root == Path(os.getcwd())
    assert host.resource_limits() is None
    assert not host.is_sandboxed


def test_config_file_resolves_named_and_builtin_profiles() -> None:
    config = ConfigFile.model_validate(parse_config_text(DOCUMENT))
    assert config.resolve_profile("host", "/w").mode == "host"
    resolved = config.resolve_profile("sandbox_write", "/w", always_writable=["/tmp"])
    assert resolved.writable_paths == (Path("/tmp"), Path("/w/src"), Path("/w/docs"))
    with pytest.raises(KeyError, match="sandbox_write"):
        config.resolve_profile("nope", "/w")
