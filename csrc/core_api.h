/*
 * core_api.h: the version handshake between the C core and the Python package.
 *
 * Every *_api.h in csrc/ is a plain header read by both the compiler and cffi
 * (orchestrator_spawn/_build.py turns each "#define NAME value" into
 * "#define NAME ..." and drops the other preprocessor lines).
 */
#ifndef OS_CORE_API_H
#define OS_CORE_API_H

/* Bump together with CORE_VERSION in orchestrator_spawn/_native.py. */
#define OS_CORE_VERSION 1

int os_core_version(void);

#endif
