"""Runner configuration models: the runner, its policy, execution profiles.

Everything here is a pydantic v2 model. ``model_validate`` accepts plain dicts
(as parsed from YAML or JSON); unknown keys are rejected and every validation
error names the offending field (pydantic's ``loc``). Validation happens at
load time: redaction regexes must compile, limits must be positive integers,
shells must be absolute paths, and a ``host`` profile may not ask for sandbox
confinement it would silently not get.

``ExecutionProfile.resolve()`` turns a configured profile into the
``ResolvedExecutionProfile`` that :func:`spawn_with_runner` and the sandbox
consume: paths expanded (``~``, ``$VAR``) and made absolute against the
workspace root.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from orchestrator_spawn.patterns import DEFAULT_REDACTION_PATTERNS
from orchestrator_spawn.redact import Redactor

if TYPE_CHECKING:
    from orchestrator_spawn.spawn import ResourceLimits

__all__ = [
    "ConfigFile",
    "ExecutionProfile",
    "ResolvedExecutionProfile",
    "RunnerConfig",
    "RunnerPolicy",
    "load_config_file",
]

# A limit larger than this cannot be expressed in a 64-bit rlim_t once
# max_memory_mb is multiplied by 1 MiB; the others share the bound for symmetry.
_MAX_MEMORY_MB = (1 << 63) // (1024 * 1024) - 1
_MAX_LIMIT = (1 << 63) - 1

_ENV_NAME = re.compile(r"[^=\x00]+")


class RunnerPolicy(str, enum.Enum):
    """How much of the parent's world a runner child gets.

    ``allowlist`` (the default): the shell and its argument must be in the
    configured allow lists and the child sees only allowlisted environment
    variables. ``unsafe``: any shell, and the parent's whole environment.
    """

    UNSAFE = "unsafe"
    ALLOWLIST = "allowlist"


def _reject_bool(value: Any) -> Any:
    # YAML's ``yes``/``true`` would otherwise pass as the integer 1.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


# Positive integers; ``None`` means "no limit".
MemoryLimit = Annotated[int, BeforeValidator(_reject_bool), Field(gt=0, le=_MAX_MEMORY_MB)]
Limit = Annotated[int, BeforeValidator(_reject_bool), Field(gt=0, le=_MAX_LIMIT)]


def _check_absolute(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL byte")
    if not os.path.isabs(value):
        raise ValueError(f"{what} must be an absolute path, got {value!r}")
    return value


def _check_env_name(name: str, what: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{what} entry {name!r} is not a valid environment variable name")
    return name


def _check_redaction_pattern(index: int, pattern: str) -> None:
    # Compile with the engine that will run it (PCRE2), so a pattern that
    # loads here also works in the pump, and PCRE2-only syntax is accepted.
    # The engine also refuses patterns that can match the empty string.
    try:
        Redactor([pattern])
    except ValueError as err:
        raise ValueError(f"redaction_patterns[{index}]: {err}") from err


class RunnerConfig(BaseModel):
    """How runner commands are started: ``[shell, shell_arg, command]``.

    Defaults follow the Rust runner: ``/bin/bash -lc``, ``allowlist`` policy,
    a small environment allowlist, ``CLAUDECODE`` removed from the child's
    environment, and the built-in secret pattern pack
    (:data:`orchestrator_spawn.patterns.DEFAULT_REDACTION_PATTERNS`) as the
    redaction patterns.

    Raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field
    for unknown keys, relative shells, patterns that do not compile or can
    match the empty string, and malformed environment variable names.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    shell: str = "/bin/bash"
    shell_arg: str = "-lc"
    policy: RunnerPolicy = RunnerPolicy.ALLOWLIST
    executor: Literal["shell"] = "shell"
    allowed_shells: list[str] = Field(default_factory=lambda: ["/bin/bash", "/bin/zsh", "/bin/sh"])
    allowed_shell_args: list[str] = Field(default_factory=lambda: ["-lc", "-c"])
    env_allowlist: list[str] = Field(
        default_factory=lambda: ["PATH", "HOME", "USER", "LANG", "TERM"]
    )
    redaction_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACTION_PATTERNS))
    env_remove: list[str] = Field(default_factory=lambda: ["CLAUDECODE"])

    @field_validator("shell")
    @classmethod
    def _shell_absolute(cls, value: str) -> str:
        return _check_absolute(value, "shell")

    @field_validator("allowed_shells")
    @classmethod
    def _allowed_shells_absolute(cls, value: list[str]) -> list[str]:
        return [_check_absolute(item, "allowed_shells entry") for item in value]

    @field_validator("shell_arg")
    @classmethod
    def _shell_arg_valid(cls, value: str) -> str:
        if not value or "\x00" in value:
            raise ValueError("shell_arg must be a non-empty string without NUL bytes")
        return value

    @field_validator("env_allowlist", "env_remove")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        return [_check_env_name(item, "environment") for item in value]

    @field_validator("redaction_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            _check_redaction_pattern(index, pattern)
        return value


FsMode = Literal["inherit", "workspace_readonly", "workspace_rw_scoped"]
NetworkMode = Literal["inherit", "deny", "allowlist"]
ProfileMode = Literal["host", "sandbox"]

_ALLOWLIST_ENTRY = re.compile(
    r"""
    [A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?             # host name / IPv4 label
        (?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*
    | \[[0-9A-Fa-f:.]+\]                                      # bracketed IPv6
    """,
    re.VERBOSE,
)


def _check_allowlist_entry(entry: str) -> str:
    host, port = entry, None
    if entry.startswith("["):
        close = entry.find("]")
        if close != -1 and entry[close + 1 :].startswith(":"):
            host, port = entry[: close + 1], entry[close + 2 :]
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if not _ALLOWLIST_ENTRY.fullmatch(host):
        raise ValueError(f"network_allowlist entry {entry!r} is not host[:port]")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"network_allowlist entry {entry!r} has an invalid port")
    return entry


