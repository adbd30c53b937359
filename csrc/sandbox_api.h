/*
 * sandbox_api.h: the Linux sandbox applied in the child between fork and exec.
 *
 * Agreed interface between the spawn core (csrc/spawn.c) and the sandbox
 * (csrc/sandbox*.c). A plan is built in the parent (allocation allowed
 * there); the child hooks only make system calls (async-signal-safe).
 */
#ifndef OS_SANDBOX_API_H
#define OS_SANDBOX_API_H

/* Built and freed by the sandbox part in the parent. */
typedef struct os_sandbox_plan os_sandbox_plan;

/* Child side, after stdio/fds/chdir/setpgid and before setrlimit: namespaces,
 * no_new_privs, Landlock. Returns 0 or -errno (reported as stage "sandbox"). */
int os_sandbox_child_enter(const os_sandbox_plan *plan);

/* Child side, after setrlimit and right before exec: the seccomp filter.
 * Returns 0 or -errno (reported as stage "sandbox"). */
int os_sandbox_child_seal(const os_sandbox_plan *plan);

#endif
