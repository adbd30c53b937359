/*
 * sandbox.c: the parent side of the Linux sandbox: building and freeing
 * plans, and probing what the running kernel really offers.
 *
 * The child side lives in sandbox_child.c, the seccomp program builder in
 * sandbox_seccomp.c. Elsewhere than Linux every function fails with -ENOSYS.
 */
#include <errno.h>
#include <stddef.h>

#include "sandbox_api.h"

#ifdef __linux__

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "sandbox_internal.h"

os_sandbox_plan *os_sandbox_plan_new(void) {
    struct os_sandbox_plan *plan = calloc(1, sizeof(struct os_sandbox_plan));
    if (plan != NULL)
        plan->handoff_fd = -1;
    return plan;
}

static void free_paths(char **paths, int n) {
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

void os_sandbox_plan_free(os_sandbox_plan *plan) {
    if (plan == NULL)
        return;
    free_paths(plan->readonly_binds, plan->n_readonly_binds);
    free_paths(plan->pinned_dirs, plan->n_pinned_dirs);
    free_paths(plan->writable_mounts, plan->n_writable_mounts);
    for (int i = 0; i < plan->n_path_rules; i++)
        free(plan->path_rules[i].path);
    free(plan->path_rules);
    free(plan->filter);
    free(plan);
}

int os_sandbox_plan_use_userns(os_sandbox_plan *plan, unsigned int uid, unsigned int gid,
                               int new_netns) {
    if (plan == NULL)
        return -EINVAL;
    snprintf(plan->uid_map, sizeof(plan->uid_map), "%u %u 1\n", uid, uid);
    snprintf(plan->gid_map, sizeof(plan->gid_map), "%u %u 1\n", gid, gid);
    plan->use_userns = 1;
    plan->new_netns = new_netns != 0;
    return 0;
}

static int checked_path(const char *path) {
    if (path == NULL || path[0] != '/')
        return -EINVAL; /* the child must not depend on its working directory */
    return 0;
}

/* Appends a copy of path to a plan's path list. */
static int append_path(char ***paths, int *n, const char *path) {
    if (checked_path(path) < 0)
        return -EINVAL;
    char **grown = realloc(*paths, sizeof(char *) * (*n + 1));
    if (grown == NULL)
        return -ENOMEM;
    *paths = grown;
    char *copy = strdup(path);
    if (copy == NULL)
        return -ENOMEM;
    (*paths)[(*n)++] = copy;
    return 0;
}

int os_sandbox_plan_add_readonly_bind(os_sandbox_plan *plan, const char *path) {
    if (plan == NULL)
        return -EINVAL;
    return append_path(&plan->readonly_binds, &plan->n_readonly_binds, path);
}

int os_sandbox_plan_add_pinned_dir(os_sandbox_plan *plan, const char *path) {
    if (plan == NULL)
        return -EINVAL;
    return append_path(&plan->pinned_dirs, &plan->n_pinned_dirs, path);
}

int os_sandbox_plan_set_readonly_tree(os_sandbox_plan *plan) {
    if (plan == NULL)
        return -EINVAL;
    plan->readonly_tree = 1;
    return 0;
}

int os_sandbox_plan_add_writable_mount(os_sandbox_plan *plan, const char *path) {
    if (plan == NULL)
        return -EINVAL;
    if (plan->n_writable_mounts >= OS_SANDBOX_MAX_WRITABLE_MOUNTS)
        return -E2BIG;
    return append_path(&plan->writable_mounts, &plan->n_writable_mounts, path);
}

int os_sandbox_plan_set_private_ptys(os_sandbox_plan *plan) {
    if (plan == NULL)
        return -EINVAL;
    plan->private_ptys = 1;
    return 0;
}

int os_sandbox_plan_inherited_fd(const os_sandbox_plan *plan) {
    return plan == NULL ? -1 : plan->handoff_fd;
}

int os_sandbox_plan_set_landlock(os_sandbox_plan *plan, int abi, int restrict_fs) {
    if (plan == NULL || abi < 1)
        return -EINVAL;
    plan->landlock_abi = abi;
    plan->landlock_restrict_fs = restrict_fs != 0;
    return 0;
}

int os_sandbox_plan_add_path_rule(os_sandbox_plan *plan, const char *path, int access) {
    const int known = OS_SANDBOX_ACCESS_READ | OS_SANDBOX_ACCESS_WRITE | OS_SANDBOX_ACCESS_DEVICE;
    if (plan == NULL || checked_path(path) < 0 || access == 0 || (access & ~known))
        return -EINVAL;
    struct os_sandbox_path_rule *grown =
        realloc(plan->path_rules, sizeof(*grown) * (plan->n_path_rules + 1));
    if (grown == NULL)
        return -ENOMEM;
    plan->path_rules = grown;
    char *copy = strdup(path);
    if (copy == NULL)
        return -ENOMEM;
    plan->path_rules[plan->n_path_rules].path = copy;
    plan->path_rules[plan->n_path_rules].access = access;
    plan->n_path_rules++;
    return 0;
}

int os_sandbox_plan_set_network(os_sandbox_plan *plan, int mode, int proxy_port, int handoff_fd) {
    if (plan == NULL)
        return -EINVAL;
    if (mode == OS_SANDBOX_NET_ALLOWLIST) {
        /* Not 0-2: the child's stdio is set up before the handoff. */
        if (proxy_port <= 0 || proxy_port > 65535 || handoff_fd <= 2)
            return -EINVAL;
        plan->handoff_fd = handoff_fd;
        plan->proxy_port = proxy_port;
    } else if (mode != OS_SANDBOX_NET_INHERIT && mode != OS_SANDBOX_NET_DENY) {
        return -EINVAL;
    }
    plan->net_mode = mode;
    return 0;
}

int os_sandbox_plan_set_seccomp(os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                                int deny_metadata) {
    if (plan == NULL)
        return -EINVAL;
    return os_sandbox_build_filter(plan, deny_ip_sockets, allow_inet_only, deny_metadata);
}

int os_sandbox_landlock_abi(void) {
    long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, OS_LL_CREATE_RULESET_VERSION);
    return abi < 0 ? -errno : (int)abi;
}

