"""The Linux sandbox, end to end with real children, files and sockets.

Every test runs a real sandboxed child; the parent (this process) checks
the effect. Sockets are on 127.0.0.1 / ::1 only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_spawn import (
    ResourceLimits,
    SandboxBackendError,
    sandbox_preflight,
    spawn,
)
from orchestrator_spawn._native.sandbox import SandboxPlan
from orchestrator_spawn.config import ResolvedExecutionProfile
from orchestrator_spawn.sandbox import prepare_sandbox
from orchestrator_spawn.sandbox.linux import DISABLE_ENV, probe_capabilities
from tests.helpers import sandbox as sbx
from tests.helpers.http_origin import Origin, nothing_accepted, nothing_received, udp_receiver
from tests.helpers.http_origin import tcp_listener as listening_socket
from tests.helpers.sandbox import CHILD_PYTHON, DENIED, LINUX_ONLY, needs, profile, py, run
from tests.helpers.sandbox import run as run_profile

pytestmark = LINUX_ONLY


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "ro").mkdir()
    (ws / "out" / "ro" / "kept.txt").write_text("original")
    (ws / "src.txt").write_text("source")
    (tmp_path / "outside").mkdir()
    return ws


# --- filesystem --------------------------------------------------------------


def test_allowed_write_works_and_outside_write_fails(workspace: Path) -> None:
    needs("landlock", "seccomp")
    prof = profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    inside = workspace / "out" / "made.txt"
    outside = workspace.parent / "outside" / "escaped.txt"
    assert run(prof, py(f"attempt(lambda: open({str(inside)!r}, 'w').write('ok'))")) == 0
    assert inside.read_text() == "ok"
    assert run(prof, py(f"attempt(lambda: open({str(outside)!r}, 'w'))")) in DENIED
    assert not outside.exists()
    # Reading stays allowed everywhere.
    assert run(prof, py(f"attempt(lambda: open({str(workspace / 'src.txt')!r}).read())")) == 0


def test_workspace_readonly_allows_no_write_but_dev_null(workspace: Path) -> None:
    needs("landlock", "seccomp")
    prof = profile(workspace, fs_mode="workspace_readonly")
    target = workspace / "out" / "nope.txt"
    assert run(prof, py(f"attempt(lambda: open({str(target)!r}, 'w'))")) in DENIED
    assert run(prof, py(f"attempt(lambda: os.mkdir({str(workspace / 'd')!r}))")) in DENIED
    assert run(prof, py(f"attempt(lambda: os.remove({str(workspace / 'src.txt')!r}))")) in DENIED
    assert run(prof, py("attempt(lambda: open('/dev/null', 'w').write('x'))")) == 0
    assert not target.exists()
    assert (workspace / "src.txt").read_text() == "source"


def test_readable_path_stays_read_only_inside_writable_path(workspace: Path) -> None:
    needs("landlock", "seccomp", "userns")
    prof = profile(
        workspace,
        fs_mode="workspace_rw_scoped",
        writable_paths=["out"],
        readable_paths=["out/ro"],
    )
    kept = workspace / "out" / "ro" / "kept.txt"
    assert run(prof, py(f"attempt(lambda: open({str(kept)!r}, 'w'))")) in DENIED
    new = workspace / "out" / "ro" / "new.txt"
    assert run(prof, py(f"attempt(lambda: open({str(new)!r}, 'w'))")) in DENIED
    assert run(prof, py(f"attempt(lambda: os.remove({str(kept)!r}))")) in DENIED | {errno.EBUSY}
    assert run(prof, py(f"attempt(lambda: open({str(kept)!r}).read())")) == 0
    # Its writable parent stays writable.
    assert run(prof, py(f"attempt(lambda: open({str(workspace / 'out' / 'w')!r}, 'w'))")) == 0
    assert kept.read_text() == "original"
    assert not new.exists()


def test_missing_readable_path_inside_writable_path_is_refused(workspace: Path) -> None:
    prof = profile(
        workspace,
        fs_mode="workspace_rw_scoped",
        writable_paths=["out"],
        readable_paths=["out/not-there"],
    )
    with pytest.raises(SandboxBackendError) as info:
        prepare_sandbox(prof, ["/bin/true"])
    assert info.value.reason_code == "unsupported_backend_feature"
    assert "not-there" in str(info.value)


def test_grandchild_is_confined_too(workspace: Path) -> None:
    needs("landlock", "seccomp")
    prof = profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"])
    outside = workspace.parent / "outside" / "grandchild.txt"
    inside = workspace / "out" / "grandchild.txt"
    script = f'echo hi > "{inside}" && sh -c \'echo hi > "{outside}"\''
    assert run(prof, ["/bin/sh", "-c", script]) != 0
    assert inside.read_text() == "hi\n"
    assert not outside.exists()


# --- network deny ---------------------------------------------------------------


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    with listening_socket() as sock:
        yield sock


def _run_seccomp_only(argv: list[str]) -> int:
    """argv under a plan with nothing but the deny filter (no namespace)."""
    with SandboxPlan() as plan:
        plan.set_seccomp(deny_ip_sockets=True, allow_inet_only=False)
        with spawn(argv, env=dict(os.environ), _sandbox_plan=plan) as child:
            return child.wait_blocking(timeout=60)


@pytest.mark.parametrize("seccomp_only", [False, True], ids=["netns+seccomp", "seccomp-only"])
def test_deny_blocks_tcp_udp_and_ipv6(
    workspace: Path, tcp_listener: socket.socket, seccomp_only: bool
) -> None:
    needs("seccomp")
    prof = profile(workspace, network_mode="deny")

    def run(prof: ResolvedExecutionProfile, argv: list[str]) -> int:
        return _run_seccomp_only(argv) if seccomp_only else run_profile(prof, argv)

    port = tcp_listener.getsockname()[1]
    code = f"attempt(lambda: socket.create_connection(('127.0.0.1', {port}), timeout=5))"
    assert run(prof, py(code)) != 0
    assert nothing_accepted(tcp_listener)

    with udp_receiver() as udp:
        code = (
            "attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'leak', ('127.0.0.1', {udp.getsockname()[1]})))"
        )
        assert run(prof, py(code)) != 0
        assert nothing_received(udp)  # the child has exited: a datagram sent would be queued

    code = "attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))"
    assert run(prof, py(code)) in DENIED
    code = "attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))"
    assert run(prof, py(code)) in DENIED


def test_deny_blocks_ipv6_loopback_listener(workspace: Path) -> None:
    needs("seccomp")
    with contextlib.ExitStack() as stack:
        try:
            listener = stack.enter_context(listening_socket("::1"))
        except OSError as err:
            pytest.skip(f"no IPv6 loopback here: {err}")
        prof = profile(workspace, network_mode="deny")
        port = listener.getsockname()[1]
        code = f"attempt(lambda: socket.create_connection(('::1', {port}), timeout=5))"
        assert run(prof, py(code)) != 0
        assert nothing_accepted(listener)


def test_deny_keeps_unix_socketpairs_working(workspace: Path) -> None:
    needs("seccomp")
    prof = profile(workspace, network_mode="deny")
    code = (
        "a, b = socket.socketpair(); a.sendall(b'ping'); sys.exit(0 if b.recv(4) == b'ping' else 3)"
    )
    assert run(prof, py(code)) == 0


def test_deny_confines_grandchildren(workspace: Path, tcp_listener: socket.socket) -> None:
    needs("seccomp")
    prof = profile(workspace, network_mode="deny")
    port = tcp_listener.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
    argv = ["/bin/sh", "-c", '"$PY" -c "$CODE"']
    assert run(prof, argv, env={"PY": CHILD_PYTHON, "CODE": code}) != 0
    assert nothing_accepted(tcp_listener)


# --- network allowlist ------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[Origin, Origin]]:
    with Origin(b"hello from allowed") as allowed, Origin(b"hello from other") as other:
        yield allowed, other


FETCH = """
import urllib.error, urllib.request
def fetch(url, expect):
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as e:
        sys.exit(e.code - 300)   # 403 -> 103
    sys.exit(0 if body == expect else 3)
