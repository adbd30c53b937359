/*
 * core_api.h: the version handshake between the C core and the Python package.
 *
 * Each part's *_api.h is its C header: its constants, and (included from
 * csrc/cffi/<part>.h, which csrc/build.py also reads as the cdef) the
 * functions and types Python calls, declared once there.
 */
#ifndef OS_CORE_API_H
#define OS_CORE_API_H

/* Bump together with CORE_VERSION in orchestrator_spawn/_native/__init__.py. */
#define OS_CORE_VERSION 1

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/core.h (the cdef reads the same file). */
#include "cffi/core.h"

#endif
