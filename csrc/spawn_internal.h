/*
 * spawn_internal.h: what the parent side (spawn.c) and the child side
 * (spawn_child.c) of the spawn core share. Not part of the cffi interface.
 */
#ifndef OS_SPAWN_INTERNAL_H
#define OS_SPAWN_INTERNAL_H

#include "child.h"
#include "sandbox_child.h"
#include "spawn_api.h"

/* Indexes into os_spawn_request.rlimits. */
#define OS_LIMIT_MEMORY_BYTES 0
#define OS_LIMIT_CPU_SECONDS 1
#define OS_LIMIT_PROCESSES 2
#define OS_LIMIT_OPEN_FILES 3

typedef struct os_spawn_request {
    /* The program as given (argv[0] or an explicit path). */
    const char *file;
    /* PATH to search when `file` has no slash; NULL means exec `file` as is. */
    const char *search_path;
    char **argv;     /* NULL-terminated */
    char **envp;     /* NULL-terminated; NULL: the process's own environ */
    const char *cwd; /* NULL: the parent's working directory */
    /* Source fd for the child's fd 0, 1, 2, or OS_SPAWN_FD_INHERIT/_DEVNULL. */
    int stdio[3];
    /* Extra fds kept open (made inheritable) in the child: ascending, > 2. */
    const int *pass_fds;
    int n_pass_fds;
    int new_process_group; /* setpgid(0, 0) in the child */
    /* RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_NOFILE (soft = hard);
     * a negative value leaves that limit alone. */
    long long rlimits[4];
    /* Optional sandbox plan (Linux): its namespaces are made by clone(), the
     * child runs its steps (see spawn.c). */
    const os_sandbox_plan *sandbox;
    /* Linux: a real fork (the fallback for a sandbox plan whose namespaces
     * clone() refused), so that the tests can exercise that path. */
    int force_fork;
    int want_pidfd; /* Linux: return a pidfd for the child (CLONE_PIDFD) */
    /* Linux: a directory fd of the (empty) cgroup v2 the child starts in
     * (clone3 CLONE_INTO_CGROUP, else the child writes its pid to
     * cgroup.procs before anything else); -1 for none. */
    int cgroup_fd;
    /* Linux: PR_SET_PDEATHSIG(SIGKILL) in the child, but only when the
     * calling thread is the main thread: the signal fires when the spawning
     * *thread* exits (see cgroup.c for what covers the other threads). */
    int die_with_parent;
    /* Linux: with a sandbox plan whose namespaces clone() makes, a new pid
     * namespace too (the child is its init; when it exits, the kernel kills
     * everything left in it). Not on the real-fork fallback. */
    int new_pid_ns;
} os_spawn_request;

typedef struct os_spawn_result {
    int pid;       /* the child's pid, or -1 */
    int pidfd;     /* a close-on-exec pidfd, or -1 (not asked / not supported) */
    int stage;     /* OS_STAGE_* of the failure, OS_STAGE_NONE on success */
    int error;     /* errno of the failure, 0 on success */
    int contained; /* OS_CONTAINED_* bits */
} os_spawn_result;

/* Spawns the child. Returns 0, or -errno with result->stage set; on failure no
 * child is left running and none is left unreaped. Safe to call from many
 * threads at once; call it with the GIL released. */
int os_spawn(const os_spawn_request *request, os_spawn_result *result);

/* Points out[0..n-1] at the n NUL-terminated strings packed in block
 * (each followed by one NUL) and sets out[n] = NULL. Returns the number found,
 * which the caller compares with n to detect embedded NULs. */
int os_split_strings(char *block, long long length, char **out, int n);

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
