/*
 * sandbox_child.c: the child side of the Linux sandbox.
 *
 * Everything here runs between fork and exec in a single-threaded child of a
 * possibly multi-threaded parent, which may share the parent's memory (the
 * spawn core's vfork child): ONLY raw system calls (syscall(2), the os_sys_*
 * helpers of child.h, whose comment says why libc wrappers are not enough)
 * and memset/memcpy/strlen; no malloc, no stdio, no locks.
 * tests/native/test_child_symbols.py holds this file to that. All inputs
 * were prepared in the parent and sit in the plan.
 *
 * Order (os_sandbox_enter_steps):
 *   1. user + mount (+ network) namespaces, identity uid/gid maps
 *   2. mounts private; the whole tree read-only but the writable paths
 *      (fs scoping), the directories above readable paths pinned, readable
 *      paths bind-mounted read-only, a private devpts on /dev/pts; then the
 *      working directory entered again, so that it is the new mounts' view
 *   3. network: loopback up and the proxy listener handed to the parent
 *   4. capability bounding set emptied (the child keeps no capability, even
 *      in its own user namespace, once it execs)
 *   5. PR_SET_NO_NEW_PRIVS
 *   6. Landlock (must come after the mounts: Landlock forbids mount changes)
 * and, in os_sandbox_child_seal after setrlimit, the seccomp filter.
 */
#include <errno.h>

#include "sandbox_api.h"

#ifdef __linux__

#include <fcntl.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "child.h"
#include "sandbox_internal.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef MS_STRICTATIME
#define MS_STRICTATIME (1 << 24)
#endif
#ifndef SYS_statx
#if defined(__x86_64__)
#define SYS_statx 332
#elif defined(__aarch64__)
#define SYS_statx 291
#endif
#endif

static int fail(int *failed_step, int step, int err) {
    *failed_step = step;
    return err < 0 ? err : -EIO;
}

/* Writes all of text to an existing file (a /proc knob). 0 or -errno. */
static int write_file(const char *path, const char *text) {
    int fd = os_sys_open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fd;
    size_t len = strlen(text);
    long n;
    do
        n = os_sys_write(fd, text, len);
    while (n == -EINTR);
    int err = n < 0 ? (int)n : ((size_t)n != len ? -EIO : 0);
    (void)os_sys_close(fd);
    return err;
}

static int sys_mount(const char *source, const char *target, const char *type, unsigned long flags,
                     const void *data) {
    return (int)OS_SYS(SYS_mount, source, target, type, flags, data);
}

int os_sandbox_clone_flags(const os_sandbox_plan *plan) {
    if (plan == NULL || !plan->use_userns)
        return 0;
    return CLONE_NEWUSER | CLONE_NEWNS | (plan->new_netns ? CLONE_NEWNET : 0);
}

/* `cloned`: clone() made the namespaces already (os_sandbox_clone_flags). */
static int enter_namespaces(const struct os_sandbox_plan *plan, int cloned, int *failed_step) {
    int err;
    if (!cloned && (err = os_sys_unshare(os_sandbox_clone_flags(plan))) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_UNSHARE, err);
    /* An unprivileged process may map only its own ids, and a gid map needs
     * setgroups denied first; kernels before 3.19 have no setgroups file. */
    err = write_file("/proc/self/setgroups", "deny");
    if (err < 0 && err != -ENOENT)
        return fail(failed_step, OS_SANDBOX_STEP_SETGROUPS, err);
    err = write_file("/proc/self/uid_map", plan->uid_map);
    if (err < 0)
        return fail(failed_step, OS_SANDBOX_STEP_UID_MAP, err);
    err = write_file("/proc/self/gid_map", plan->gid_map);
    if (err < 0)
        return fail(failed_step, OS_SANDBOX_STEP_GID_MAP, err);
    /* Nothing mounted here may propagate back to the parent's namespace. */
    if ((err = sys_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_MOUNT_PRIVATE, err);
    return 0;
}

/* Mount flags a bind remount must repeat: in a user namespace the flags
 * inherited from the parent's namespace are locked, and a remount that would
 * clear one of them fails with EPERM. */
static unsigned long locked_mount_flags(const char *path, int *err) {
    struct statfs st;
    /* The kernel's struct statfs is libc's on 64-bit targets; elsewhere
     * statfs64 fills a struct of the size it is told. */
#if defined(__LP64__) || !defined(SYS_statfs64)
    long r = OS_SYS(SYS_statfs, path, &st);
#else
    long r = OS_SYS(SYS_statfs64, path, sizeof st, &st);
#endif
    if (r < 0) {
        *err = (int)r;
        return 0;
    }
    unsigned long flags = 0;
    if (st.f_flags & ST_NOSUID)
        flags |= MS_NOSUID;
    if (st.f_flags & ST_NODEV)
        flags |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC)
        flags |= MS_NOEXEC;
    if (st.f_flags & ST_NODIRATIME)
        flags |= MS_NODIRATIME;
    if (st.f_flags & ST_NOATIME)
        flags |= MS_NOATIME;
    else if (st.f_flags & ST_RELATIME)
        flags |= MS_RELATIME;
    else
        flags |= MS_STRICTATIME;
    *err = 0;
    return flags;
}