"""


def _fetch_through_the_proxy(workspace: Path, allowed: Origin, host: str, path: str) -> None:
    """A child allowed ``host:port`` fetches ``path`` from ``allowed`` by that name."""
    needs("userns", "seccomp")
    prof = profile(
        workspace, network_mode="allowlist", network_allowlist=[f"{host}:{allowed.port}"]
    )
    code = FETCH + f"fetch('http://{host}:{allowed.port}{path}', 'hello from allowed')"
    assert run(prof, py(code)) == 0
    assert allowed.paths == [path]


def test_allowlist_lets_allowed_server_through_the_proxy(
    workspace: Path, servers: tuple[Origin, Origin]
) -> None:
    _fetch_through_the_proxy(workspace, servers[0], "127.0.0.1", "/a?x=1")


def test_allowlist_resolves_names_in_the_parent(
    workspace: Path, servers: tuple[Origin, Origin]
) -> None:
    _fetch_through_the_proxy(workspace, servers[0], "localhost", "/named")


def test_allowlist_refuses_other_servers_and_direct_connections(
    workspace: Path, servers: tuple[Origin, Origin]
) -> None:
    needs("userns", "seccomp")
    allowed, other = servers
    prof = profile(
        workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{allowed.port}"]
    )
    code = FETCH + f"fetch('http://127.0.0.1:{other.port}/', '')"
    assert run(prof, py(code)) == 403 - 300
    # Direct, without the proxy: nothing in the child's namespace leads out.
    for host in ("127.0.0.1", "::1"):
        code = f"attempt(lambda: socket.create_connection(({host!r}, {allowed.port}), timeout=5))"
        assert run(prof, py(code)) != 0
    code = f"attempt(lambda: socket.create_connection(('127.0.0.1', {other.port}), timeout=5))"
    assert run(prof, py(code)) != 0
    with udp_receiver() as udp:
        code = (
            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'leak', ('127.0.0.1', {udp.getsockname()[1]}))"
        )
        run(prof, py(code))  # may "succeed" inside the namespace: it must not arrive here
        assert nothing_received(udp)
    assert allowed.paths == []
    assert other.paths == []


def test_allowlist_connect_tunnel_to_allowed_port_only(workspace: Path) -> None:
    needs("userns", "seccomp")
    with listening_socket(blocking=True) as echo:
        port = echo.getsockname()[1]

        def serve() -> None:
            conn, _ = echo.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        prof = profile(workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{port}"])
        code = f"""
