/*
 * spawn_api.h: the native spawn core (fork/vfork + child setup + exec).
 *
 * The parent prepares everything in an os_spawn_request (allocation allowed
 * there); os_spawn() forks, the child applies the plan with async-signal-safe
 * calls only and execs. Failures come back as (stage, errno). Read by both the
 * compiler and cffi (see orchestrator_spawn/_build.py).
 */
#ifndef OS_SPAWN_API_H
#define OS_SPAWN_API_H

#include "sandbox_api.h"

/* Values of os_spawn_request.stdio[i] besides a real fd. */
#define OS_SPAWN_FD_INHERIT -1
#define OS_SPAWN_FD_DEVNULL -2

/* Stages reported in os_spawn_result.stage (names in _native.py). */
#define OS_STAGE_NONE 0
#define OS_STAGE_CHDIR 1
#define OS_STAGE_SETPGID 2
#define OS_STAGE_SETRLIMIT 3
#define OS_STAGE_DUP2 4
#define OS_STAGE_SANDBOX 5
#define OS_STAGE_EXEC 6
#define OS_STAGE_FORK 7
#define OS_STAGE_CGROUP 8

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
    char **argv; /* NULL-terminated */
    char **envp; /* NULL-terminated; NULL: the process's own environ */
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

/* Bits of os_spawn_result.contained: what holds the job. */
#define OS_CONTAINED_CGROUP 1
#define OS_CONTAINED_PID_NS 2

typedef struct os_spawn_result {
    int pid;   /* the child's pid, or -1 */
    int pidfd; /* a close-on-exec pidfd, or -1 (not asked / not supported) */
    int stage; /* OS_STAGE_* of the failure, OS_STAGE_NONE on success */
    int error; /* errno of the failure, 0 on success */
    int contained; /* OS_CONTAINED_* bits */
} os_spawn_result;

/* Spawns the child. Returns 0, or -errno with result->stage set; on failure no
 * child is left running and none is left unreaped. Safe to call from many
 * threads at once; call it with the GIL released. */
int os_spawn(const os_spawn_request *request, os_spawn_result *result);

/* Flags of os_spawn_packed(). */
#define OS_SPAWN_NEW_PROCESS_GROUP 1
#define OS_SPAWN_WANT_PIDFD 2
#define OS_SPAWN_FORCE_FORK 4
#define OS_SPAWN_DIE_WITH_PARENT 8
#define OS_SPAWN_NEW_PID_NS 16

/* Returned by os_spawn_packed() when argv_block/env_block do not hold exactly
 * argc/envc strings (one of them had an embedded NUL); nothing was forked. */
#define OS_SPAWN_BAD_STRINGS 1

/* os_spawn() over packed inputs, so that Python makes one foreign call (and
 * allocates nothing but `out`) per spawn. argv_block/env_block hold argc/envc
 * NUL-terminated strings back to back; env_block NULL passes the process's
 * own environ. rlimits[4], the fds and cgroup_fd are as in os_spawn_request;
 * flags are OS_SPAWN_* bits. out[0..4] receive pid, pidfd, stage, error,
 * contained (as in os_spawn_result). Returns 0, -errno (stage in out[2]) or
 * OS_SPAWN_BAD_STRINGS. */
int os_spawn_packed(const char *file, const char *search_path, const char *argv_block,
                    long long argv_len, int argc, const char *env_block, long long env_len,
                    int envc, const char *cwd, int stdin_fd, int stdout_fd, int stderr_fd,
                    const int *pass_fds, int n_pass_fds, int flags, const long long *rlimits,
                    int cgroup_fd, const os_sandbox_plan *sandbox, int *out);

/* Points out[0..n-1] at the n NUL-terminated strings packed in block
 * (each followed by one NUL) and sets out[n] = NULL. Returns the number found,
 * which the caller compares with n to detect embedded NULs. */
int os_split_strings(char *block, long long length, char **out, int n);

/* Sleeps until the child `pid` has exited, without reaping it
 * (waitid(P_PID, WEXITED | WNOWAIT)), so its pid cannot be recycled meanwhile.
 * Returns 0, or -errno: -EINTR when a signal arrived (run the handlers, call
 * again), -ECHILD when it is not (or no longer) a child of ours. */
int os_wait_exit_nowait(int pid);

/* Reaps the child `pid` if it has exited (wait4 WNOHANG). Returns 1 with
 * out[0] = its exit code as subprocess reports it (negative signal number if
 * a signal ended it), out[1]/out[2] = user/system CPU in microseconds,
 * out[3] = ru_maxrss (KiB on Linux, bytes on macOS); 0 if it is still
 * running; -errno on failure (-ECHILD: someone else reaped it). */
int os_reap(int pid, long long *out);

/* No-pidfd fallback: installs one SIGCHLD handler that writes a byte to
 * `wakeup_fd` (non-blocking) and chains to the previous handler. Idempotent;
 * returns 0 or -errno. */
int os_sigchld_install(int wakeup_fd);

#endif
