"""The only module that imports the cffi ``ffi``/``lib`` of the C core.

It checks arguments before each call, and turns the C core's return codes
(0 or -errno, plus a stage) into this package's exceptions in one place.
Sections below belong to the parts of the core: keep each part's wrappers in
its own section.
"""

from __future__ import annotations

try:
    from orchestrator_spawn._core import ffi, lib
except ImportError as err:  # pragma: no cover - only without a build
    raise ImportError(
        "the C core of orchestrator_spawn (orchestrator_spawn._core) is not built; "
        "install the package with pip, or run `python setup.py build_ext --inplace` "
        "in a source checkout"
    ) from err

__all__ = ["CORE_VERSION", "ffi", "lib"]

# Must equal OS_CORE_VERSION in csrc/core_api.h.
CORE_VERSION = 1

if lib.os_core_version() != CORE_VERSION:  # pragma: no cover - broken install
    raise ImportError(
        f"orchestrator_spawn: C core version {lib.os_core_version()} does not match "
        f"the Python package (expects {CORE_VERSION}); reinstall the package"
    )

# --- spawn --------------------------------------------------------------------


# --- redaction ----------------------------------------------------------------


# --- pump ---------------------------------------------------------------------


# --- sandbox ------------------------------------------------------------------
