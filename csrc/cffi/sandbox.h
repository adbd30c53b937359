/* What orchestrator_spawn/_native calls: building a sandbox plan and probing (csrc/sandbox_api.h).
 * The child hooks are internal to the spawn core (sandbox_internal.h). */
#ifndef OS_CFFI_SANDBOX_H
#define OS_CFFI_SANDBOX_H

#ifdef OS_CFFI_CDEF /* never defined: these lines are for the cdef only */
#define OS_SANDBOX_NET_DENY ...
#define OS_SANDBOX_NET_ALLOWLIST ...
#define OS_SANDBOX_ACCESS_READ ...
#define OS_SANDBOX_ACCESS_WRITE ...
#define OS_SANDBOX_ACCESS_DEVICE ...
#define OS_SANDBOX_PROBE_USERNS ...
#define OS_SANDBOX_PROBE_LANDLOCK ...
#define OS_SANDBOX_PROBE_SECCOMP ...
#endif

/* Built and freed by the sandbox part in the parent. */
typedef struct os_sandbox_plan os_sandbox_plan;

/* A new, empty plan (no_new_privs only), or NULL when out of memory. */
os_sandbox_plan *os_sandbox_plan_new(void);

/* Frees a plan and everything it owns; NULL is allowed. */
void os_sandbox_plan_free(os_sandbox_plan *plan);

/* Enter a new user + mount namespace with an identity map of uid/gid (the
 * parent's effective ids), and a new network namespace when new_netns != 0. */
int os_sandbox_plan_use_userns(os_sandbox_plan *plan, unsigned int uid, unsigned int gid,
                               int new_netns);

/* Bind-mount path read-only onto itself in the child's mount namespace (needs
 * os_sandbox_plan_use_userns). The path is copied. */
int os_sandbox_plan_add_readonly_bind(os_sandbox_plan *plan, const char *path);

/* Make every mount of the child's mount namespace read-only (one recursive
 * mount_setattr), except the writable mounts added below, which keep the
 * flags they had: inode metadata (mode, owner, times, xattrs) outside them
 * cannot change by path then (EROFS). Needs os_sandbox_plan_use_userns. */
int os_sandbox_plan_set_readonly_tree(os_sandbox_plan *plan);

/* A path that stays writable under os_sandbox_plan_set_readonly_tree: its
 * subtree is cloned (open_tree) before the tree turns read-only and mounted
 * back on it afterwards. Add outer paths before the paths nested in them. */
int os_sandbox_plan_add_writable_mount(os_sandbox_plan *plan, const char *path);

/* Bind-mount the directory path onto itself (writable as before): a mount
 * point cannot be renamed or removed in its namespace (EBUSY), which pins
 * the directories between a writable root and a read-only path. Pins are
 * made before the read-only binds. */
int os_sandbox_plan_add_pinned_dir(os_sandbox_plan *plan, const char *path);

/* Mount a new devpts instance on /dev/pts: only ptys made inside the sandbox
 * are there; the job's own terminal stays reachable through its inherited
 * fds and /dev/tty. Needs os_sandbox_plan_use_userns. */
int os_sandbox_plan_set_private_ptys(os_sandbox_plan *plan);

/* Restrict the child with a Landlock ruleset of this ABI (>= 1). With
 * restrict_fs, every file access not granted by a path rule is refused. */
int os_sandbox_plan_set_landlock(os_sandbox_plan *plan, int abi, int restrict_fs);

/* Grant an OS_SANDBOX_ACCESS_* mask on path and everything beneath it. A path
 * missing in the child is skipped (that only takes rights away). */
int os_sandbox_plan_add_path_rule(os_sandbox_plan *plan, const char *path, int access);

/* Network mode. For ALLOWLIST the child brings loopback up in its network
 * namespace, listens on 127.0.0.1:proxy_port there and sends that listening
 * socket over handoff_fd (one end of a socketpair whose other end the
 * parent's proxy reads; no filesystem path another process could reach),
 * then closes handoff_fd before exec. The spawn must keep handoff_fd open in
 * the child (os_sandbox_plan_inherited_fd). */
int os_sandbox_plan_set_network(os_sandbox_plan *plan, int mode, int proxy_port, int handoff_fd);

/* The fd the child side needs to find open (the proxy handoff), or -1. */
int os_sandbox_plan_inherited_fd(const os_sandbox_plan *plan);

/* Install the seccomp filter in os_sandbox_child_seal: escape hatches
 * (ptrace, io_uring, namespaces, mounts, bpf, keyrings, perf, ...) fail with
 * EPERM, and so do calls acting on another process (prlimit, setpriority,
 * sched_set*, ioprio_set, migrate_pages, ... on any pid but the caller's,
 * kcmp, process_madvise) and setting a setuid/setgid bit; with
 * deny_ip_sockets, socket() for any family but AF_UNIX too; with
 * allow_inet_only, socket() for families other than AF_UNIX/INET/INET6; with
 * deny_metadata, every call that changes inode metadata (chmod, chown,
 * utimes, xattr families, path and fd forms). */
int os_sandbox_plan_set_seccomp(os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                                int deny_metadata);

/* The Landlock ABI version of the running kernel (>= 1) or -errno. */
int os_sandbox_landlock_abi(void);

/* Really try one feature in a throwaway child (fork, try, _exit, reap).
 * Returns 0 when it works, else -errno with *failed_step = OS_SANDBOX_STEP_*.
 * scratch_dir: an existing directory the USERNS probe bind-mounts read-only
 * in its private mount namespace. */
int os_sandbox_probe(int what, const char *scratch_dir, int *failed_step);

/* The words an error message uses for an OS_SANDBOX_STEP_* ("seccomp
 * filter", ...); NULL for a value that is none of them. */
const char *os_sandbox_step_name(int step);

#endif /* OS_CFFI_SANDBOX_H */