int os_sandbox_bind_readonly(const char *path) {
    int err = sys_mount(path, path, NULL, MS_BIND | MS_REC, NULL);
    if (err < 0)
        return err;
    unsigned long flags = locked_mount_flags(path, &err);
    if (err < 0)
        return err;
    return sys_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, NULL);
}

/* Self-bind: a mount point cannot be renamed or removed (EBUSY). */
static int pin_dir(const char *path) { return sys_mount(path, path, NULL, MS_BIND | MS_REC, NULL); }

int os_sandbox_readonly_tree(const struct os_sandbox_plan *plan) {
    int n = plan->n_writable_mounts, err = 0, i;
    int clones[OS_SANDBOX_MAX_WRITABLE_MOUNTS];
    if (n > OS_SANDBOX_MAX_WRITABLE_MOUNTS)
        return -E2BIG;
    /* Clone each writable subtree first: the clones keep their flags while
     * the tree they came from turns read-only. */
    for (i = 0; i < n; i++) {
        clones[i] = (int)syscall(__NR_open_tree, AT_FDCWD, plan->writable_mounts[i],
                                 OS_OPEN_TREE_CLONE | O_CLOEXEC | OS_AT_RECURSIVE);
        if (clones[i] < 0 && errno != ENOENT) {
            err = -errno;
            break;
        }
    }
    if (err == 0) {
        struct os_mount_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.attr_set = OS_MOUNT_ATTR_RDONLY;
        if (syscall(__NR_mount_setattr, AT_FDCWD, "/", OS_AT_RECURSIVE, &attr, sizeof(attr)) != 0)
            err = -errno;
    }
    for (int j = 0; j < i; j++) { /* i == n unless a clone failed */
        if (err == 0 && clones[j] >= 0 &&
            syscall(__NR_move_mount, clones[j], "", AT_FDCWD, plan->writable_mounts[j],
                    OS_MOVE_MOUNT_F_EMPTY_PATH) != 0)
            err = -errno;
        if (clones[j] >= 0)
            (void)os_sys_close(clones[j]);
    }
    return err;
}

int os_sandbox_private_ptys(void) {
    /* Opening /dev/ptmx finds the devpts instance at /dev/pts beside it. */
    return sys_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620");
}

