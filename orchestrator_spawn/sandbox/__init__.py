"""Sandbox backends for execution profiles with ``mode="sandbox"``.

``prepare_sandbox(profile, argv)`` turns a resolved profile into what the
spawn needs: on Linux a native plan applied in the child between fork and exec
(namespaces, Landlock, seccomp; see ``linux.py``), on macOS an argv rewritten
to run under ``sandbox-exec`` (see ``macos.py``); in allowlist mode also a
proxy the parent runs and the environment pointing the child at it
(``proxy.py``). Whatever the platform cannot enforce makes it raise
``SandboxBackendError`` instead: the command never runs unconfined.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, final

from orchestrator_spawn.errors import SandboxBackendError
from orchestrator_spawn.sandbox.linux import PROXY_PORT_IN_NETNS, SandboxProfile

if TYPE_CHECKING:
    from orchestrator_spawn._native.sandbox import SandboxPlan

__all__ = [
    "PreparedSandbox",
    "SandboxProfile",
    "backend_name",
    "prepare_sandbox",
    "sandbox_doctor",
    "sandbox_preflight",
]

# A plain str, so that type checkers keep every platform's branch reachable.
_PLATFORM: str = sys.platform

BACKEND_HOST = "host"
BACKEND_LINUX = "linux_native"  # the Rust runner's backend labels
BACKEND_MACOS = "macos_seatbelt"


def backend_name() -> str:
    """The label of the sandbox backend this platform uses (the Rust runner's labels:
    ``linux_native``, ``macos_seatbelt``, else ``sandbox_unavailable``); the
    one place that names it, for errors, the runner and the doctor."""
    if _PLATFORM.startswith("linux"):
        return BACKEND_LINUX
    if _PLATFORM == "darwin":
        return BACKEND_MACOS
    return "sandbox_unavailable"


def _missing(profile: SandboxProfile) -> list[tuple[str, str]]:
    """(reason_code, text) for everything ``profile`` needs that is missing here."""
    if profile.mode == "host":
        return []
    if profile.mode != "sandbox":
        return [("unsupported_backend_feature", f"mode={profile.mode!r}")]
    return _allowlist_problems(profile) + _platform_missing(profile)


def _allowlist_problems(profile: SandboxProfile) -> list[tuple[str, str]]:
    if profile.network_mode != "allowlist":
        return []
    from orchestrator_spawn.sandbox.proxy import max_connections_setting, parse_allowlist

    try:
        parse_allowlist(profile.network_allowlist)
        max_connections_setting()
    except ValueError as err:
        return [("unsupported_backend_feature", str(err))]
    return []


def _platform_missing(profile: SandboxProfile) -> list[tuple[str, str]]:
    if _PLATFORM.startswith("linux"):
        from orchestrator_spawn.sandbox import linux

        return [
            (m.reason_code, m.text)
            for m in linux.missing_features(profile, linux.probe_capabilities())
        ]
    if _PLATFORM == "darwin":
        from orchestrator_spawn.sandbox import macos

        return [("sandbox_backend_unavailable", text) for text in macos.missing_features()]
    return [("sandbox_backend_unavailable", f"no sandbox backend for {_PLATFORM}")]


def sandbox_preflight(resolved_profile: SandboxProfile) -> list[str]:
    """What this machine lacks to enforce ``resolved_profile``; empty when it can.

    Host-mode profiles need nothing. Kernel features are probed once per
    process (cached), so calling this per spawn is cheap.
    """
    return [text for _, text in _missing(resolved_profile)]


def sandbox_doctor() -> list[str]:
    """Lines describing the sandbox features of this machine (for the CLI's doctor)."""
    if _PLATFORM.startswith("linux"):
        from orchestrator_spawn.sandbox import linux

        return [f"backend: {BACKEND_LINUX}", *linux.describe(linux.probe_capabilities())]
    if _PLATFORM == "darwin":
        from orchestrator_spawn.sandbox import macos

        missing = macos.missing_features()
        return [f"backend: {BACKEND_MACOS}", *(missing or ["sandbox-exec: ok"])]
    return [f"no sandbox backend for {_PLATFORM}"]


@final
@dataclasses.dataclass(eq=False, repr=False)
class PreparedSandbox:
    """What a spawn under one profile needs; ``close()`` after the child is done.

    ``argv``: the command to run (rewritten under ``sandbox-exec`` on macOS).
    ``env_overrides``: variables to set in the child (the proxy in allowlist
    mode). ``native_plan``: the opaque native plan (``SandboxPlan``) to pass as
    ``spawn(..., _sandbox_plan=...)``, or None (``spawn`` keeps the fd the
    plan needs open in the child: the proxy handoff). ``backend``: the backend name.
    ``close()`` stops the proxy and frees the plan; it is idempotent, and the
    plan must not be used after it.
    """

    argv: list[str]
    env_overrides: dict[str, str]
    native_plan: SandboxPlan | None
    backend: str
    _proxy: Any = None

    def close(self, *, wait: bool = True) -> None:
        """Release the plan and stop the proxy (idempotent); ``wait=False``
        leaves the proxy's shutdown to its thread instead of waiting for it."""
        proxy, self._proxy = self._proxy, None
        plan, self.native_plan = self.native_plan, None
        if proxy is not None:
            proxy.close(wait=wait)
        if plan is not None:
            plan.close()

    def __enter__(self) -> PreparedSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.native_plan is None and self._proxy is None else "open"
        return f"<PreparedSandbox backend={self.backend!r} {state}>"


def _proxy_env(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = url
    # An inherited NO_PROXY would make clients try (and fail) direct connections.
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


def prepare_sandbox(profile: SandboxProfile, argv: Sequence[str]) -> PreparedSandbox:
    """Prepare a spawn of ``argv`` under ``profile``.

    Host-mode profiles get the argv back unchanged with no plan. Raises
    ``SandboxBackendError`` (``reason_code`` ``sandbox_backend_unavailable``
    or ``unsupported_backend_feature``) when the profile cannot be enforced
    here, or when building the plan or starting the proxy fails.
    """
    argv = list(argv)
    if profile.mode == "host":
        return PreparedSandbox(argv, {}, None, BACKEND_HOST)
    backend = backend_name()
    missing = _missing(profile)
    if missing:
        code = (
            "unsupported_backend_feature"
            if any(c == "unsupported_backend_feature" for c, _ in missing)
            else "sandbox_backend_unavailable"
        )
        raise SandboxBackendError(
            profile.name, backend, "sandbox_denied", code, detail="; ".join(t for _, t in missing)
        )
    proxy = None
    try:
        if profile.network_mode == "allowlist":
            from orchestrator_spawn.sandbox.proxy import AllowlistProxy

            proxy = AllowlistProxy(profile.network_allowlist)  # validated by _missing
        if backend == BACKEND_LINUX:
            return _prepare_linux(profile, argv, backend, proxy)
        return _prepare_macos(profile, argv, backend, proxy)
    except BaseException:
        if proxy is not None:
            proxy.close()
        raise


def _unavailable(profile: SandboxProfile, backend: str, err: OSError) -> SandboxBackendError:
    """Setting the sandbox up failed in the parent (proxy, plan): fail closed."""
    return SandboxBackendError(
        profile.name, backend, "sandbox_denied", "sandbox_backend_unavailable", detail=str(err)
    )


def _prepare_linux(
    profile: SandboxProfile, argv: list[str], backend: str, proxy: Any
) -> PreparedSandbox:
    from orchestrator_spawn.sandbox import linux

    env: dict[str, str] = {}
    handoff = -1
    if proxy is not None:
        try:
            handoff = proxy.listen_handoff()
        except OSError as err:
            raise _unavailable(profile, backend, err) from err
        env = _proxy_env(PROXY_PORT_IN_NETNS)
    try:
        plan = linux.build_plan(profile, linux.probe_capabilities(), handoff_fd=handoff)
    except OSError as err:
        raise _unavailable(profile, backend, err) from err
    return PreparedSandbox(argv, env, plan, backend, proxy)


def _prepare_macos(
    profile: SandboxProfile, argv: list[str], backend: str, proxy: Any
) -> PreparedSandbox:
    from orchestrator_spawn.sandbox import macos

    env: dict[str, str] = {}
    port = None
    if proxy is not None:
        try:
            port = proxy.listen_tcp()
        except OSError as err:
            raise _unavailable(profile, backend, err) from err
        env = _proxy_env(port)
    try:
        text = macos.seatbelt_profile(profile, port)
    except ValueError as err:
        raise SandboxBackendError(
            profile.name, backend, "sandbox_denied", "unsupported_backend_feature", detail=str(err)
        ) from err
    return PreparedSandbox(macos.sandboxed_argv(text, argv), env, None, backend, proxy)
