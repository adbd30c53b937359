"""Sandboxed spawns make their namespaces with clone() itself (a vfork
child); where clone() may not make a user namespace but unshare() may (a
seccomp policy that inspects clone's flags), the spawn falls back to a real
fork that unshares them, and the sandbox holds all the same."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_spawn.sandbox.linux import probe_capabilities
from tests.helpers import seccomp as seccomp_helper

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux sandbox backend"
)

TESTS = Path(__file__).parent

# Under the filter: a read-only path inside a writable one needs the user and
# mount namespaces (a read-only bind mount), so it proves they were made.
SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.helpers.sandbox import profile, py, run
workspace = Path(sys.argv[2])
prof = profile(workspace, fs_mode="workspace_rw_scoped", writable_paths=["out"],
               readable_paths=["out/ro"])
kept, new = workspace / "out" / "ro" / "kept.txt", workspace / "out" / "new.txt"
denied = run(prof, py(f"attempt(lambda: open({str(kept)!r}, 'w'))"))
allowed = run(prof, py(f"attempt(lambda: open({str(new)!r}, 'w').write('ok'))"))
print(denied, allowed, kept.read_text(), new.read_text())
"""


def test_sandbox_falls_back_to_fork_where_clone_may_not_make_a_user_namespace(
    tmp_path: Path,
) -> None:
    caps = probe_capabilities()
    for feature in ("userns", "landlock", "seccomp"):
        if caps.unavailable(feature) is not None:
            pytest.skip(f"this kernel cannot: {caps.unavailable(feature)}")
    helper = seccomp_helper.build(tmp_path)
    workspace = tmp_path / "ws"
    (workspace / "out" / "ro").mkdir(parents=True)
    (workspace / "out" / "ro" / "kept.txt").write_text("kept")
    rules = seccomp_helper.deny(
        (seccomp_helper.NR_CLONE, errno.EPERM, seccomp_helper.CLONE_NEWUSER),
        (seccomp_helper.NR_CLONE3, errno.ENOSYS),
    )
    result = subprocess.run(
        [str(helper), *rules, "--", sys.executable, "-c", SCRIPT, str(TESTS), str(workspace)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    denied, allowed, kept, new = result.stdout.split()
    assert int(denied) in {errno.EROFS, errno.EACCES, errno.EPERM}
    assert (int(allowed), kept, new) == (0, "kept", "ok")


def test_the_filter_really_refuses_a_user_namespace_to_clone(tmp_path: Path) -> None:
    # The premise of the test above: under these rules clone(CLONE_NEWUSER)
    # fails while unshare(CLONE_NEWUSER) works.
    helper = seccomp_helper.build(tmp_path)
    rules = seccomp_helper.deny(
        (seccomp_helper.NR_CLONE, errno.EPERM, seccomp_helper.CLONE_NEWUSER),
        (seccomp_helper.NR_CLONE3, errno.ENOSYS),
    )
    check = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno())\n"
        "print(libc.unshare(0x10000000))\n"
    )
    result = subprocess.run(
        [str(helper), *rules, "--", sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    clone_line, unshare_line = result.stdout.splitlines()
    assert clone_line == f"-1 {errno.EPERM}"
    if probe_capabilities().unavailable("userns") is None:
        assert unshare_line == "0"
