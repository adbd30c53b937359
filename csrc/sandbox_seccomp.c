/*
 * sandbox_seccomp.c: builds the seccomp BPF program in the parent.
 *
 * The filter checks the architecture first (a foreign ABI such as i386 on
 * x86_64 would otherwise reach differently numbered system calls) and kills
 * the process on a mismatch. Then it refuses the escape hatches a confined
 * process has no business using with EPERM, and under network deny refuses
 * socket() for every family but AF_UNIX (so UDP, IPv6, raw and netlink are
 * covered, not just TCP). Everything else is allowed: Landlock and the
 * namespaces do the fine-grained work.
 */
#include <errno.h>

#include "sandbox_api.h"

#ifdef __linux__

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "sandbox_internal.h"

#if defined(__x86_64__)
#define OS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define OS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef OS_AUDIT_ARCH

/* System calls added after the headers wheels are built with; numbers of
 * calls added since Linux 5.1 are the same on every architecture. */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif
/* __NR_open_tree .. __NR_fspick, __NR_mount_setattr: in sandbox_internal.h. */
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef __NR_quotactl_fd
#define __NR_quotactl_fd 443
#endif
#ifndef __NR_process_madvise
#define __NR_process_madvise 440
#endif
#ifndef __NR_process_mrelease
#define __NR_process_mrelease 448
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#define __NR_removexattrat 466
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

/* Refused with EPERM: debugging other processes, kernel attack surface that
 * bypasses seccomp (io_uring), changing namespaces or mounts, loading code
 * into the kernel, keyrings, and host administration. */
static const int blocked_syscalls[] = {
    __NR_ptrace,
    __NR_process_vm_readv,
    __NR_process_vm_writev,
    __NR_pidfd_getfd,
    __NR_io_uring_setup,
    __NR_io_uring_enter,
    __NR_io_uring_register,
    __NR_unshare,
    __NR_setns,
    __NR_mount,
    __NR_umount2,
    __NR_pivot_root,
    __NR_chroot,
    __NR_open_tree,
    __NR_move_mount,
    __NR_fsopen,
    __NR_fsconfig,
    __NR_fsmount,
    __NR_fspick,
    __NR_mount_setattr,
    __NR_bpf,
    __NR_keyctl,
    __NR_add_key,
    __NR_request_key,
    __NR_perf_event_open,
    __NR_userfaultfd,
    __NR_kexec_load,
    __NR_kexec_file_load,
    __NR_init_module,
    __NR_finit_module,
    __NR_delete_module,
    __NR_swapon,
    __NR_swapoff,
    __NR_reboot,
    __NR_acct,
    __NR_open_by_handle_at,
    __NR_quotactl,
    __NR_quotactl_fd,
    __NR_vhangup,
    __NR_syslog,
    __NR_settimeofday,
    __NR_clock_settime,
    __NR_clock_adjtime,
    __NR_fanotify_init,
    /* Acting on another process: comparing its resources, advising on or
     * reaping its memory (the pid-taking calls get argument checks below). */
    __NR_kcmp,
    __NR_process_madvise,
    __NR_process_mrelease,
#ifdef __NR_lookup_dcookie
    __NR_lookup_dcookie,
#endif
#ifdef __NR_iopl
    __NR_iopl,
    __NR_ioperm,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR_nfsservctl
    __NR_nfsservctl,
#endif
};

/* Refused with EPERM under deny_metadata: every call that changes inode
 * metadata, path and fd forms (the mount layer cannot see fds inherited from
 * outside the sandbox's mount namespace, nor /proc/self/fd/N reopened). */
static const int metadata_syscalls[] = {
    __NR_fchmod,       __NR_fchmodat,     __NR_fchmodat2,  __NR_fchown,        __NR_fchownat,
    __NR_utimensat,    __NR_setxattr,     __NR_lsetxattr,  __NR_fsetxattr,     __NR_removexattr,
    __NR_lremovexattr, __NR_fremovexattr, __NR_setxattrat, __NR_removexattrat,
#ifdef __NR_chmod
    __NR_chmod,        __NR_chown,        __NR_lchown,     __NR_utime,         __NR_utimes,
    __NR_futimesat,
#endif
};

/* Calls whose first argument is a pid they act on: allowed for 0 (the
 * caller itself) only. The kernel checks them by uid alone (and Landlock's
 * ptrace scope covers only migrate_pages, move_pages and get_robust_list),
 * so a child could otherwise change the limits or the scheduling of every
 * process of its user, the orchestrator included. */
static const int self_pid_syscalls[] = {
    __NR_sched_setaffinity, __NR_sched_setscheduler, __NR_sched_setparam,  __NR_sched_setattr,
    __NR_migrate_pages,     __NR_move_pages,         __NR_get_robust_list,
};

/* (syscall, argument index of the mode) of the calls that set a mode. */
static const int chmod_like[][2] = {
    {__NR_fchmod, 1},
    {__NR_fchmodat, 2},
    {__NR_fchmodat2, 2},
#ifdef __NR_chmod
    {__NR_chmod, 1},
#endif
};