/* ---- Throwaway children ------------------------------------------------ */

static int build_probe_plan(int what, struct os_sandbox_plan *plan, char **scratch) {
    memset(plan, 0, sizeof(*plan));
    plan->handoff_fd = -1;
    switch (what) {
    case OS_SANDBOX_PROBE_USERNS:
        plan->readonly_tree = 1;
        plan->writable_mounts = scratch;
        plan->n_writable_mounts = 1;
        return os_sandbox_plan_use_userns(plan, (unsigned)geteuid(), (unsigned)getegid(), 1);
    case OS_SANDBOX_PROBE_LANDLOCK: {
        int abi = os_sandbox_landlock_abi();
        if (abi < 0)
            return abi;
        return os_sandbox_plan_set_landlock(plan, abi, 1);
    }
    case OS_SANDBOX_PROBE_SECCOMP:
        return os_sandbox_build_filter(plan, 1, 0, 1);
    default:
        return -EINVAL;
    }
}

int os_sandbox_probe(int what, const char *scratch_dir, int *failed_step) {
    struct os_sandbox_plan plan;
    *failed_step = 0;
    if (what == OS_SANDBOX_PROBE_USERNS && checked_path(scratch_dir) < 0)
        return -EINVAL;
    char *scratch[1] = {(char *)scratch_dir};
    int err = build_probe_plan(what, &plan, scratch);
    if (err < 0) {
        *failed_step =
            what == OS_SANDBOX_PROBE_SECCOMP ? OS_SANDBOX_STEP_SECCOMP : OS_SANDBOX_STEP_LANDLOCK;
        free(plan.filter);
        return err;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        free(plan.filter);
        *failed_step = OS_SANDBOX_STEP_FORK;
        return -errno;
    }
    /* As the spawn core does: every signal blocked around the fork, so no
     * handler of ours runs in the child before it reset them. */
    sigset_t old;
    os_block_signals(&old);
    pid_t pid = fork();
    if (pid == 0)
        os_sandbox_probe_child(what, &plan, scratch_dir, fds[1]);
    int fork_errno = errno;
    os_restore_signals(&old);
    close(fds[1]);
    free(plan.filter);
    if (pid < 0) {
        close(fds[0]);
        *failed_step = OS_SANDBOX_STEP_FORK;
        return -fork_errno;
    }
    os_child_report report;
    int reported = os_child_read_report(fds[0], &report);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (reported) {
        *failed_step = report.stage;
        return -report.error;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        /* Killed (e.g. by a seccomp arch mismatch) without a report. */
        *failed_step = what == OS_SANDBOX_PROBE_SECCOMP ? OS_SANDBOX_STEP_SECCOMP : 0;
        return -ECHILD;
    }
    return 0;
}

