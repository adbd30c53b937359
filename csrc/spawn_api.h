/*
 * spawn_api.h: the native spawn core (fork/vfork + child setup + exec).
 *
 * The parent prepares everything in an os_spawn_request (allocation allowed
 * there); os_spawn() forks, the child applies the plan with async-signal-safe
 * calls only and execs. Failures come back as (stage, errno). What Python
 * calls of it is declared in csrc/cffi/spawn.h (included below); os_spawn()
 * itself and its request are internal (spawn_internal.h).
 */
#ifndef OS_SPAWN_API_H
#define OS_SPAWN_API_H

#include "sandbox_api.h"

/* Values of os_spawn_request.stdio[i] besides a real fd. */
#define OS_SPAWN_FD_INHERIT -1
#define OS_SPAWN_FD_DEVNULL -2

/* Stages a failed spawn reports (out[2] of os_spawn_packed); their names
 * come from os_spawn_stage_name(), kept next to them in spawn.c. */
#define OS_STAGE_NONE 0
#define OS_STAGE_CHDIR 1
#define OS_STAGE_SETPGID 2
#define OS_STAGE_SETRLIMIT 3
#define OS_STAGE_DUP2 4
#define OS_STAGE_SANDBOX 5
#define OS_STAGE_EXEC 6
#define OS_STAGE_FORK 7
#define OS_STAGE_CGROUP 8

/* Bits of out[4] of os_spawn_packed(): what holds the job. */
#define OS_CONTAINED_CGROUP 1
#define OS_CONTAINED_PID_NS 2

/* Flags of os_spawn_packed(). */
#define OS_SPAWN_NEW_PROCESS_GROUP 1
#define OS_SPAWN_WANT_PIDFD 2
#define OS_SPAWN_FORCE_FORK 4
#define OS_SPAWN_DIE_WITH_PARENT 8
#define OS_SPAWN_NEW_PID_NS 16

/* Returned by os_spawn_packed() when argv_block/env_block do not hold exactly
 * argc/envc strings (one of them had an embedded NUL); nothing was forked. */
#define OS_SPAWN_BAD_STRINGS 1

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/spawn.h (the cdef reads the same file). */
#include "cffi/spawn.h"

#endif