def _expand(path: str) -> str:
    # Same expansion as the Rust runner: ``~`` and ``$VAR``/``${VAR}``; an unset
    # variable is left in place rather than silently becoming "".
    return os.path.expandvars(os.path.expanduser(path))


def _absolute(path: str | os.PathLike[str], workspace_root: Path) -> Path:
    expanded = _expand(os.fspath(path))
    joined = expanded if os.path.isabs(expanded) else os.path.join(workspace_root, expanded)
    return Path(os.path.normpath(joined))


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(paths))


class ExecutionProfile(BaseModel):
    """A named execution profile as configured (paths still unresolved).

    ``mode="host"`` runs the command unconfined (resource limits still
    apply); ``mode="sandbox"`` confines it as ``fs_mode`` and
    ``network_mode`` say. Limits are in MiB (memory), CPU seconds, processes
    (per user, as ``RLIMIT_NPROC`` counts them) and file descriptors.

    A host profile that sets ``fs_mode``/``network_mode`` other than
    ``inherit`` or lists writable/readable paths or a network allowlist is
    refused: it would run unconfined while looking confined. (The Rust runner
    made the same check at workflow level; resource limits are allowed on host
    profiles here because ``setrlimit`` needs no sandbox.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ProfileMode = "host"
    fs_mode: FsMode = "inherit"
    writable_paths: list[str] = Field(default_factory=list)
    readable_paths: list[str] = Field(default_factory=list)
    network_mode: NetworkMode = "inherit"
    network_allowlist: list[str] = Field(default_factory=list)
    max_memory_mb: MemoryLimit | None = None
    max_cpu_seconds: Limit | None = None
    max_processes: Limit | None = None
    max_open_files: Limit | None = None

    @field_validator("writable_paths", "readable_paths")
    @classmethod
    def _paths_valid(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item or "\x00" in item:
                raise ValueError(f"path {item!r} must be non-empty and free of NUL bytes")
        return value

    @field_validator("network_allowlist")
    @classmethod
    def _allowlist_valid(cls, value: list[str]) -> list[str]:
        return [_check_allowlist_entry(item) for item in value]

    @model_validator(mode="after")
    def _consistent(self) -> ExecutionProfile:
        if self.mode == "host":
            for field in ("fs_mode", "network_mode"):
                if getattr(self, field) != "inherit":
                    raise ValueError(
                        f"{field}={getattr(self, field)!r} needs mode='sandbox' "
                        "(a host profile is never confined)"
                    )
            for field in ("writable_paths", "readable_paths", "network_allowlist"):
                if getattr(self, field):
                    raise ValueError(
                        f"{field} needs mode='sandbox' (a host profile is never confined)"
                    )
        if self.network_allowlist and self.network_mode != "allowlist":
            raise ValueError("network_allowlist is only meaningful with network_mode='allowlist'")
        if self.writable_paths and self.fs_mode != "workspace_rw_scoped":
            raise ValueError("writable_paths is only meaningful with fs_mode='workspace_rw_scoped'")
        return self

    def resolve(
        self,
        name: str,
        workspace_root: str | os.PathLike[str],
        always_writable: Sequence[str | os.PathLike[str]] = (),
    ) -> ResolvedExecutionProfile:
        """Resolve paths against ``workspace_root`` and name the profile.

        ``writable_paths`` become ``always_writable`` followed by the
        configured ones (duplicates dropped, first occurrence kept); every
        path is ``~``/``$VAR``-expanded, joined to the workspace root when
        relative, and normalised. ``workspace_root`` itself is made absolute.
        """
        root = Path(os.path.abspath(_expand(os.fspath(workspace_root))))
        writable = _unique(_absolute(p, root) for p in [*always_writable, *self.writable_paths])
        readable = _unique(_absolute(p, root) for p in self.readable_paths)
        return ResolvedExecutionProfile(
            name=name,
            mode=self.mode,
            fs_mode=self.fs_mode,
            writable_paths=writable,
            readable_paths=readable,
            network_mode=self.network_mode,
            network_allowlist=tuple(self.network_allowlist),
            max_memory_mb=self.max_memory_mb,
            max_cpu_seconds=self.max_cpu_seconds,
            max_processes=self.max_processes,
            max_open_files=self.max_open_files,
            workspace_root=root,
        )


class ResolvedExecutionProfile(BaseModel):
    """An execution profile ready to apply: every path absolute.

    Built by :meth:`ExecutionProfile.resolve` or :meth:`host`. Immutable.
    ``always_writable`` paths come first in ``writable_paths``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    mode: ProfileMode
    fs_mode: FsMode
    writable_paths: tuple[Path, ...]
    readable_paths: tuple[Path, ...]
    network_mode: NetworkMode
    network_allowlist: tuple[str, ...]
    max_memory_mb: int | None
    max_cpu_seconds: int | None
    max_processes: int | None
    max_open_files: int | None
    workspace_root: Path

    @field_validator("writable_paths", "readable_paths", "workspace_root")
    @classmethod
    def _absolute_paths(cls, value: Any) -> Any:
        for path in value if isinstance(value, tuple) else (value,):
            if not path.is_absolute():
                raise ValueError(f"path {str(path)!r} must be absolute")
        return value

    @classmethod
    def host(cls, workspace_root: str | os.PathLike[str] | None = None) -> ResolvedExecutionProfile:
        """The built-in ``host`` profile: unconfined, no limits.

        ``workspace_root`` defaults to the current directory.
        """
        return ExecutionProfile().resolve("host", workspace_root or os.getcwd())

    @property
    def is_sandboxed(self) -> bool:
        """True when the command must run under a sandbox backend."""
        return self.mode == "sandbox"

    def resource_limits(self) -> ResourceLimits | None:
        """The profile's limits as :class:`ResourceLimits`, or None if it sets none.

        ``max_memory_mb`` becomes ``memory_bytes`` (MiB times 1048576).
        """
        if (
            self.max_memory_mb is None
            and self.max_cpu_seconds is None
            and self.max_processes is None
            and self.max_open_files is None
        ):
            return None
        from orchestrator_spawn.spawn import ResourceLimits

        return ResourceLimits(
            memory_bytes=None if self.max_memory_mb is None else self.max_memory_mb * 1024 * 1024,
            cpu_seconds=self.max_cpu_seconds,
            processes=self.max_processes,
            open_files=self.max_open_files,
        )


