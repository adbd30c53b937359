/* cffi declarations: cgroup v2 containment and the keeper (csrc/cgroup_api.h). */

int os_cgroup_kill(int dirfd);
int os_cgroup_kill_frozen(int dirfd);
int os_cgroup_signal(int dirfd, int sig);
int os_cgroup_populated(int dirfd);
int os_cgroup_count_procs(int dirfd);
int os_cgroup_wait_empty(int dirfd, int timeout_ms);
int os_cgroup_events_watch(int dirfd);
void os_cgroup_events_drain(int fd);

int os_keeper_start(int watch_fd, int kill_groups, int own_dirfd, const char *name);
int os_keeper_groups_new(void);
void os_keeper_group_set(int pgid, int registered);