from urllib.parse import urlsplit
proxy = urlsplit(os.environ['HTTPS_PROXY'])
def tunnel(target):
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    s.sendall(f'CONNECT {{target}} HTTP/1.1\\r\\nHost: {{target}}\\r\\n\\r\\n'.encode())
    return s, s.recv(200)
s, head = tunnel('127.0.0.1:{port + 1 if port < 65535 else port - 1}')
if not head.startswith(b'HTTP/1.1 403'):
    sys.exit(4)
s, head = tunnel('127.0.0.1:{port}')
if not head.startswith(b'HTTP/1.1 200'):
    sys.exit(5)
s.sendall(b'tunnelled')
sys.exit(0 if s.recv(100) == b'TUNNELLED' else 6)
"""
        assert run(prof, py(code)) == 0
        thread.join(10)


def test_allowlist_without_userns_is_refused(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_ENV, "userns")
    prof = profile(workspace, network_mode="allowlist", network_allowlist=["example.org"])
    assert any("allowlist" in line for line in sandbox_preflight(prof))
    with pytest.raises(SandboxBackendError) as info:
        prepare_sandbox(prof, ["/bin/true"])
    assert info.value.reason_code == "sandbox_backend_unavailable"


# --- escape hatches, scopes, limits -------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "attempt(lambda: os.unshare(0x10000000) if hasattr(os, 'unshare') else "
        "_raise(ctypes.CDLL(None, use_errno=True).unshare(0x10000000)))",
        "attempt(lambda: _raise(ctypes.CDLL(None, use_errno=True).ptrace(0, 0, 0, 0)))",
        "attempt(lambda: _raise(ctypes.CDLL(None, use_errno=True).syscall(425, 1, "
        "ctypes.create_string_buffer(256))))",
        "attempt(lambda: _raise(ctypes.CDLL(None, use_errno=True).mount(b'none', b'/mnt', "
        "b'tmpfs', 0, None)))",
        "import fcntl, termios\nattempt(lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x'))",
    ],
    ids=["unshare", "ptrace", "io_uring_setup", "mount", "TIOCSTI"],
)
def test_escape_hatches_fail_with_eperm(workspace: Path, code: str) -> None:
    needs("seccomp")
    prof = profile(workspace)
    helper = "def _raise(rc):\n    if rc < 0: raise OSError(ctypes.get_errno(), 'x')\n"
    assert run(prof, py(helper + code)) == errno.EPERM


def test_clone3_is_refused_so_libc_falls_back_to_checkable_clone(workspace: Path) -> None:
    needs("seccomp")
    code = (
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.syscall(435, None, 0)\n"
        "sys.exit(ctypes.get_errno() if rc < 0 else 0)"
    )
    assert run(profile(workspace), py(code)) == errno.ENOSYS
    assert run(profile(workspace, mode="host"), py(code)) != errno.ENOSYS  # control


def test_signals_to_processes_outside_the_sandbox_are_refused(workspace: Path) -> None:
    needs("landlock", "seccomp")
    if probe_capabilities().landlock_abi < 6:
        pytest.skip("Landlock signal scoping needs ABI 6")
    prof = profile(workspace)
    # ESRCH where the job has its own pid namespace (the parent cannot even
    # be named from inside), else Landlock's EPERM.
    outcome = run(prof, py(f"attempt(lambda: os.kill({os.getpid()}, 0))"))
    assert outcome in (errno.EPERM, errno.ESRCH)


def test_parent_is_never_restricted(workspace: Path, tcp_listener: socket.socket) -> None:
    needs("landlock", "seccomp")
    prof = profile(workspace, fs_mode="workspace_readonly", network_mode="deny")
    assert run(prof, py("attempt(lambda: open('/etc/hostname-nope', 'w'))")) in DENIED
    status = Path("/proc/self/status").read_text()
    assert "\nSeccomp:\t0\n" in status
    assert "\nNoNewPrivs:\t0\n" in status
    outside = workspace.parent / "outside" / "parent.txt"
    outside.write_text("parent writes")
    with socket.create_connection(tcp_listener.getsockname(), timeout=5):
        pass
    assert outside.read_text() == "parent writes"


# --- fail closed --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disabled", "fields"),
    [
        ("landlock", {"fs_mode": "workspace_readonly"}),
        ("seccomp", {"network_mode": "deny"}),
        ("seccomp", {}),
        ("all", {"fs_mode": "workspace_rw_scoped", "writable_paths": ["out"]}),
    ],
)
def test_forced_unavailable_probe_refuses_the_spawn(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, disabled: str, fields: dict[str, Any]
) -> None:
    monkeypatch.setenv(DISABLE_ENV, disabled)
    prof = profile(workspace, **fields)
    marker = workspace / "ran"
    assert sandbox_preflight(prof) != []
    with pytest.raises(SandboxBackendError) as info:
        run(prof, ["/bin/sh", "-c", f'touch "{marker}"'])
    assert info.value.reason_code == "sandbox_backend_unavailable"
    assert info.value.execution_profile == "test"
    assert disabled in str(info.value) or "disabled" in str(info.value)
    assert not marker.exists()


def test_probe_is_cached_and_preflight_is_empty_when_enforceable(workspace: Path) -> None:
    needs("landlock", "seccomp", "userns")
    assert probe_capabilities() is probe_capabilities()
    prof = profile(
        workspace,
        fs_mode="workspace_rw_scoped",
        writable_paths=["out"],
        readable_paths=["out/ro"],
        network_mode="allowlist",
        network_allowlist=["127.0.0.1:9"],
    )
    assert sandbox_preflight(prof) == []


def test_control_host_profile_runs_the_same_snippets_unconfined(
    workspace: Path, tcp_listener: socket.socket
) -> None:
    # The same children as above succeed without a sandbox: the refusals above
    # come from the sandbox, not from the snippets.
    prof = profile(workspace, mode="host")
    outside = workspace.parent / "outside" / "host.txt"
    assert run(prof, py(f"attempt(lambda: open({str(outside)!r}, 'w').write('x'))")) == 0
    port = tcp_listener.getsockname()[1]
    code = f"attempt(lambda: socket.create_connection(('127.0.0.1', {port}), timeout=5))"
    assert run(prof, py(code)) == 0
    assert outside.read_text() == "x"


def test_allowlist_handoff_channel_is_closed_before_the_program_runs(workspace: Path) -> None:
    needs("userns", "seccomp")
    prof = profile(workspace, network_mode="allowlist", network_allowlist=["127.0.0.1:9"])
    # The program holds no fd but its stdio: the handoff end was closed.
    code = "sys.exit(0 if sorted(map(int, os.listdir('/proc/self/fd')))[:4] == [0, 1, 2, 3] "
    code += "and len(os.listdir('/proc/self/fd')) == 4 else 9)"  # 3: listdir's own fd
    with prepare_sandbox(prof, py(code)) as prepared, sbx.spawn_prepared(prepared) as child:
        assert child.wait_blocking(timeout=60) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root is exempt from RLIMIT_NPROC")
def test_process_limit_holds_inside_the_sandbox(workspace: Path) -> None:
    needs("seccomp")
    prof = profile(workspace, fs_mode="workspace_readonly", network_mode="deny")
    limits = ResourceLimits(processes=1)
    assert run(prof, py("attempt(os.fork)"), limits=limits) == errno.EAGAIN


def test_open_files_and_memory_limits_hold_inside_the_sandbox(workspace: Path) -> None:
    needs("seccomp", "landlock")
    prof = profile(workspace, fs_mode="workspace_readonly", network_mode="deny")
    code = "attempt(lambda: [open('/dev/null') for _ in range(64)])"
    assert run(prof, py(code), limits=ResourceLimits(open_files=32)) == errno.EMFILE
    code = "import sys\ntry:\n    bytearray(512 << 20)\nexcept MemoryError:\n    sys.exit(42)"
    assert run(prof, py(code), limits=ResourceLimits(memory_bytes=256 << 20)) == 42


def test_concurrent_allowlist_sandboxes_keep_their_own_allowlists(
    workspace: Path, servers: tuple[Origin, Origin]
) -> None:
    needs("userns", "seccomp")
    from concurrent.futures import ThreadPoolExecutor

    pair = list(servers)

    def one(i: int) -> tuple[int, int]:
        mine, theirs = pair[i % 2], pair[(i + 1) % 2]
        prof = profile(
            workspace, network_mode="allowlist", network_allowlist=[f"127.0.0.1:{mine.port}"]
        )
        name = "allowed" if mine is pair[0] else "other"
        good = FETCH + f"fetch('http://127.0.0.1:{mine.port}/{i}', 'hello from {name}')"
        bad = FETCH + f"fetch('http://127.0.0.1:{theirs.port}/{i}', '')"
        return run(prof, py(good)), run(prof, py(bad))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, range(6)))
    assert results == [(0, 403 - 300)] * 6
    assert sorted(pair[0].paths) == sorted(f"/{i}" for i in range(0, 6, 2))
    assert sorted(pair[1].paths) == sorted(f"/{i}" for i in range(1, 6, 2))
