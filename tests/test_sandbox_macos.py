"""The macOS backend: the generated Seatbelt text (everywhere) and real runs (macOS)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_spawn.sandbox import macos, prepare_sandbox
from tests.helpers.sandbox import profile

IP_LITERAL = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b|\[[0-9a-fA-F:]+\]|\b::1\b")


def _rules(text: str, operation: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"(allow {operation}")]


def test_readonly_profile_denies_by_default_and_writes_only_devices(tmp_path: Path) -> None:
    text = macos.seatbelt_profile(profile(tmp_path, fs_mode="workspace_readonly"))
    lines = text.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert "(allow file-read*)" in lines
    (write,) = _rules(text, "file-write")
    assert '(literal "/dev/null")' in write
    assert "subpath" not in write
    assert str(tmp_path) not in text


def test_scoped_profile_writes_canonical_subpaths_and_keeps_readable_read_only(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real"
    (real / "ro").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    prof = profile(
        tmp_path,
        fs_mode="workspace_rw_scoped",
        writable_paths=["link"],
        readable_paths=["link/ro"],
    )
    text = macos.seatbelt_profile(prof)
    canonical = os.path.realpath(real)
    (write,) = _rules(text, "file-write")
    assert f'(subpath "{canonical}")' in write
    assert str(tmp_path / "link") not in text  # only the canonical spelling
    deny = [line for line in text.splitlines() if line.startswith("(deny file-write*")]
    assert deny == [f'(deny file-write* (subpath "{canonical}/ro"))']
    assert text.index("(allow file-write*") < text.index("(deny file-write*")


def test_paths_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / 'we"ird\\dir'
    odd.mkdir()
    prof = profile(tmp_path, fs_mode="workspace_rw_scoped", writable_paths=[str(odd)])
    text = macos.seatbelt_profile(prof)
    assert 'we\\"ird\\\\dir' in text


@pytest.mark.parametrize("mode", ["inherit", "deny", "allowlist"])
def test_network_rules_have_no_ip_literals_and_no_local_ip_rule(tmp_path: Path, mode: str) -> None:
    allowlist = ["example.org:443"] if mode == "allowlist" else []
    prof = profile(tmp_path, network_mode=mode, network_allowlist=allowlist)
    text = macos.seatbelt_profile(prof, 41234 if mode == "allowlist" else None)
    assert not IP_LITERAL.search(text)
    assert "local ip" not in text
    assert "example.org" not in text  # the proxy enforces the allowlist, not the profile
    network = [line for line in text.splitlines() if "network" in line]
    if mode == "inherit":
        assert network == ["(allow network*)"]
    elif mode == "deny":
        assert all("unix" in line for line in network)
    else:
        outbound_tcp = [line for line in network if "tcp" in line]
        assert outbound_tcp == ['(allow network-outbound (remote tcp "localhost:41234"))']


def test_allowlist_without_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="proxy port"):
        macos.seatbelt_profile(profile(tmp_path, network_mode="allowlist"))


def test_argv_rewrite(tmp_path: Path) -> None:
    assert macos.sandboxed_argv("(version 1)", ["/bin/echo", "hi"]) == [
        "/usr/bin/sandbox-exec",
        "-p",
        "(version 1)",
        "/bin/echo",
        "hi",
    ]


@pytest.mark.macos_only
@pytest.mark.skipif(sys.platform != "darwin", reason="needs macOS sandbox-exec")
def test_real_sandbox_exec_confines_writes(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    prof = profile(
        tmp_path, fs_mode="workspace_rw_scoped", writable_paths=["out"], network_mode="deny"
    )
    inside, outside = tmp_path / "out" / "a", tmp_path / "b"
    script = f'echo ok > "{inside}"; echo no > "{outside}"; echo x > /dev/null'
    with prepare_sandbox(prof, ["/bin/sh", "-c", script]) as prepared:
        result = subprocess.run(prepared.argv, capture_output=True, check=False)
    assert result.returncode != 0
    assert inside.read_text() == "ok\n"
    assert not outside.exists()
