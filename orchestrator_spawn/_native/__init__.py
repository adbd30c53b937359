"""The only package that imports the cffi ``ffi``/``lib`` of the C core.

One module per part of the core, each the Python side of ``csrc/<part>*``
(declared for cffi in ``csrc/cffi/<part>.h``): :mod:`.spawn` (with fd
parking), :mod:`.redact`, :mod:`.pump`, :mod:`.sandbox`, :mod:`.cgroup`,
:mod:`.doctor`. They check arguments before each call and turn the core's
return codes (0 or -errno, plus a stage) into this package's exceptions,
through :func:`check`. Nothing outside ``_native`` touches ``ffi``/``lib``
or a cdata pointer.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from orchestrator_spawn._core import ffi, lib
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "the C core of orchestrator_spawn (orchestrator_spawn._core) is not built; "
        "install the package with pip, or run `python setup.py build_ext --inplace` "
        "in a source checkout"
    ) from err

__all__ = ["CORE_VERSION", "check", "ffi", "lib"]

# Must equal OS_CORE_VERSION in csrc/core_api.h.
CORE_VERSION = 1

if lib.os_core_version() != CORE_VERSION:  # pragma: no cover - broken install
    raise ImportError(
        f"orchestrator_spawn: C core version {lib.os_core_version()} does not match "
        f"the Python package (expects {CORE_VERSION}); reinstall the package"
    )


def check(rc: int, what: str) -> int:
    """The core's convention: ``rc`` >= 0 is a result, returned; a negative
    ``rc`` is ``-errno``, raised as ``OSError(errno, "<what> failed: <strerror>")``
    (``errno``-specific subclasses such as ``ChildProcessError`` included)."""
    if rc < 0:
        raise OSError(-rc, f"{what} failed: {os.strerror(-rc)}")
    return rc


def enum_names(name_of: Any) -> dict[int, str]:
    """The table ``value -> name`` of a C enum from its name function (which
    returns NULL for a value that is none of them); the names live in C, next
    to the enum."""
    names: dict[int, str] = {}
    for value in range(64):
        text = name_of(value)
        if text != ffi.NULL:
            names[value] = ffi.string(text).decode()
    return names


def check_no_nul(text: str) -> None:
    """``ValueError`` for a path the C side would cut at a NUL byte."""
    if "\0" in text:
        raise ValueError(f"embedded NUL byte in {text!r}")
