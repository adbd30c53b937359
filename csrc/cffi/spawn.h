/* What orchestrator_spawn/_native calls: the spawn core (csrc/spawn_api.h). os_spawn() and its
 * request struct are internal (spawn_internal.h): Python makes one call per
 * spawn, os_spawn_packed(). */
#ifndef OS_CFFI_SPAWN_H
#define OS_CFFI_SPAWN_H

#ifdef OS_CFFI_CDEF /* never defined: these lines are for the cdef only */
#define OS_SPAWN_FD_INHERIT ...
#define OS_SPAWN_FD_DEVNULL ...
#define OS_SPAWN_NEW_PROCESS_GROUP ...
#define OS_SPAWN_WANT_PIDFD ...
#define OS_SPAWN_FORCE_FORK ...
#define OS_SPAWN_DIE_WITH_PARENT ...
#define OS_SPAWN_NEW_PID_NS ...
#define OS_SPAWN_BAD_STRINGS ...
#define OS_CONTAINED_CGROUP ...
#define OS_CONTAINED_PID_NS ...
#endif

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

/* The name of an OS_STAGE_* ("chdir", "exec", ...), as errors report it;
 * "exec" for a value that is none of them. */
const char *os_spawn_stage_name(int stage);

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

#endif /* OS_CFFI_SPAWN_H */
