"""The child side of fork/vfork makes raw system calls only (csrc/child.h).

The files whose code runs between fork and exec (csrc/child.c,
csrc/spawn_child.c, csrc/sandbox_child.c) are compiled as the build compiles
them, and the functions their objects leave to libc (``nm -u``) must all be in
a short allow-list: ``syscall`` and a few pure helpers. A libc wrapper such as
``setrlimit`` (which musl runs through ``__synccall``, unsafe in a CLONE_VM
child) or ``sigaction`` makes this fail, whoever adds it. Compiled with the
system compiler and, where installed, with musl's (musl-gcc), whose headers
may turn other calls into libc functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CSRC = ROOT / "csrc"
CHILD_SOURCES = ("child.c", "spawn_child.c", "sandbox_child.c")

# What the child may take from libc: the raw system call entry, errno's
# address (syscall() sets errno; see child.h on why that is safe), and pure
# memory/string helpers (the compiler may also emit calls to them on its own,
# fortified builds their checked variants). Nothing that locks, allocates or
# signals other threads.
ALLOWED = {
    "syscall",
    "__errno_location",
    "memcpy",
    "memmove",
    "memset",
    "strlen",
    "__memcpy_chk",
    "__memmove_chk",
    "__memset_chk",
    "__stack_chk_fail",
}

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="raw-syscall rule: Linux"),
    pytest.mark.skipif(
        not (CSRC / "spawn_child.c").is_file(),
        reason="needs the source tree's csrc/ (absent where a wheel is tested)",
    ),
    pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm"),
]


def _symbols(obj: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", *flags, str(obj)], check=True, capture_output=True, text=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


def _compiler(name: str) -> list[str]:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    if name != "musl-gcc":
        return [name]
    # musl's wrapper sees only musl's headers: the kernel's (linux/, asm/)
    # come from the system, after musl's.
    multiarch = subprocess.run(
        ["gcc", "-print-multiarch"], capture_output=True, text=True, check=False
    ).stdout.strip()
    kernel = ["-idirafter", "/usr/include"]
    if multiarch:
        kernel += ["-idirafter", f"/usr/include/{multiarch}"]
    return [name, *kernel]


@pytest.mark.parametrize("compiler", ["cc", "musl-gcc"])
@pytest.mark.parametrize("optimize", ["-O2", "-O0"])
def test_child_objects_call_only_raw_syscalls(tmp_path: Path, compiler: str, optimize: str) -> None:
    cc = _compiler(compiler)
    undefined: set[str] = set()
    defined: set[str] = set()
    for name in CHILD_SOURCES:
        if not (CSRC / name).is_file():
            continue
        obj = tmp_path / (name + ".o")
        # The flags of the real build (csrc's builder), -O0 too: without
        # optimisation, inline helpers and macros such as htons become calls.
        flags = ["-std=gnu11", optimize, "-D_GNU_SOURCE", "-fvisibility=hidden", "-I", str(CSRC)]
        subprocess.run([*cc, *flags, "-c", str(CSRC / name), "-o", str(obj)], check=True)
        undefined |= _symbols(obj, "-u")
        defined |= _symbols(obj, "--defined-only")
    from_libc = undefined - defined
    assert "syscall" in from_libc  # the check sees the calls at all
    assert from_libc <= ALLOWED, f"child-side code calls libc: {sorted(from_libc - ALLOWED)}"