int os_sandbox_loopback_up(void) {
    int fd = (int)OS_SYS(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    int err = (int)OS_SYS(SYS_ioctl, fd, SIOCGIFFLAGS, &ifr);
    if (err == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        err = (int)OS_SYS(SYS_ioctl, fd, SIOCSIFFLAGS, &ifr);
    }
    (void)os_sys_close(fd);
    return err;
}

/* Listens on 127.0.0.1:port in the child's network namespace and sends that
 * listening socket over the inherited handoff fd (a socketpair end: fds
 * cross network namespaces, and no other process can reach it). The
 * parent's proxy then accepts the connections made inside the namespace; no
 * process is left behind. The handoff fd is closed either way. */
static int hand_proxy_listener_to_parent(const struct os_sandbox_plan *plan) {
    int listener = -1, channel = plan->handoff_fd, err = 0;
    listener = (int)OS_SYS(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        (void)os_sys_close(channel);
        return listener;
    }
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    /* Network byte order by hand: htons may be a libc function (-O0). */
    unsigned char *port = (unsigned char *)&in.sin_port;
    port[0] = (unsigned char)(plan->proxy_port >> 8);
    port[1] = (unsigned char)plan->proxy_port;
    unsigned char *addr = (unsigned char *)&in.sin_addr.s_addr;
    addr[0] = 127;
    addr[3] = 1;
    if ((err = (int)OS_SYS(SYS_bind, listener, (struct sockaddr *)&in, sizeof(in))) < 0 ||
        (err = (int)OS_SYS(SYS_listen, listener, 128)) < 0)
        goto done;

    char byte = 'L';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &listener, sizeof(int));
    long sent;
    do
        sent = OS_SYS(SYS_sendmsg, channel, &msg, MSG_NOSIGNAL);
    while (sent == -EINTR);
    if (sent != 1)
        err = sent < 0 ? (int)sent : -EIO;
done:
    if (channel >= 0)
        (void)os_sys_close(channel);
    (void)os_sys_close(listener);
    return err;
}

static int drop_capabilities(void) {
    for (int cap = 0; cap < 64; cap++) {
        int err = os_sys_prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0);
        if (err == -EINVAL)
            break; /* past the kernel's last capability */
        if (err < 0)
            return err;
    }
    int err = os_sys_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (err < 0 && err != -EINVAL)
        return err;
    return 0;
}

