/*
 * child.h: what every child of the core shares between fork and exec (the
 * spawn core's clone/vfork child, the sandbox probes' fork child): the raw
 * system calls it may make, and its failure report. Internal (not part of the
 * cffi interface).
 *
 * THE RULE for code that runs in such a child: raw system calls only, through
 * the os_sys_* helpers below (syscall(2) on Linux), plus memset/memcpy/strlen.
 * Async-signal-safe is not enough:
 *   - the vfork child (clone(CLONE_VM | CLONE_VFORK)) runs on the parent's
 *     memory while the parent's other threads run on: a libc function that
 *     takes a lock or touches shared state can deadlock on, or corrupt, the
 *     parent's;
 *   - musl implements setrlimit (and setuid & co.) with __synccall, which
 *     signals every thread of the process and waits until each has run the
 *     change: in a CLONE_VM child the thread list it reads is the parent's,
 *     so it signals the parent's threads and can hang, or change the
 *     parent; glibc's setuid family broadcasts to all threads (setxid) the
 *     same way;
 *   - libc wrappers may refuse or remap what the kernel accepts (glibc's
 *     sigaction refuses its internal signals, dup2 is dup3 on arm64).
 * tests/native/test_child_symbols.py compiles the child-side files (child.c,
 * spawn_child.c, sandbox_child.c) and fails on any libc function outside an
 * allow-list, so a new call cannot slip in.
 *
 * errno: syscall() sets errno on failure. That is safe in every child of the
 * core: a fork child has its own memory, and the vfork child shares the
 * parent's thread-local errno only with the vforking thread, which the
 * kernel suspends until the child execs or exits. The helpers return -errno
 * so that callers never read errno later by mistake.
 *
 * Elsewhere than Linux (macOS, where only spawn.c's fork path uses the
 * child) the helpers are the libc calls: macOS has no musl and no raw
 * syscall ABI worth using.
 */
#ifndef OS_CHILD_H
#define OS_CHILD_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/syscall.h>
#endif

#ifdef __linux__
/* One record of getdents64(2), which libc does not declare (readdir would
 * allocate): the spawn child's /proc/self/fd walk and the cgroup keeper's
 * walk of a job's cgroup tree read directories with it. */
struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};
#endif

/* The child's failure report: the step that failed and its errno (positive).
 * Stage 0 never names a failure. */
typedef struct os_child_report {
    int stage;
    int error;
} os_child_report;

/* ---- raw system calls: 0 (or the result) or -errno --------------------- */

static inline long os_sys_ret(long r) { return r < 0 ? -(long)errno : r; }

#ifdef __linux__
#define OS_SYS(...) os_sys_ret(syscall(__VA_ARGS__))

static inline int os_sys_close(int fd) { return (int)OS_SYS(SYS_close, fd); }
static inline long os_sys_write(int fd, const void *buf, size_t len) {
    return OS_SYS(SYS_write, fd, buf, len);
}
static inline int os_sys_open(const char *path, int flags) {
    return (int)OS_SYS(SYS_openat, AT_FDCWD, path, flags, 0);
}
static inline int os_sys_openat(int dirfd, const char *path, int flags) {
    return (int)OS_SYS(SYS_openat, dirfd, path, flags, 0);
}
static inline int os_sys_fcntl(int fd, int cmd, long arg) {
    return (int)OS_SYS(SYS_fcntl, fd, cmd, arg);
}
/* dup2 for two different fds (the only case the child needs): arm64 has no
 * dup2 system call, dup3 behaves the same there. */
static inline int os_sys_dup2(int from, int to) { return (int)OS_SYS(SYS_dup3, from, to, 0); }
static inline int os_sys_chdir(const char *path) { return (int)OS_SYS(SYS_chdir, path); }
static inline int os_sys_setpgid(int pid, int pgid) { return (int)OS_SYS(SYS_setpgid, pid, pgid); }
static inline int os_sys_getppid(void) { return (int)syscall(SYS_getppid); }
static inline int os_sys_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                               unsigned long a5) {
    return (int)OS_SYS(SYS_prctl, option, a2, a3, a4, a5);
}
static inline int os_sys_unshare(int flags) { return (int)OS_SYS(SYS_unshare, flags); }
static inline int os_sys_execve(const char *path, char *const argv[], char *const envp[]) {
    return (int)OS_SYS(SYS_execve, path, argv, envp);
}
__attribute__((noreturn)) static inline void os_sys_exit(int status) {
    for (;;)
        syscall(SYS_exit_group, status);
}

