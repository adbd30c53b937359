/*
 * cgroup_api.h: cgroup v2 job containment (Linux).
 *
 * The parent-side file operations on a job's cgroup that Python calls, and
 * the keeper: one small process per orchestrator that kills the jobs' cgroup
 * subtree once the orchestrator has died (see cgroup.c). Every function
 * returns 0 (or a count) or -errno; -ENOSYS on platforms other than Linux.
 */
#ifndef OS_CGROUP_API_H
#define OS_CGROUP_API_H

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/cgroup.h (the cdef reads the same file). */
#include "cffi/cgroup.h"

#endif
