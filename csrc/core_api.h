/*
 * core_api.h: the version handshake between the C core and the Python package.
 *
 * Each part's *_api.h is its C header; what Python calls of it is declared
 * again, for cffi, in csrc/cffi/<part>.h (csrc/build.py reads those).
 */
#ifndef OS_CORE_API_H
#define OS_CORE_API_H

/* Bump together with CORE_VERSION in orchestrator_spawn/_native/__init__.py. */
#define OS_CORE_VERSION 1

int os_core_version(void);

#endif
