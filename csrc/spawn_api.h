/*
 * spawn_api.h: the native spawn core (fork/vfork + child setup + exec).
 *
 * The parent prepares everything in an os_spawn_request (allocation allowed
 * there); os_spawn() forks, the child applies the plan with async-signal-safe
 * calls only and execs. Failures come back as (stage, errno). What Python
 * calls of it is declared again for cffi in csrc/cffi/spawn.h; os_spawn()
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

/* The name of an OS_STAGE_* ("chdir", "exec", ...), as errors report it;
 * "exec" for a value that is none of them. */
const char *os_spawn_stage_name(int stage);

#endif
