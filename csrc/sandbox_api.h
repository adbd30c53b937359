/*
 * sandbox_api.h: the Linux sandbox applied in the child between fork and exec.
 *
 * A plan is built in the parent (allocation allowed there) through the
 * functions Python calls (csrc/cffi/sandbox.h, included below); the child hooks the spawn core runs are internal
 * (sandbox_child.h) and only make system calls (async-signal-safe).
 *
 * Every builder and probe returns 0 (or a positive value where stated) or
 * -errno. On platforms other than Linux every function fails with -ENOSYS.
 */
#ifndef OS_SANDBOX_API_H
#define OS_SANDBOX_API_H

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/sandbox.h (the cdef reads the same file). */
#include "cffi/sandbox.h"

/* ---- Parent side: building a plan ------------------------------------- */

/* Network modes for os_sandbox_plan_set_network. */
#define OS_SANDBOX_NET_INHERIT 0
#define OS_SANDBOX_NET_DENY 1
#define OS_SANDBOX_NET_ALLOWLIST 2

/* Access classes for os_sandbox_plan_add_path_rule (mapped to Landlock rights
 * of the plan's ABI in C). READ: read files, list directories, execute.
 * WRITE: everything, including creating, removing and renaming beneath.
 * DEVICE: read, write and ioctl an existing file (for /dev/null, ttys). */
#define OS_SANDBOX_ACCESS_READ 1
#define OS_SANDBOX_ACCESS_WRITE 2
#define OS_SANDBOX_ACCESS_DEVICE 4

/* Probes for os_sandbox_probe. */
#define OS_SANDBOX_PROBE_USERNS 1
#define OS_SANDBOX_PROBE_LANDLOCK 2
#define OS_SANDBOX_PROBE_SECCOMP 3

/* Steps a probe or the child can fail at (os_sandbox_probe's *failed_step);
 * their names come from os_sandbox_step_name(), kept next to them in sandbox.c. */
#define OS_SANDBOX_STEP_FORK 1
#define OS_SANDBOX_STEP_UNSHARE 2
#define OS_SANDBOX_STEP_SETGROUPS 3
#define OS_SANDBOX_STEP_UID_MAP 4
#define OS_SANDBOX_STEP_GID_MAP 5
#define OS_SANDBOX_STEP_MOUNT_PRIVATE 6
#define OS_SANDBOX_STEP_BIND_READONLY 7
#define OS_SANDBOX_STEP_LOOPBACK 8
#define OS_SANDBOX_STEP_NO_NEW_PRIVS 9
#define OS_SANDBOX_STEP_LANDLOCK 10
#define OS_SANDBOX_STEP_SECCOMP 11
#define OS_SANDBOX_STEP_PROXY_HANDOFF 12
#define OS_SANDBOX_STEP_CAPABILITIES 13
#define OS_SANDBOX_STEP_READONLY_TREE 14
#define OS_SANDBOX_STEP_PIN_DIR 15
#define OS_SANDBOX_STEP_PRIVATE_PTYS 16

/* ---- Parent side: probes ---------------------------------------------- */

#endif
