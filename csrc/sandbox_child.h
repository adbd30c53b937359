/*
 * sandbox_child.h: the sandbox hooks the spawn core calls (csrc/spawn*.c),
 * internal to the C core: Python never calls them. The child hooks run
 * between fork and exec and make raw system calls only (the rule in child.h).
 */
#ifndef OS_SANDBOX_CHILD_H
#define OS_SANDBOX_CHILD_H

#include "sandbox_api.h"

/* Child side, after stdio/fds/chdir/setpgid and before setrlimit: namespaces,
 * no_new_privs, Landlock. Returns 0 or -errno (reported as stage "sandbox"). */
int os_sandbox_child_enter(const os_sandbox_plan *plan);

/* Linux: the namespace flags (CLONE_NEWUSER | CLONE_NEWNS [| CLONE_NEWNET])
 * the spawn passes to clone() itself, so that the child does not have to
 * unshare them: a child sharing the parent's memory (vfork) may not unshare
 * a user namespace. 0 if the plan makes no namespace (or not on Linux). */
int os_sandbox_clone_flags(const os_sandbox_plan *plan);

/* os_sandbox_child_enter for a child cloned with os_sandbox_clone_flags(plan):
 * the namespaces exist already (the id maps and the rest are still to do). */
int os_sandbox_child_enter_cloned(const os_sandbox_plan *plan);

/* Child side, after setrlimit and right before exec: the seccomp filter.
 * Returns 0 or -errno (reported as stage "sandbox"). */
int os_sandbox_child_seal(const os_sandbox_plan *plan);

#endif
