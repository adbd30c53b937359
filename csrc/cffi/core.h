/* What orchestrator_spawn/_native calls: the version handshake (csrc/core_api.h).
 *
 * Every file of csrc/cffi/ declares, once and documented, the functions and
 * types orchestrator_spawn/_native calls of one part; the part's *_api.h
 * includes it, and csrc/build.py hands the same text, less its preprocessor
 * lines, to cffi's cdef. The constants Python reads are named in an
 * `#ifdef OS_CFFI_CDEF` block (never defined) as "#define NAME ...": only
 * cffi sees them, and the compiler fills in their values from *_api.h. */
#ifndef OS_CFFI_CORE_H
#define OS_CFFI_CORE_H

int os_core_version(void);

#endif /* OS_CFFI_CORE_H */
