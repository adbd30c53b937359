/*
 * spawn_child.c: the child side of the spawn core, between fork and exec.
 *
 * Everything here runs in a child that may share its memory with the parent
 * (vfork semantics) and was forked from a multithreaded process, so it makes
 * raw system calls only (the os_sys_* helpers of child.h, whose comment says
 * why libc wrappers are not enough: musl's setrlimit, glibc's setxid
 * broadcast): no libc wrapper, no malloc, no locks, no stdio, no Python.
 * tests/native/test_child_symbols.py holds this file to that. Every input was
 * prepared by the parent before the fork. A failure is reported as (stage,
 * errno) and the child exits with 127.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "spawn_internal.h"

#ifdef __linux__
#include <sys/prctl.h>
#endif

__attribute__((noreturn)) static void report_and_exit(os_child_ctx *ctx, int stage, int error) {
    os_child_report_and_exit(ctx->report_fd, &ctx->shared, stage, error);
}

static int clear_cloexec(int fd) {
    int flags = os_sys_fcntl(fd, F_GETFD, 0);
    if (flags < 0)
        return flags;
    if (flags & FD_CLOEXEC) {
        int err = os_sys_fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Puts each stdio source on 0, 1, 2. Sources that are themselves 0-2 are first
 * copied above 2, so an earlier dup2 cannot clobber a later source. */
static int apply_stdio(const os_spawn_request *req) {
    int src[3];
    int i;

    for (i = 0; i < 3; i++) {
        src[i] = req->stdio[i];
        if (src[i] == OS_SPAWN_FD_DEVNULL) {
            do {
                src[i] = os_sys_open("/dev/null", O_RDWR | O_CLOEXEC);
            } while (src[i] == -EINTR);
            if (src[i] < 0)
                return src[i];
        }
    }
    for (i = 0; i < 3; i++) {
        if (src[i] >= 0 && src[i] <= 2 && src[i] != i) {
            int moved = os_sys_fcntl(src[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                return moved;
            src[i] = moved;
        }
    }
    for (i = 0; i < 3; i++) {
        if (src[i] < 0)
            continue; /* inherit */
        if (src[i] == i) {
            int err = clear_cloexec(i);
            if (err)
                return err;
        } else {
            int r;
            do {
                r = os_sys_dup2(src[i], i);
            } while (r == -EINTR);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static int is_kept(const os_child_ctx *ctx, int fd) {
    const os_spawn_request *req = ctx->request;
    int i;

    if (fd <= 2 || fd == ctx->report_fd)
        return 1;
    for (i = 0; i < req->n_pass_fds; i++)
        if (req->pass_fds[i] == fd)
            return 1;
    return 0;
}

#ifdef __linux__
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

/* vfork mode on Linux: the child was cloned with CLONE_FILES, so that the
 * clone does not copy (and the child then close) every fd of the parent,
 * which costs ~90 ns per open fd: +360 us per spawn in a parent holding
 * 4,000 fds, as an orchestrator with 1,000 captured children does. Before
 * the first fd operation the child takes a private table holding only the
 * fds below `end`, the ones the plan can refer to: close_range with
 * CLOSE_RANGE_UNSHARE copies just that prefix (Linux >= 5.9). Older kernels
 * get unshare(CLONE_FILES), a full copy, like a plain clone. If both are
 * refused (a seccomp policy), the parent is told and spawns again without
 * CLONE_FILES (spawn.c). Nothing before this call touches an fd: the table
 * is the parent's, live in its other threads. */
static int take_private_fd_table(const os_spawn_request *req) {
    unsigned int end = 3;
    int i;

    for (i = 0; i < 3; i++)
        if (req->stdio[i] >= 0 && (unsigned int)req->stdio[i] >= end)
            end = (unsigned int)req->stdio[i] + 1;
    for (i = 0; i < req->n_pass_fds; i++)
        if ((unsigned int)req->pass_fds[i] >= end)
            end = (unsigned int)req->pass_fds[i] + 1;
    if (syscall(SYS_close_range, end, ~0U, CLOSE_RANGE_UNSHARE) == 0)
        return 0;
    return os_sys_unshare(CLONE_FILES);
}

/* Closes [lo, hi] except the report fd, with close_range when available.
 * Returns -ENOSYS when the kernel lacks close_range. */
static int close_span(const os_child_ctx *ctx, unsigned int lo, unsigned int hi) {
    int keep = ctx->report_fd;

    if (lo > hi)
        return 0;
    if (keep >= 0 && (unsigned int)keep >= lo && (unsigned int)keep <= hi) {
        int err = 0;
        if ((unsigned int)keep > lo)
            err = close_span(ctx, lo, (unsigned int)keep - 1);
        if (err == 0 && (unsigned int)keep < hi)
            err = close_span(ctx, (unsigned int)keep + 1, hi);
        return err;
    }
    return (int)OS_SYS(SYS_close_range, lo, hi, 0);
}

static int close_fds_with_close_range(const os_child_ctx *ctx) {
    const os_spawn_request *req = ctx->request;
    unsigned int lo = 3;
    int i, err;

    for (i = 0; i < req->n_pass_fds; i++) {
        unsigned int fd = (unsigned int)req->pass_fds[i];
        if (fd > lo && (err = close_span(ctx, lo, fd - 1)) != 0)
            return err;
        if (fd >= lo)
            lo = fd + 1;
    }
    return close_span(ctx, lo, ~0U);
}

/* Kernels before 5.9: walk /proc/self/fd with raw getdents64 (opendir would
 * allocate). Returns -errno when /proc is not there. */
static int close_fds_with_proc(const os_child_ctx *ctx) {
    char buf[2048];
    int dir = os_sys_open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long n;

    if (dir < 0)
        return dir;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        long off = 0;
        while (off < n) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buf + off);
            const char *p = entry->d_name;
            int fd = 0;
            off += entry->d_reclen;
            if (*p < '0' || *p > '9')
                continue;
            while (*p >= '0' && *p <= '9')
                fd = fd * 10 + (*p++ - '0');
            if (fd != dir && !is_kept(ctx, fd))
                (void)os_sys_close(fd);
        }
    }
    (void)os_sys_close(dir);
    return 0;
}
#endif

static void close_fds_brute_force(const os_child_ctx *ctx) {
    long max_fd = 65536;
    long fd;
#ifdef __linux__
    struct os_rlimit64 rl;

    if (os_sys_getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.cur < (uint64_t)max_fd)
        max_fd = (long)rl.cur;
#else
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)rl.rlim_cur < max_fd)
        max_fd = (long)rl.rlim_cur;
#endif
    for (fd = 3; fd < max_fd; fd++)
        if (!is_kept(ctx, (int)fd))
            (void)os_sys_close((int)fd);
}

