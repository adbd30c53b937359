"""The cffi builder for ``orchestrator_spawn._core``: cdef + set_source, nothing else.

Not part of the installed package: setup.py names it in ``cffi_modules``.

``csrc/cffi/<part>.h`` (as pynacl keeps ``src/bindings/*.h``) declares, once,
what ``orchestrator_spawn/_native/`` calls of one part of the core, with its
documentation: it is a C header that ``csrc/<part>_api.h`` includes, and the
cdef is the same text without its preprocessor lines (see ``cdef_text``). The
constants Python reads are listed there as ``#define NAME ...`` inside a
block the compiler never sees; the compiler fills their values in from
``<part>_api.h``. Internals and the child-only hooks are in no cffi header.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from cffi import FFI

CSRC = Path(__file__).resolve().parent
# In dependency order: a part's declarations may use the types of the parts
# before it (spawn takes a sandbox plan, pump a pattern set).
PARTS = ("core", "fdpark", "sandbox", "spawn", "cgroup", "redact", "pump", "doctor")


def _pcre2_flags() -> tuple[list[str], list[str]]:
    """Compiler and linker flags for the 8-bit PCRE2 library.

    ``ORCHESTRATOR_SPAWN_PCRE2_CFLAGS`` / ``_LIBS`` override (wheel builds link a
    static PCRE2 that way); otherwise ``pcre2-config`` or ``pkg-config`` decide.
    """
    cflags = os.environ.get("ORCHESTRATOR_SPAWN_PCRE2_CFLAGS")
    libs = os.environ.get("ORCHESTRATOR_SPAWN_PCRE2_LIBS")
    if cflags is not None or libs is not None:
        return shlex.split(cflags or ""), shlex.split(libs or "-lpcre2-8")
    for probe in (["pcre2-config", "--cflags"], ["pkg-config", "--cflags", "libpcre2-8"]):
        try:
            found_cflags = subprocess.check_output(probe, text=True).split()
            lib_probe = (
                ["pcre2-config", "--libs8"]
                if probe[0] == "pcre2-config"
                else ["pkg-config", "--libs", "libpcre2-8"]
            )
            return found_cflags, subprocess.check_output(lib_probe, text=True).split()
        except (OSError, subprocess.CalledProcessError):
            continue
    return [], ["-lpcre2-8"]


def _extra_cflags() -> list[str]:
    """``ORCHESTRATOR_SPAWN_CFLAGS_EXTRA``: flags appended to the C core's own.

    CI and scripts/test set ``-Werror`` (the core compiles clean under
    ``-Wall -Wextra``); scripts/test-sanitizers adds the ASan/UBSan flags. A
    user's build never turns warnings into errors by default.
    """
    return shlex.split(os.environ.get("ORCHESTRATOR_SPAWN_CFLAGS_EXTRA", ""))


def _relative(path: Path) -> str:
    # setuptools wants source paths relative to the project root.
    return os.path.relpath(path, os.getcwd())


_sources = sorted(CSRC.glob("*.c"))
_pcre2_cflags, _pcre2_libs = _pcre2_flags()

_CDEF_CONSTANT = re.compile(r"#define\s+\w+\s+\.\.\.\s*$")


def cdef_text(part: str) -> str:
    """The cdef of one part: ``csrc/cffi/<part>.h`` without its preprocessor
    lines (include guard, ``#ifdef OS_CFFI_CDEF``), except the constants
    declared ``#define NAME ...`` inside that never-defined block, which only
    cffi reads (the compiler takes their values from ``<part>_api.h``)."""
    lines = (CSRC / "cffi" / f"{part}.h").read_text().splitlines()
    return "\n".join(
        line for line in lines if not line.startswith("#") or _CDEF_CONSTANT.match(line)
    )


ffibuilder = FFI()
for _part in PARTS:
    ffibuilder.cdef(cdef_text(_part))

ffibuilder.set_source(
    "orchestrator_spawn._core",
    "\n".join(f'#include "{part}_api.h"' for part in PARTS),
    sources=[_relative(s) for s in _sources],
    include_dirs=[_relative(CSRC)],
    define_macros=[("_GNU_SOURCE", "1")] if sys.platform.startswith("linux") else [],
    extra_compile_args=[
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-fvisibility=hidden",
        *_pcre2_cflags,
        *_extra_cflags(),
    ],
    extra_link_args=[*_pcre2_libs, *_extra_cflags()],
    # Free-threaded interpreters have no stable ABI to target (setup.py gives
    # their wheel the interpreter's own tag): compile against its full API.
    # cffi does that by itself before 3.15; saying so keeps 3.15t the same.
    **({"py_limited_api": False} if sysconfig.get_config_var("Py_GIL_DISABLED") else {}),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
