/* What orchestrator_spawn/_native calls: cgroup v2 containment and the keeper (csrc/cgroup_api.h). */
#ifndef OS_CFFI_CGROUP_H
#define OS_CFFI_CGROUP_H

/* Kills every process in the cgroup directory `dirfd` and its descendants:
 * `cgroup.kill` (Linux >= 5.14), or, where that file does not exist, freeze
 * the cgroup, SIGKILL each pid of each cgroup.procs below it, thaw. Returns
 * 0, or -errno (-ENOENT: the cgroup was already removed). */
int os_cgroup_kill(int dirfd);

/* The fallback of os_cgroup_kill on its own (for the tests on kernels that
 * have cgroup.kill): freeze, SIGKILL each member, thaw. 0 or -errno. */
int os_cgroup_kill_frozen(int dirfd);

/* Sends `sig` to every process of the cgroup `dirfd` and its descendants
 * (read from each cgroup.procs). Returns 0 or -errno (-ENOENT: removed). */
int os_cgroup_signal(int dirfd, int sig);

/* Whether the cgroup `dirfd` (with its descendants) still holds a live
 * process, from the "populated" line of cgroup.events: 1, 0, or -errno. */
int os_cgroup_populated(int dirfd);

/* Number of processes in cgroup.procs of `dirfd` (this cgroup only), or
 * -errno. */
int os_cgroup_count_procs(int dirfd);

/* Sleeps until the cgroup `dirfd` is unpopulated or `timeout_ms` passed
 * (negative: no limit), by poll(POLLPRI) on its cgroup.events. Returns 1
 * when unpopulated, 0 on timeout, -EINTR when a signal arrived, -errno. */
int os_cgroup_wait_empty(int dirfd, int timeout_ms);

/* An inotify fd (non-blocking, close-on-exec) that turns readable whenever
 * the cgroup.events of `dirfd` changes: how an event loop (add_reader) waits
 * for a job to be empty without a thread. Returns the fd or -errno. */
int os_cgroup_events_watch(int dirfd);

/* Drains the pending events of an os_cgroup_events_watch() fd. */
void os_cgroup_events_drain(int fd);

/* Starts the keeper: a grandchild (so no one of ours ever reaps it) in a
 * session of its own, with only the fds below open (stdio on /dev/null). It
 * sleeps until `watch_fd` is readable or hung up (a pidfd of the
 * orchestrator, or the read end of a pipe whose write end only the
 * orchestrator holds). Then, with `kill_groups`, it SIGKILLs every process
 * group registered by os_keeper_group_set; with `own_dirfd` >= 0, it kills
 * the cgroup `<own_dirfd>/<name>/jobs` (the jobs that die with their
 * parent), waits until `<own_dirfd>/<name>` is unpopulated (jobs spawned
 * with die_with_parent=False included), removes the cgroups below it and
 * it. Returns the keeper's pid or -errno. */
int os_keeper_start(int watch_fd, int kill_groups, int own_dirfd, const char *name);

/* A new, empty table of registered process groups, in memory that a keeper
 * started afterwards shares (call before os_keeper_start with kill_groups).
 * 0 or -errno. */
int os_keeper_groups_new(void);

/* Registers (registered = 1) or forgets (0) process group `pgid` for the
 * keeper: one atomic operation on the shared table; no-op without one. */
void os_keeper_group_set(int pgid, int registered);

#endif /* OS_CFFI_CGROUP_H */