/* (syscall, argument index of the flags, of the mode) of the calls that
 * create a file with a mode; flags index -1: always creates. */
static const int create_like[][3] = {
    {__NR_openat, 2, 3}, {__NR_mknodat, -1, 2},
#ifdef __NR_open
    {__NR_open, 1, 2},   {__NR_creat, -1, 1},   {__NR_mknod, -1, 1},
#endif
};

#define SETID_BITS 06000U
#define OS_O_TMPFILE_BIT 020000000U /* __O_TMPFILE */
#define OS_PRIO_PROCESS 0
#define OS_IOPRIO_WHO_PROCESS 1

#define NS_CLONE_FLAGS                                                                         \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | \
     CLONE_NEWCGROUP | CLONE_NEWTIME)

/* Offset of the low / high 32 bits of system call argument n (little-endian). */
#define ARG_LO(n) ((unsigned int)(offsetof(struct seccomp_data, args) + 8 * (n)))
#define ARG_HI(n) (ARG_LO(n) + 4)

struct filter_buf {
    struct sock_filter *insns;
    unsigned int len, cap;
};

static void emit(struct filter_buf *buf, unsigned short code, unsigned char jt, unsigned char jf,
                 unsigned int k) {
    if (buf->len < buf->cap)
        buf->insns[buf->len] = (struct sock_filter){code, jt, jf, k};
    buf->len++; /* counted even when full, so the caller sees the overflow */
}

static void ret(struct filter_buf *buf, unsigned int action) {
    emit(buf, BPF_RET | BPF_K, 0, 0, action);
}

static void load(struct filter_buf *buf, unsigned int offset) {
    emit(buf, BPF_LD | BPF_W | BPF_ABS, 0, 0, offset);
}

/* if (A == k) fall through to the next instruction, else skip `skip`. */
static void if_eq(struct filter_buf *buf, unsigned int k, unsigned char skip) {
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 0, skip, k);
}

#define DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

/* nr: allowed only when argument arg is 0 (pid 0: the caller). 4 insns after
 * the test. */
static void allow_if_arg_zero(struct filter_buf *buf, int nr, int arg) {
    if_eq(buf, (unsigned int)nr, 4);
    load(buf, ARG_LO(arg));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0);
    ret(buf, DENY);
    ret(buf, SECCOMP_RET_ALLOW);
}

/* nr(which, who, ...): allowed only for which == self_which and who == 0. */
static void allow_if_self_which(struct filter_buf *buf, int nr, unsigned int self_which) {
    if_eq(buf, (unsigned int)nr, 6);
    load(buf, ARG_LO(0));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 0, 2, self_which); /* else deny */
    load(buf, ARG_LO(1));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0); /* allow */
    ret(buf, DENY);
    ret(buf, SECCOMP_RET_ALLOW);
}

/* The checks for one system call that sets a mode: no setuid/setgid bit. */
static void refuse_setid_mode(struct filter_buf *buf, int nr, int mode_arg) {
    if_eq(buf, (unsigned int)nr, 4);
    load(buf, ARG_LO(mode_arg));
    emit(buf, BPF_JMP | BPF_JSET | BPF_K, 0, 1, SETID_BITS);
    ret(buf, DENY);
    ret(buf, SECCOMP_RET_ALLOW);
}

/* The same for a call that creates a file when its flags say so. */
static void refuse_setid_create(struct filter_buf *buf, int nr, int flags_arg, int mode_arg) {
    if (flags_arg < 0) {
        refuse_setid_mode(buf, nr, mode_arg);
        return;
    }
    if_eq(buf, (unsigned int)nr, 6);
    load(buf, ARG_LO(flags_arg));
    emit(buf, BPF_JMP | BPF_JSET | BPF_K, 0, 3, O_CREAT | OS_O_TMPFILE_BIT); /* else allow */
    load(buf, ARG_LO(mode_arg));
    emit(buf, BPF_JMP | BPF_JSET | BPF_K, 0, 1, SETID_BITS);
    ret(buf, DENY);
    ret(buf, SECCOMP_RET_ALLOW);
}

/* Calls that act on other processes: see self_pid_syscalls. */
static void confine_to_self(struct filter_buf *buf) {
    for (size_t i = 0; i < sizeof(self_pid_syscalls) / sizeof(self_pid_syscalls[0]); i++)
        allow_if_arg_zero(buf, self_pid_syscalls[i], 0);
    /* prlimit64(pid, resource, new, old): reading anyone's limits is what
     * /proc/<pid>/limits shows anyway; setting them only for pid 0. */
    if_eq(buf, __NR_prlimit64, 8);
    load(buf, ARG_LO(0));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 0); /* pid 0: allow */
    load(buf, ARG_LO(2));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0); /* new != NULL: deny */
    load(buf, ARG_HI(2));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0); /* new == NULL: allow */
    ret(buf, DENY);
    ret(buf, SECCOMP_RET_ALLOW);
    /* setpriority(PRIO_PROCESS, 0, n) only: not another pid, not the process
     * group (which is the orchestrator's without process_group=True), not
     * every process of the user. */
    allow_if_self_which(buf, __NR_setpriority, OS_PRIO_PROCESS);
    allow_if_self_which(buf, __NR_ioprio_set, OS_IOPRIO_WHO_PROCESS);
}