/* Only 0, 1, 2 and pass_fds survive into the new program. */
static int close_other_fds(const os_child_ctx *ctx) {
    const os_spawn_request *req = ctx->request;
    int i, err;

    for (i = 0; i < req->n_pass_fds; i++)
        if ((err = clear_cloexec(req->pass_fds[i])) != 0)
            return err;
#ifdef __linux__
    if (close_fds_with_close_range(ctx) == 0)
        return 0;
    if (close_fds_with_proc(ctx) == 0)
        return 0;
#endif
    close_fds_brute_force(ctx);
    return 0;
}

static int apply_rlimits(const os_spawn_request *req) {
    static const int resources[4] = {RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_NOFILE};
    int i;

    for (i = 0; i < 4; i++) {
        int err;
        if (req->rlimits[i] < 0)
            continue;
#ifdef __linux__
        /* prlimit64, not setrlimit: see child.h (musl's __synccall). */
        err = os_sys_setrlimit(resources[i], (uint64_t)req->rlimits[i]);
#else
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)req->rlimits[i];
        err = setrlimit(resources[i], &rl) < 0 ? -errno : 0;
#endif
        if (err < 0)
            return err;
    }
    return 0;
}

#ifdef __linux__
/* clone3 could not start us in the job's cgroup: move in now, before any
 * code of the new program runs ("0" names the writer). */
static int join_cgroup(int dirfd) {
    int fd, err = 0;
    long n;

    do {
        fd = os_sys_openat(dirfd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    } while (fd == -EINTR);
    if (fd < 0)
        return fd;
    do {
        n = os_sys_write(fd, "0", 1);
    } while (n == -EINTR);
    if (n < 0)
        err = (int)n;
    (void)os_sys_close(fd);
    return err;
}
#endif

int os_child_main(void *arg) {
    os_child_ctx *ctx = arg;
    const os_spawn_request *req = ctx->request;
    int err;

    /* The parent blocked every signal around the fork: reset the handlers
     * before anything can be delivered (with vfork they would run on the
     * parent's memory), unblock only right before exec. */
    os_child_reset_signals();

    if (req->new_process_group && (err = os_sys_setpgid(0, 0)) < 0)
        report_and_exit(ctx, OS_STAGE_SETPGID, -err);
#ifdef __linux__
    if (ctx->shares_fd_table && (err = take_private_fd_table(req)) != 0)
        report_and_exit(ctx, OS_STAGE_PRIVATE_FDS_UNAVAILABLE, -err);
    /* Before the sandbox: inside a user namespace the write may be refused. */
    if (ctx->join_cgroup_fd >= 0 && (err = join_cgroup(ctx->join_cgroup_fd)) != 0)
        report_and_exit(ctx, OS_STAGE_CGROUP, -err);
    if (ctx->pdeathsig_parent != 0) {
        (void)os_sys_prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        /* The parent may have died before the prctl took effect. */
        pid_t parent = os_sys_getppid(); /* 0 in a new pid namespace */
        if (parent != 0 && parent != ctx->pdeathsig_parent)
            report_and_exit(ctx, OS_STAGE_FORK, ESRCH);
    }
#endif
    if ((err = apply_stdio(req)) != 0)
        report_and_exit(ctx, OS_STAGE_DUP2, -err);
    if ((err = close_other_fds(ctx)) != 0)
        report_and_exit(ctx, OS_STAGE_DUP2, -err);
    if (req->cwd != NULL && (err = os_sys_chdir(req->cwd)) < 0)
        report_and_exit(ctx, OS_STAGE_CHDIR, -err);
#ifdef __linux__
    if (req->sandbox != NULL &&
        (err = ctx->sandbox_cloned ? os_sandbox_child_enter_cloned(req->sandbox)
                                   : os_sandbox_child_enter(req->sandbox)) < 0)
        report_and_exit(ctx, OS_STAGE_SANDBOX, -err);
#endif
    if ((err = apply_rlimits(req)) != 0)
        report_and_exit(ctx, OS_STAGE_SETRLIMIT, -err);
#ifdef __linux__
    if (req->sandbox != NULL && (err = os_sandbox_child_seal(req->sandbox)) < 0)
        report_and_exit(ctx, OS_STAGE_SANDBOX, -err);
#endif

    os_child_unblock_signals();
    err = os_sys_execve(ctx->path, req->argv, ctx->envp);
    report_and_exit(ctx, OS_STAGE_EXEC, -err);
}