#else /* !__linux__ */

/* Stubs that fail with ENOSYS ignore their arguments by definition. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

os_sandbox_plan *os_sandbox_plan_new(void) { return NULL; }
void os_sandbox_plan_free(os_sandbox_plan *plan) {}
int os_sandbox_plan_use_userns(os_sandbox_plan *plan, unsigned int uid, unsigned int gid,
                               int new_netns) {
    return -ENOSYS;
}
int os_sandbox_plan_add_readonly_bind(os_sandbox_plan *plan, const char *path) { return -ENOSYS; }
int os_sandbox_plan_add_pinned_dir(os_sandbox_plan *plan, const char *path) { return -ENOSYS; }
int os_sandbox_plan_set_readonly_tree(os_sandbox_plan *plan) { return -ENOSYS; }
int os_sandbox_plan_add_writable_mount(os_sandbox_plan *plan, const char *path) { return -ENOSYS; }
int os_sandbox_plan_set_private_ptys(os_sandbox_plan *plan) { return -ENOSYS; }
int os_sandbox_plan_inherited_fd(const os_sandbox_plan *plan) { return -1; }
int os_sandbox_plan_set_landlock(os_sandbox_plan *plan, int abi, int restrict_fs) {
    return -ENOSYS;
}
int os_sandbox_plan_add_path_rule(os_sandbox_plan *plan, const char *path, int access) {
    return -ENOSYS;
}
int os_sandbox_plan_set_network(os_sandbox_plan *plan, int mode, int proxy_port, int handoff_fd) {
    return -ENOSYS;
}
int os_sandbox_plan_set_seccomp(os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                                int deny_metadata) {
    return -ENOSYS;
}
int os_sandbox_landlock_abi(void) { return -ENOSYS; }
int os_sandbox_probe(int what, const char *scratch_dir, int *failed_step) {
    *failed_step = 0;
    return -ENOSYS;
}
#endif

/* Next to the OS_SANDBOX_STEP_* values of sandbox_api.h: the words of the
 * error messages (on every platform: a name is only text). */
const char *os_sandbox_step_name(int step) {
    switch (step) {
    case OS_SANDBOX_STEP_FORK:
        return "fork";
    case OS_SANDBOX_STEP_UNSHARE:
        return "unshare(user, mount, net namespaces)";
    case OS_SANDBOX_STEP_SETGROUPS:
        return "write /proc/self/setgroups";
    case OS_SANDBOX_STEP_UID_MAP:
        return "write /proc/self/uid_map";
    case OS_SANDBOX_STEP_GID_MAP:
        return "write /proc/self/gid_map";
    case OS_SANDBOX_STEP_MOUNT_PRIVATE:
        return "make mounts private";
    case OS_SANDBOX_STEP_BIND_READONLY:
        return "bind-mount read-only";
    case OS_SANDBOX_STEP_LOOPBACK:
        return "bring loopback up";
    case OS_SANDBOX_STEP_NO_NEW_PRIVS:
        return "prctl(PR_SET_NO_NEW_PRIVS)";
    case OS_SANDBOX_STEP_LANDLOCK:
        return "Landlock";
    case OS_SANDBOX_STEP_SECCOMP:
        return "seccomp filter";
    case OS_SANDBOX_STEP_PROXY_HANDOFF:
        return "hand the proxy listener to the parent";
    case OS_SANDBOX_STEP_CAPABILITIES:
        return "drop capabilities";
    case OS_SANDBOX_STEP_READONLY_TREE:
        return "make the mount tree read-only (open_tree, mount_setattr)";
    case OS_SANDBOX_STEP_PIN_DIR:
        return "pin a directory above a readable path (bind mount)";
    case OS_SANDBOX_STEP_PRIVATE_PTYS:
        return "mount a private devpts on /dev/pts";
    default:
        return NULL;
    }
}
