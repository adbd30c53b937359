/*
 * cgroup.c: cgroup v2 job containment and the keeper (Linux).
 *
 * Layout (made by orchestrator_spawn/_cgroup.py): the orchestrator's own
 * cgroup gets ONE child, `orchestrator-spawn.<pid>.<token>`, holding `jobs`
 * (jobs that die with the orchestrator) and `detached` (die_with_parent=
 * False); each job is one cgroup below one of those. No process ever lives
 * in those two or in the per-orchestrator cgroup itself, so the "no internal
 * processes" rule can never bite, and the orchestrator's own cgroup only
 * gains a child directory (cgroup.kill, freeze, events and cpu.stat need no
 * controller).
 *
 * Die with the parent. PR_SET_PDEATHSIG fires when the *thread* that spawned
 * the child exits, not the process, and only hits the child itself (not what
 * it setsid'd away), so it cannot be the mechanism. Instead one keeper
 * process per orchestrator, forked once before the first cgroup job, sleeps
 * in poll() on a pidfd of the orchestrator. When the orchestrator dies, for
 * whatever reason (SIGKILL and the OOM killer included), the keeper writes
 * `jobs/cgroup.kill`, which takes down every process that any of those jobs
 * started, wherever it moved in the process tree; then it waits for the
 * per-orchestrator cgroup to empty and removes it. It is the orchestrator's
 * grandchild (nobody of ours can reap it by mistake), runs in its own
 * session (a terminal's Ctrl-C does not reach it), keeps only the two fds it
 * needs (it must not hold the orchestrator's pipes open) and runs only
 * async-signal-safe code after the fork (raw system calls, no malloc).
 *
 * Without a writable cgroup the jobs are process groups. A keeper started
 * with kill_groups shares a bitmap of process group ids with the
 * orchestrator (MAP_SHARED, mapped before the fork), where each spawn sets
 * and each reap clears its job's bit, and SIGKILLs every group still set
 * once the orchestrator died. (The spawn core adds PR_SET_PDEATHSIG for
 * children of the main thread, the one thread that lives as long as the
 * process.)
 */
#include <errno.h>

#include "cgroup_api.h"
#include "child.h"

#ifdef __linux__

#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Everything below up to os_keeper_start also runs in the keeper: only
 * async-signal-safe calls. */

static int write_at(int dirfd, const char *file, const char *text) {
    int fd, err = 0;
    ssize_t n;
    size_t len = strlen(text);

    do {
        fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    do {
        n = write(fd, text, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        err = -errno;
    close(fd);
    return err;
}

/* Reads cgroup.procs of `dirfd` and sends `sig` to each pid. Returns the
 * number of pids seen, or -errno. */
static int signal_procs(int dirfd, int sig) {
    char buf[4096];
    int fd, count = 0, pid = 0, in_number = 0;
    ssize_t n;

    fd = openat(dirfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
                in_number = 1;
            } else if (in_number) {
                if (sig != 0)
                    (void)kill(pid, sig);
                count++;
                pid = 0;
                in_number = 0;
            }
        }
    }
    if (in_number) {
        if (sig != 0)
            (void)kill(pid, sig);
        count++;
    }
    close(fd);
    return count;
}

/* Calls visit(dirfd, child_dirfd, name, depth, arg) for each subdirectory. */
static void for_each_subdir(int dirfd, void (*visit)(int, int, const char *, int, int), int depth,
                            int arg) {
    char buf[2048];
    long n;
    int dir = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (dir < 0)
        return;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        long off = 0;
        while (off < n) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buf + off);
            off += entry->d_reclen;
            if (entry->d_type != DT_DIR || entry->d_name[0] == '.')
                continue;
            int sub = openat(dir, entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub < 0)
                continue;
            visit(dir, sub, entry->d_name, depth, arg);
            close(sub);
        }
    }
    close(dir);
}

/* cgroup depth below a job that the fallbacks follow (a job may make its own
 * child cgroups when it runs as root). */
#define MAX_DEPTH 16

static void signal_procs_below(int parent, int dirfd, const char *name, int depth, int sig) {
    (void)parent; /* for_each_subdir's visitor signature */
    (void)name;
    (void)signal_procs(dirfd, sig);
    if (depth < MAX_DEPTH)
        for_each_subdir(dirfd, signal_procs_below, depth + 1, sig);
}

int os_cgroup_signal(int dirfd, int sig) {
    int err = os_cgroup_populated(dirfd);

    if (err < 0)
        return err;
    /* A pid read from cgroup.procs belongs to a live member; for it to name
     * another process by the time kill() runs, it would have to exit and
     * the pid counter wrap around to it within those microseconds. */
    signal_procs_below(-1, dirfd, ".", 0, sig);
    return 0;
}