class ConfigFile(BaseModel):
    """A configuration document: the runner plus named execution profiles.

    YAML or JSON, e.g.::

        runner:
          shell: /bin/bash
          policy: allowlist
        execution_profiles:
          sandbox_write:
            mode: sandbox
            fs_mode: workspace_rw_scoped
            writable_paths: [src, docs]
            network_mode: deny

    The profile name ``host`` is reserved for the built-in host profile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    execution_profiles: dict[str, ExecutionProfile] = Field(default_factory=dict)

    @field_validator("execution_profiles")
    @classmethod
    def _host_reserved(cls, value: dict[str, ExecutionProfile]) -> dict[str, ExecutionProfile]:
        if "host" in value and value["host"] != ExecutionProfile():
            raise ValueError("the profile name 'host' is reserved for the built-in host profile")
        return value

    def resolve_profile(
        self,
        name: str,
        workspace_root: str | os.PathLike[str],
        always_writable: Sequence[str | os.PathLike[str]] = (),
    ) -> ResolvedExecutionProfile:
        """Resolve the profile called ``name`` (``"host"`` is always defined).

        Raises ``KeyError`` naming the profile and the known names.
        """
        if name == "host" and name not in self.execution_profiles:
            return ExecutionProfile().resolve("host", workspace_root, always_writable)
        try:
            profile = self.execution_profiles[name]
        except KeyError:
            known = ", ".join(sorted({"host", *self.execution_profiles})) or "none"
            raise KeyError(f"unknown execution profile {name!r} (known: {known})") from None
        return profile.resolve(name, workspace_root, always_writable)


def parse_config_text(text: str, *, source: str = "<string>") -> Mapping[str, Any]:
    """Parse YAML (a superset of JSON) into a mapping.

    Raises ``ValueError`` naming ``source`` when the text is not a YAML/JSON
    mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML/JSON: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Load a :class:`ConfigFile` from a ``.yaml``/``.yml``/``.json`` file.

    JSON files are parsed with :mod:`json` (strict), anything else as YAML.
    Raises ``OSError`` if the file cannot be read, ``ValueError`` naming the
    file if it does not parse, and ``pydantic.ValidationError`` naming the
    field if a value is invalid.
    """
    text = Path(path).read_text(encoding="utf-8")
    source = os.fspath(path)
    if source.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON: {err}") from err
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: the top level must be an object")
    else:
        data = parse_config_text(text, source=source)
    return ConfigFile.model_validate(data)
