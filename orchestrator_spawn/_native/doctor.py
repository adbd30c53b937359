"""The probes of ``orchestrator-spawn doctor`` (``csrc/doctor.c``)."""

from __future__ import annotations

from typing import Any

from orchestrator_spawn._native import check, ffi, lib

_DOCTOR_TEXT = 256


def doctor_kernel_probe(name: str) -> int:
    """Try one kernel feature the spawn core uses; 0 when it works, else the errno.

    ``name``: ``"pidfd_open"``, ``"close_range"`` or ``"clone_pidfd"`` (a
    real ``clone(CLONE_PIDFD)`` of a child that exits at once and is reaped).
    Other platforms than Linux report ``ENOSYS``. Raises ``KeyError`` for an
    unknown name.
    """
    probes = {
        "pidfd_open": lib.os_doctor_pidfd_open,
        "close_range": lib.os_doctor_close_range,
        "clone_pidfd": lib.os_doctor_clone_pidfd,
    }
    return -int(probes[name]())


def _doctor_text(call: Any, what: str) -> str:
    buf = ffi.new("char[]", _DOCTOR_TEXT)
    check(call(buf, _DOCTOR_TEXT), what)
    return bytes(ffi.string(buf)).decode("ascii", "replace")


def doctor_pcre2() -> tuple[str, bool, bool, str]:
    """The linked PCRE2: ``(version, JIT built in, JIT usable here, JIT target)``.

    "Usable" means JIT-compiling a trivial pattern succeeded (it fails where
    the system refuses executable memory). Raises ``MemoryError``.
    """
    works = int(lib.os_doctor_pcre2_jit_works())
    if works < 0:
        raise MemoryError("orchestrator_spawn: out of memory probing the PCRE2 JIT")
    return (
        _doctor_text(lib.os_doctor_pcre2_version, "reading the PCRE2 version"),
        bool(lib.os_doctor_pcre2_jit_built()),
        bool(works),
        _doctor_text(lib.os_doctor_pcre2_jit_target, "reading the PCRE2 JIT target"),
    )