uint64_t os_sandbox_ll_fs_rights(int abi) {
    uint64_t rights = (OS_LL_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
    if (abi >= 2)
        rights |= OS_LL_FS_REFER;
    if (abi >= 3)
        rights |= OS_LL_FS_TRUNCATE;
    if (abi >= 5)
        rights |= OS_LL_FS_IOCTL_DEV;
    return rights;
}

static uint64_t landlock_rights(int access, int abi, int is_dir) {
    uint64_t all = os_sandbox_ll_fs_rights(abi);
    uint64_t rights = 0;
    if (access & OS_SANDBOX_ACCESS_READ)
        rights |= OS_LL_FS_EXECUTE | OS_LL_FS_READ_FILE | OS_LL_FS_READ_DIR;
    if (access & OS_SANDBOX_ACCESS_WRITE)
        rights |= all;
    if (access & OS_SANDBOX_ACCESS_DEVICE)
        rights |= OS_LL_FS_READ_FILE | OS_LL_FS_WRITE_FILE | OS_LL_FS_TRUNCATE |
                  OS_LL_FS_IOCTL_DEV | OS_LL_FS_READ_DIR;
    if (!is_dir) /* Landlock refuses directory-only rights on a file rule. */
        rights &= OS_LL_FS_EXECUTE | OS_LL_FS_WRITE_FILE | OS_LL_FS_READ_FILE | OS_LL_FS_TRUNCATE |
                  OS_LL_FS_IOCTL_DEV;
    return rights & all;
}

static int add_path_rule(int ruleset, const struct os_sandbox_path_rule *rule, int abi) {
    int fd = os_sys_open(rule->path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd; /* a missing path only loses rights */
    /* statx (Linux >= 4.11; Landlock needs 5.13) with the kernel's layout:
     * stx_mode is the u16 at offset 0x1c of a 256-byte struct. Old libc
     * headers (the wheels' build images) have no struct statx. */
    union {
        unsigned char bytes[256];
        uint64_t align;
    } stx;
    unsigned short mode;
    memset(&stx, 0, sizeof(stx));
    int err = (int)OS_SYS(SYS_statx, fd, "", AT_EMPTY_PATH, 0x1U /* STATX_TYPE */, &stx);
    if (err == 0) {
        memcpy(&mode, stx.bytes + 0x1c, sizeof(mode));
        struct os_ll_path_beneath_attr attr = {
            .allowed_access = landlock_rights(rule->access, abi, S_ISDIR(mode)),
            .parent_fd = fd,
        };
        if (attr.allowed_access != 0)
            err = (int)OS_SYS(__NR_landlock_add_rule, ruleset, OS_LL_RULE_PATH_BENEATH, &attr, 0);
    }
    (void)os_sys_close(fd);
    return err;
}

static int apply_landlock(const struct os_sandbox_plan *plan) {
    int abi = plan->landlock_abi;
    struct os_ll_ruleset_attr attr;
    memset(&attr, 0, sizeof(attr));
    if (plan->landlock_restrict_fs)
        attr.handled_access_fs = os_sandbox_ll_fs_rights(abi);
    if (abi >= 4 && plan->net_mode != OS_SANDBOX_NET_INHERIT)
        attr.handled_access_net = OS_LL_NET_BIND_TCP | OS_LL_NET_CONNECT_TCP;
    if (abi >= 6)
        attr.scoped = OS_LL_SCOPE_ABSTRACT_UNIX_SOCKET | OS_LL_SCOPE_SIGNAL;
    if (attr.handled_access_fs == 0 && attr.handled_access_net == 0 && attr.scoped == 0)
        return 0; /* nothing this ABI could restrict for the plan */
    size_t size = abi >= 6 ? 24 : (abi >= 4 ? 16 : 8);

    int ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0)
        return -errno;
    int err = 0;
    for (int i = 0; i < plan->n_path_rules && err == 0 && plan->landlock_restrict_fs; i++)
        err = add_path_rule(ruleset, &plan->path_rules[i], abi);
    if (err == 0 && attr.handled_access_net && plan->net_mode == OS_SANDBOX_NET_ALLOWLIST) {
        struct os_ll_net_port_attr port = {
            .allowed_access = OS_LL_NET_CONNECT_TCP,
            .port = (uint64_t)plan->proxy_port,
        };
        if (syscall(__NR_landlock_add_rule, ruleset, OS_LL_RULE_NET_PORT, &port, 0) != 0)
            err = -errno;
    }
    if (err == 0 && syscall(__NR_landlock_restrict_self, ruleset, 0) != 0)
        err = -errno;
    (void)os_sys_close(ruleset);
    return err;
}

/* The mounts of the plan, in its fresh mount namespace. */
static int make_mounts(const struct os_sandbox_plan *plan, int *failed_step) {
    int err;
    /* The working directory still points into the mounts below any mount
     * made now: remember its path and walk it again afterwards. */
    char cwd[4096];
    long got = syscall(SYS_getcwd, cwd, sizeof(cwd));
    int have_cwd = got > 0 && cwd[0] == '/';
    if (plan->readonly_tree && (err = os_sandbox_readonly_tree(plan)) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_READONLY_TREE, err);
    for (int i = 0; i < plan->n_pinned_dirs; i++)
        if ((err = pin_dir(plan->pinned_dirs[i])) < 0)
            return fail(failed_step, OS_SANDBOX_STEP_PIN_DIR, err);
    for (int i = 0; i < plan->n_readonly_binds; i++)
        if ((err = os_sandbox_bind_readonly(plan->readonly_binds[i])) < 0)
            return fail(failed_step, OS_SANDBOX_STEP_BIND_READONLY, err);
    if (plan->private_ptys && (err = os_sandbox_private_ptys()) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_PRIVATE_PTYS, err);
    if (have_cwd && (err = os_sys_chdir(cwd)) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_READONLY_TREE, err);
    return 0;
}

static int enter_steps(const struct os_sandbox_plan *plan, int cloned, int *failed_step) {
    int err;
    if (plan->use_userns) {
        err = enter_namespaces(plan, cloned, failed_step);
        if (err < 0)
            return err;
        err = make_mounts(plan, failed_step);
        if (err < 0)
            return err;
    }
    if (plan->net_mode == OS_SANDBOX_NET_ALLOWLIST) {
        err = os_sandbox_loopback_up();
        if (err < 0)
            return fail(failed_step, OS_SANDBOX_STEP_LOOPBACK, err);
        err = hand_proxy_listener_to_parent(plan);
        if (err < 0)
            return fail(failed_step, OS_SANDBOX_STEP_PROXY_HANDOFF, err);
    }
    if (plan->use_userns) {
        err = drop_capabilities();
        if (err < 0)
            return fail(failed_step, OS_SANDBOX_STEP_CAPABILITIES, err);
    }
    if ((err = os_sys_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0)
        return fail(failed_step, OS_SANDBOX_STEP_NO_NEW_PRIVS, err);
    if (plan->landlock_abi > 0) {
        err = apply_landlock(plan);
        if (err < 0)
            return fail(failed_step, OS_SANDBOX_STEP_LANDLOCK, err);
    }
    return 0;
}

int os_sandbox_enter_steps(const struct os_sandbox_plan *plan, int *failed_step) {
    return enter_steps(plan, 0, failed_step);
}

int os_sandbox_child_enter(const os_sandbox_plan *plan) {
    int failed_step = 0;
    if (plan == NULL)
        return -EINVAL;
    return enter_steps(plan, 0, &failed_step);
}

int os_sandbox_child_enter_cloned(const os_sandbox_plan *plan) {
    int failed_step = 0;
    if (plan == NULL)
        return -EINVAL;
    return enter_steps(plan, 1, &failed_step);
}

int os_sandbox_child_seal(const os_sandbox_plan *plan) {
    if (plan == NULL)
        return -EINVAL;
    if (plan->filter == NULL)
        return 0;
    struct sock_fprog prog = {.len = plan->filter_len, .filter = plan->filter};
    /* no_new_privs was set by os_sandbox_child_enter; set it again so the
     * seal never depends on the enter hook having run. */
    int err = os_sys_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (err < 0)
        return err;
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return -errno;
    return 0;
}

/* The probe child (os_sandbox_probe in sandbox.c forked it with every
 * signal blocked): the steps of the probed feature, then exit 0, or report
 * (step, positive errno) over fd and exit 127. */
void os_sandbox_probe_child(int what, const struct os_sandbox_plan *plan, const char *scratch_dir,
                            int fd) {
    int step = 0, err = 0;
    os_child_reset_signals();
    os_child_unblock_signals();
/* Runs one step while none has failed yet, so that `step` names the failed one. */
#define PROBE_STEP(name, call) \
    do {                       \
        if (err == 0) {        \
            step = (name);     \
            err = (call);      \
        }                      \
    } while (0)
    err = os_sandbox_enter_steps(plan, &step);
    if (what == OS_SANDBOX_PROBE_USERNS) {
        /* Prove the mount namespace can make a path read-only and that the
         * network namespace's loopback can be brought up; then the mounts
         * every sandbox makes: the read-only tree (with scratch_dir kept
         * writable) and a private devpts. */
        PROBE_STEP(OS_SANDBOX_STEP_BIND_READONLY, os_sandbox_bind_readonly(scratch_dir));
        PROBE_STEP(OS_SANDBOX_STEP_LOOPBACK, os_sandbox_loopback_up());
        PROBE_STEP(OS_SANDBOX_STEP_READONLY_TREE, os_sandbox_readonly_tree(plan));
        PROBE_STEP(OS_SANDBOX_STEP_PRIVATE_PTYS, os_sandbox_private_ptys());
    } else {
        PROBE_STEP(OS_SANDBOX_STEP_SECCOMP, os_sandbox_child_seal(plan));
    }
#undef PROBE_STEP
    if (err < 0)
        os_child_report_and_exit(fd, NULL, step, -err);
    os_sys_exit(0);
}

#else /* !__linux__ */

/* Stubs that fail with ENOSYS ignore their arguments by definition. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* No Linux sandbox elsewhere: fail closed (macOS uses sandbox-exec instead). */
int os_sandbox_child_enter(const os_sandbox_plan *plan) { return -ENOSYS; }

int os_sandbox_clone_flags(const os_sandbox_plan *plan) { return 0; }

int os_sandbox_child_enter_cloned(const os_sandbox_plan *plan) { return -ENOSYS; }

int os_sandbox_child_seal(const os_sandbox_plan *plan) { return -ENOSYS; }

#endif
