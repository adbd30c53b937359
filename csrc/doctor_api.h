/*
 * doctor_api.h: probes for `orchestrator-spawn doctor` that no other part
 * of the core already offers (the sandbox probes live in sandbox_api.h).
 *
 * Kernel probes return 0 when the feature works, else -errno (-ENOSYS on
 * platforms other than Linux).
 */
#ifndef OS_DOCTOR_API_H
#define OS_DOCTOR_API_H

#include <stddef.h>

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/doctor.h (the cdef reads the same file). */
#include "cffi/doctor.h"

#endif
