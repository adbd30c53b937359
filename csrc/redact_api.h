/*
 * redact_api.h: the streaming multi-pattern redaction engine (PCRE2).
 *
 * Agreed interface between the redaction engine (csrc/redact*.c) and its
 * users (orchestrator_spawn/_native/redact.py, the native pump in csrc/pump.c).
 * Signatures below are fixed; functions may be added.
 *
 * Return codes are 0 on success, or a negative value: -errno (-ENOMEM, ...)
 * or one of the OS_REDACT_E_* codes.
 */
#ifndef OS_REDACT_API_H
#define OS_REDACT_API_H

#include <stddef.h>
#include <stdint.h>

#define OS_REDACT_IGNORE_CASE 1

#define OS_REDACT_E_COMPILE -1001     /* a pattern does not compile */
#define OS_REDACT_E_EMPTY_MATCH -1002 /* a pattern can match the empty string */

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/redact.h (the cdef reads the same file). */
#include "cffi/redact.h"

/* Added by the engine (not part of the agreed minimum): introspection. */

#endif
