/*
 * spawn_internal.h: what the parent side (spawn.c) and the child side
 * (spawn_child.c) of the spawn core share. Not part of the cffi interface.
 */
#ifndef OS_SPAWN_INTERNAL_H
#define OS_SPAWN_INTERNAL_H

#include "child.h"
#include "spawn_api.h"

/* Internal stage (never reaches Python): the child could take no private fd
 * table of its own (close_range(CLOSE_RANGE_UNSHARE) and unshare(CLONE_FILES)
 * both refused, as a seccomp policy may do). The parent stops cloning with
 * CLONE_FILES for the rest of the process and spawns again. */
#define OS_STAGE_PRIVATE_FDS_UNAVAILABLE 100

typedef struct os_child_ctx {
    const os_spawn_request *request;
    const char *path; /* the program to exec, resolved in the parent */
    char **envp;      /* req->envp, or the parent's environ */
    /* Fork mode: the write end of a close-on-exec pipe for the report.
     * vfork mode: -1, and the child stores its report in `shared` instead,
     * which the parent reads once the child has exec'd or exited. */
    int report_fd;
    /* Linux vfork mode: the child was cloned with CLONE_FILES, so its fd
     * table is still the parent's until it takes a private copy of just the
     * fds it needs (see take_private_fd_table in spawn_child.c). */
    int shares_fd_table;
    /* Linux vfork mode with a sandbox plan: clone() made the plan's
     * namespaces (os_sandbox_clone_flags), the child must not unshare them. */
    int sandbox_cloned;
    /* Linux: the cgroup directory fd whose cgroup.procs the child writes
     * itself into (clone3 with CLONE_INTO_CGROUP was not available), or -1. */
    int join_cgroup_fd;
    /* Linux: the parent's pid when the child sets PR_SET_PDEATHSIG, else 0. */
    int pdeathsig_parent;
    volatile os_child_report shared;
} os_child_ctx;

/* Runs in the child; never returns (execs or exits with 127). */
__attribute__((noreturn)) int os_child_main(void *ctx);

#endif