/* prlimit64 on ourselves: the kernel's struct rlimit64, whatever libc's
 * rlim_t is. A negative soft/hard in `old` means infinity. */
struct os_rlimit64 {
    uint64_t cur;
    uint64_t max;
};
static inline int os_sys_setrlimit(int resource, uint64_t value) {
    struct os_rlimit64 rl = {value, value};
    return (int)OS_SYS(SYS_prlimit64, 0, resource, &rl, NULL);
}
static inline int os_sys_getrlimit(int resource, struct os_rlimit64 *old) {
    return (int)OS_SYS(SYS_prlimit64, 0, resource, NULL, old);
}

/* The kernel's sigset size (not libc's sigset_t, which is 128 bytes on
 * glibc): 64 signals, 8 bytes, on every architecture we build for. */
#define OS_KERNEL_SIGSET_SIZE 8

static inline int os_sys_sigmask_set(const uint64_t *mask) {
    return (int)OS_SYS(SYS_rt_sigprocmask, SIG_SETMASK, mask, NULL, OS_KERNEL_SIGSET_SIZE);
}
#else
#define OS_SYS(r) os_sys_ret((long)(r))

static inline int os_sys_close(int fd) { return (int)OS_SYS(close(fd)); }
static inline long os_sys_write(int fd, const void *buf, size_t len) {
    return OS_SYS(write(fd, buf, len));
}
static inline int os_sys_open(const char *path, int flags) {
    return (int)OS_SYS(open(path, flags));
}
static inline int os_sys_fcntl(int fd, int cmd, long arg) {
    return (int)OS_SYS(fcntl(fd, cmd, arg));
}
static inline int os_sys_dup2(int from, int to) { return (int)OS_SYS(dup2(from, to)); }
static inline int os_sys_chdir(const char *path) { return (int)OS_SYS(chdir(path)); }
static inline int os_sys_setpgid(int pid, int pgid) { return (int)OS_SYS(setpgid(pid, pgid)); }
static inline int os_sys_execve(const char *path, char *const argv[], char *const envp[]) {
    return (int)OS_SYS(execve(path, argv, envp));
}
__attribute__((noreturn)) static inline void os_sys_exit(int status) { _exit(status); }
#endif

/* ---- the child's side ---------------------------------------------------- */

/* Every signal disposition back to SIG_DFL (handled signals must not run the
 * parent's handlers in the child, ignored ones must not stay ignored in the
 * new program). Call with every signal blocked (os_block_signals). */
void os_child_reset_signals(void);

/* Unblocks every signal (right before exec or the probe's own work). */
void os_child_unblock_signals(void);

/* Reports (stage, error) over `fd` (if >= 0) and into `shared` (if not NULL:
 * the vfork child's report in the parent's memory), then exits with 127.
 * `error` is a positive errno. */
__attribute__((noreturn)) void os_child_report_and_exit(int fd, volatile os_child_report *shared,
                                                        int stage, int error);

/* ---- the parent's side (inline: the child files must not pull them in) --- */

#include <pthread.h>

/* Blocks every signal in the calling thread around a fork, so that no handler
 * of the parent runs in the child before it reset its dispositions. */
static inline void os_block_signals(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

static inline void os_restore_signals(const sigset_t *old) {
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Reads a child's report from the read end of its close-on-exec pipe. 1: a
 * report was read; 0: EOF (the child exec'd, or finished without failing). */
static inline int os_child_read_report(int fd, os_child_report *report) {
    size_t got = 0;
    while (got < sizeof *report) {
        ssize_t n = read(fd, (char *)report + got, sizeof *report - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got == sizeof *report;
}

#endif