static void build(struct filter_buf *buf, int deny_ip_sockets, int allow_inet_only,
                  int deny_metadata) {
    const unsigned int deny = DENY;

    load(buf, offsetof(struct seccomp_data, arch));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, OS_AUDIT_ARCH);
    ret(buf, SECCOMP_RET_KILL_PROCESS);
    load(buf, offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
    /* x32 system calls share the x86_64 audit arch: refuse them all. */
    emit(buf, BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000U);
    ret(buf, deny);
#endif
    for (size_t i = 0; i < sizeof(blocked_syscalls) / sizeof(blocked_syscalls[0]); i++) {
        if_eq(buf, (unsigned int)blocked_syscalls[i], 1);
        ret(buf, deny);
    }
    if (deny_metadata) {
        for (size_t i = 0; i < sizeof(metadata_syscalls) / sizeof(metadata_syscalls[0]); i++) {
            if_eq(buf, (unsigned int)metadata_syscalls[i], 1);
            ret(buf, deny);
        }
    }
    /* clone3 passes its flags in memory the filter cannot read: make libc
     * fall back to clone, whose flags it can check; openat2 likewise keeps
     * its mode in memory: callers fall back to openat (kernels < 5.6). */
    if_eq(buf, __NR_clone3, 1);
    ret(buf, SECCOMP_RET_ERRNO | ENOSYS);
    if_eq(buf, __NR_openat2, 1);
    ret(buf, SECCOMP_RET_ERRNO | ENOSYS);
    confine_to_self(buf);
    /* No setuid/setgid file: on the host it would run with the owner's ids
     * (root's, when the orchestrator runs as root). */
    for (size_t i = 0; i < sizeof(chmod_like) / sizeof(chmod_like[0]); i++)
        refuse_setid_mode(buf, chmod_like[i][0], chmod_like[i][1]);
    for (size_t i = 0; i < sizeof(create_like) / sizeof(create_like[0]); i++)
        refuse_setid_create(buf, create_like[i][0], create_like[i][1], create_like[i][2]);

    /* clone: no new namespaces (every variant keeps the flags in arg 0). */
    if_eq(buf, __NR_clone, 4);
    load(buf, ARG_LO(0));
    emit(buf, BPF_JMP | BPF_JSET | BPF_K, 0, 1, NS_CLONE_FLAGS);
    ret(buf, deny);
    ret(buf, SECCOMP_RET_ALLOW);

    /* ioctl: no faking terminal input for whoever reads the terminal next. */
    if_eq(buf, __NR_ioctl, 5);
    load(buf, ARG_LO(1));
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 2, 0, TIOCSTI);
    emit(buf, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, TIOCLINUX);
    ret(buf, SECCOMP_RET_ALLOW);
    ret(buf, deny);

    if (deny_ip_sockets || allow_inet_only) {
        static const unsigned int inet_families[] = {AF_UNIX, AF_INET, AF_INET6};
        unsigned int n_allowed = deny_ip_sockets ? 1 : 3;
        if_eq(buf, __NR_socket, (unsigned char)(2 + 2 * n_allowed));
        load(buf, ARG_LO(0));
        for (unsigned int i = 0; i < n_allowed; i++) {
            if_eq(buf, inet_families[i], 1);
            ret(buf, SECCOMP_RET_ALLOW);
        }
        ret(buf, deny);
    }
    ret(buf, SECCOMP_RET_ALLOW);
}

int os_sandbox_build_filter(struct os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                            int deny_metadata) {
    struct filter_buf buf = {NULL, 0, 0};
    build(&buf, deny_ip_sockets, allow_inet_only, deny_metadata); /* first pass: count */
    if (buf.len > BPF_MAXINSNS)
        return -E2BIG;
    buf.insns = calloc(buf.len, sizeof(struct sock_filter));
    if (buf.insns == NULL)
        return -ENOMEM;
    buf.cap = buf.len;
    buf.len = 0;
    build(&buf, deny_ip_sockets, allow_inet_only, deny_metadata);
    free(plan->filter);
    plan->filter = buf.insns;
    plan->filter_len = (unsigned short)buf.len;
    return 0;
}

#else /* no supported architecture */

int os_sandbox_build_filter(struct os_sandbox_plan *plan, int deny_ip_sockets, int allow_inet_only,
                            int deny_metadata) {
    return -ENOTSUP; /* fail closed: no filter we could vouch for */
}

#endif /* OS_AUDIT_ARCH */
#endif /* __linux__ */