int os_cgroup_kill_frozen(int dirfd) {
    /* Freeze (recursive, so nothing forks meanwhile), SIGKILL every member
     * (a fatal signal gets through the v2 freezer), thaw. */
    int err = write_at(dirfd, "cgroup.freeze", "1");
    if (err < 0)
        return err;
    signal_procs_below(-1, dirfd, ".", 0, SIGKILL);
    return write_at(dirfd, "cgroup.freeze", "0");
}

int os_cgroup_kill(int dirfd) {
    int err = write_at(dirfd, "cgroup.kill", "1");

    /* No cgroup.kill before Linux 5.14. If cgroup.freeze is missing too
     * (before 5.2), the directory itself may be gone: that is reported. */
    return err == -ENOENT ? os_cgroup_kill_frozen(dirfd) : err;
}

int os_cgroup_populated(int dirfd) {
    char buf[256];
    int fd;
    ssize_t n;
    const char *line;

    fd = openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    do {
        n = read(fd, buf, sizeof buf - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    line = strstr(buf, "populated ");
    if (line == NULL)
        return -EINVAL;
    return line[10] == '1';
}

int os_cgroup_count_procs(int dirfd) { return signal_procs(dirfd, 0); }

int os_cgroup_wait_empty(int dirfd, int timeout_ms) {
    struct pollfd pfd;
    int result;

    pfd.fd = openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (pfd.fd < 0)
        return -errno;
    pfd.events = POLLPRI;
    for (;;) {
        char byte;
        int populated, ready;

        /* A kernfs file reports POLLPRI once it changed since this fd last
         * read it: read first, then check, then sleep, so no change is lost. */
        (void)lseek(pfd.fd, 0, SEEK_SET);
        (void)read(pfd.fd, &byte, 1);
        populated = os_cgroup_populated(dirfd);
        if (populated <= 0) {
            result = populated == 0 ? 1 : populated;
            break;
        }
        ready = poll(&pfd, 1, timeout_ms);
        if (ready <= 0) {
            result = ready == 0 ? 0 : -errno;
            break;
        }
    }
    close(pfd.fd);
    return result;
}

int os_cgroup_events_watch(int dirfd) {
    char path[64];
    int fd, err;

    fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* inotify takes a path: name the directory through our fd. */
    strcpy(path, "/proc/self/fd/");
    {
        char digits[16];
        int i = 0, v = dirfd;
        do {
            digits[i++] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0);
        size_t len = strlen(path);
        while (i > 0)
            path[len++] = digits[--i];
        path[len] = '\0';
    }
    strcat(path, "/cgroup.events");
    if (inotify_add_watch(fd, path, IN_MODIFY) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

void os_cgroup_events_drain(int fd) {
    char buf[1024];
    while (read(fd, buf, sizeof buf) > 0) {}
}

static void remove_below(int parent, int dirfd, const char *name, int depth, int unused) {
    (void)unused;
    if (depth < MAX_DEPTH)
        for_each_subdir(dirfd, remove_below, depth + 1, 0);
    (void)unlinkat(parent, name, AT_REMOVEDIR);
}

static void keeper_reset_signals(void) {
    struct sigaction dfl;
    sigset_t none;
    int sig;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Leaves the keeper with stdio on /dev/null, `watch_fd` on 3 and the cgroup
 * directory on 4 (-1: /dev/null sits there), nothing else. */
static int keeper_fds(int watch_fd, int own_dirfd) {
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    int keep[2] = {watch_fd, own_dirfd};
    int i;

    if (null_fd < 0)
        return -1;
    /* Move them all out of the way of 0-4 first. */
    null_fd = fcntl(null_fd, F_DUPFD_CLOEXEC, 10);
    if (null_fd < 0)
        return -1;
    for (i = 0; i < 2; i++) {
        keep[i] = keep[i] >= 0 ? fcntl(keep[i], F_DUPFD_CLOEXEC, 10) : null_fd;
        if (keep[i] < 0)
            return -1;
    }
    for (i = 0; i < 3; i++)
        if (dup2(null_fd, i) < 0)
            return -1;
    if (dup2(keep[0], 3) < 0 || dup2(keep[1], 4) < 0)
        return -1;
    if (syscall(SYS_close_range, 5, ~0U, 0) < 0) {
        int fd;
        for (fd = 5; fd < 4096; fd++)
            close(fd);
    }
    return 0;
}

/* Process groups of jobs that have no cgroup (this process may write none),
 * one bit per pgid up to the kernel's largest pid_max, in memory shared
 * with the keeper: registering a job costs one atomic OR, no system call
 * and no fd. 512 KiB of address space; only the pages that pids land on are
 * ever allocated. */
#define KEEPER_PID_LIMIT (1 << 22)
static unsigned long long *keeper_groups;

int os_keeper_groups_new(void) {
    void *map = mmap(NULL, KEEPER_PID_LIMIT / 8, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    /* A forked child of an orchestrator starts a table (and keeper) of its
     * own; the old mapping stays with the parent's keeper. */
    if (keeper_groups != NULL)
        munmap(keeper_groups, KEEPER_PID_LIMIT / 8);
    __atomic_store_n(&keeper_groups, map, __ATOMIC_RELEASE);
    return 0;
}

void os_keeper_group_set(int pgid, int registered) {
    unsigned long long *groups = __atomic_load_n(&keeper_groups, __ATOMIC_ACQUIRE);
    unsigned long long bit;

    if (groups == NULL || pgid <= 0 || pgid >= KEEPER_PID_LIMIT)
        return;
    bit = 1ULL << (pgid % 64);
    if (registered)
        __atomic_fetch_or(&groups[pgid / 64], bit, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&groups[pgid / 64], ~bit, __ATOMIC_RELAXED);
}

static void keeper_kill_groups(void) {
    for (int word = 0; word < KEEPER_PID_LIMIT / 64; word++) {
        unsigned long long bits = __atomic_load_n(&keeper_groups[word], __ATOMIC_RELAXED);
        for (int bit = 0; bits != 0 && bit < 64; bit++)
            if (bits & (1ULL << bit))
                (void)kill(-(word * 64 + bit), SIGKILL);
    }
}

static void keeper_main(int watch_fd, int own_dirfd, int kill_groups, const char *name) {
    struct pollfd pfd;
    int base, jobs;

    (void)setsid();
    keeper_reset_signals();
    (void)prctl(PR_SET_NAME, "os-spawn-keeper", 0, 0, 0);
    if (keeper_fds(watch_fd, own_dirfd) < 0)
        _exit(1);
    pfd.fd = 3;
    pfd.events = POLLIN;
    /* POLLIN: the pidfd's process exited (or the pipe reached EOF);
     * POLLHUP/POLLERR end the wait as well. */
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {}
    if (kill_groups && keeper_groups != NULL)
        keeper_kill_groups();
    if (own_dirfd < 0)
        _exit(0);
    base = openat(4, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base < 0)
        _exit(0);
    jobs = openat(base, "jobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (jobs >= 0) {
        (void)os_cgroup_kill(jobs);
        close(jobs);
    }
    /* Jobs spawned with die_with_parent=False may run on: the keeper
     * outlives them only to remove their cgroups once they are done. */
    while (os_cgroup_wait_empty(base, -1) == -EINTR) {}
    for_each_subdir(base, remove_below, 0, 0);
    close(base);
    (void)unlinkat(4, name, AT_REMOVEDIR);
    _exit(0);
}

int os_keeper_start(int watch_fd, int kill_groups, int own_dirfd, const char *name) {
    int pipe_fds[2];
    pid_t middle, keeper = -1;
    int status;
    ssize_t n;

    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return -errno;
    middle = fork();
    if (middle < 0) {
        int err = -errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return err;
    }
    if (middle == 0) {
        /* The middle process: fork the keeper, tell its pid, exit. */
        pid_t pid = fork();
        if (pid == 0) {
            close(pipe_fds[0]);
            close(pipe_fds[1]);
            keeper_main(watch_fd, own_dirfd, kill_groups, name);
        }
        do {
            n = write(pipe_fds[1], &pid, sizeof pid);
        } while (n < 0 && errno == EINTR);
        _exit(pid < 0 ? 1 : 0);
    }
    close(pipe_fds[1]);
    do {
        n = read(pipe_fds[0], &keeper, sizeof keeper);
    } while (n < 0 && errno == EINTR);
    close(pipe_fds[0]);
    while (waitpid(middle, &status, 0) < 0 && errno == EINTR) {}
    if (n != (ssize_t)sizeof keeper || keeper < 0)
        return -ECHILD;
    return keeper;
}

#else /* not Linux */

/* Stubs that fail with ENOSYS ignore their arguments by definition. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

int os_cgroup_kill(int dirfd) { return -ENOSYS; }
int os_cgroup_kill_frozen(int dirfd) { return -ENOSYS; }
int os_cgroup_signal(int dirfd, int sig) { return -ENOSYS; }
int os_cgroup_populated(int dirfd) { return -ENOSYS; }
int os_cgroup_count_procs(int dirfd) { return -ENOSYS; }
int os_cgroup_wait_empty(int dirfd, int timeout_ms) { return -ENOSYS; }
int os_cgroup_events_watch(int dirfd) { return -ENOSYS; }
void os_cgroup_events_drain(int fd) {}
int os_keeper_start(int watch_fd, int kill_groups, int own_dirfd, const char *name) {
    return -ENOSYS;
}
int os_keeper_groups_new(void) { return -ENOSYS; }
void os_keeper_group_set(int pgid, int registered) {}

#endif
