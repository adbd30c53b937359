/*
 * spawn.c: the parent side of the spawn core.
 *
 * Linux: clone(CLONE_VM | CLONE_VFORK) on a stack of its own, so the cost does
 * not grow with the parent's memory; the child reports failures straight into
 * shared memory. A sandbox plan's namespaces are made by clone() itself
 * (unshare of a user namespace refuses a process that shares its mm); if
 * clone() refuses them, a real fork unshares them in the child and reports
 * over a close-on-exec pipe. macOS: posix_spawn when nothing needs a fork,
 * else fork.
 *
 * All signals are blocked in the calling thread around the fork, so no handler
 * of the parent runs in the child before it reset its dispositions.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpark_api.h"
#include "spawn_internal.h"

#ifdef __linux__
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWPID
#define CLONE_NEWPID 0x20000000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#endif

#ifdef __APPLE__
#include <spawn.h>
#endif
extern char **environ;

#define CHILD_STACK_SIZE (256 * 1024)

/* AddressSanitizer builds (scripts/test-sanitizers): the child's stack is
 * reused, and a child leaves its frames' redzones poisoned in the shadow
 * memory when it execs or exits without returning (ASan cannot unpoison a
 * stack it did not allocate). The next child's frames would then trip on
 * that stale poison: the parent clears it before every spawn, and before
 * the stack is unmapped (else a later mapping at that address inherits it). */
#if defined(__SANITIZE_ADDRESS__)
#define OS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OS_ASAN 1
#endif
#endif
#ifdef OS_ASAN
#include <sanitizer/asan_interface.h>
#define UNPOISON_CHILD_STACK(stack) __asan_unpoison_memory_region((stack), CHILD_STACK_SIZE)
#else
#define UNPOISON_CHILD_STACK(stack) ((void)(stack))
#endif

static int fail(os_spawn_result *result, int stage, int error) {
    result->stage = stage;
    result->error = error;
    return -error;
}

static void reap(pid_t pid) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

/* execvp-style search of `path_list` for `file`: the first regular file we may
 * execute wins; EACCES if only unusable candidates were seen, else ENOENT. */
static int resolve_program(const char *file, const char *path_list, char *out, size_t out_size) {
    size_t file_len = strlen(file);
    int seen_eacces = 0;
    const char *dir = path_list;

    if (file_len == 0)
        return ENOENT;
    for (;;) {
        const char *end = strchr(dir, ':');
        size_t dir_len = end ? (size_t)(end - dir) : strlen(dir);
        struct stat st;
        size_t len = 0;

        if (dir_len + 1 + file_len + 1 <= out_size) {
            if (dir_len == 0) {
                out[len++] = '.'; /* an empty entry means the current directory */
            } else {
                memcpy(out, dir, dir_len);
                len = dir_len;
            }
            out[len++] = '/';
            memcpy(out + len, file, file_len + 1);
            if (stat(out, &st) == 0) {
                if (S_ISREG(st.st_mode) && access(out, X_OK) == 0)
                    return 0;
                seen_eacces = 1;
            } else if (errno == EACCES) {
                seen_eacces = 1;
            }
        }
        if (end == NULL)
            break;
        dir = end + 1;
    }
    return seen_eacces ? EACCES : ENOENT;
}

#ifdef __linux__
/* The child's stack is cached per thread and only unmapped at thread exit:
 * unmapping it after every spawn costs a TLB-shootdown IPI to the CPU the
 * vfork child ran on (it shared our mm), which measured ~50 us in a VM. One
 * spawn at a time per thread, so one stack per thread is enough. */
static pthread_key_t stack_key;
static pthread_once_t stack_key_once = PTHREAD_ONCE_INIT;

static void free_child_stack(void *stack) {
    /* ASan builds: the memory may be mapped again for something else. */
    UNPOISON_CHILD_STACK(stack);
    munmap(stack, CHILD_STACK_SIZE);
}

static void create_stack_key(void) { (void)pthread_key_create(&stack_key, free_child_stack); }

static char *child_stack(void) {
    char *stack;

    pthread_once(&stack_key_once, create_stack_key);
    stack = pthread_getspecific(stack_key);
    if (stack != NULL)
        return stack;
    stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return NULL;
    if (pthread_setspecific(stack_key, stack) != 0) {
        munmap(stack, CHILD_STACK_SIZE);
        errno = ENOMEM;
        return NULL;
    }
    return stack;
}

/* Set once a child could not take a private fd table (see
 * OS_STAGE_PRIVATE_FDS_UNAVAILABLE): from then on every vfork child gets a
 * copy of the table from clone() itself. */
static int clone_files_unusable;

/* ---- clone3 with CLONE_INTO_CGROUP --------------------------------------
 *
 * A job's child must be in its cgroup before it runs a single instruction of
 * the new program (else a fast fork escapes). clone3(CLONE_INTO_CGROUP)
 * (Linux >= 5.7) creates it there, which is also cheaper than migrating it
 * afterwards. glibc has no public clone3 wrapper, and the vfork-style child
 * must run on a stack of its own (it returns from the system call into a
 * function call of its own, which would overwrite the suspended parent's
 * frames), so a few instructions of assembly do what glibc's clone() does:
 * the system call, then, in the child, fn(arg) on the new stack and
 * exit_group. Other architectures (and kernels or seccomp policies that
 * refuse clone3) take the fallback: clone(), and the child writes itself
 * into cgroup.procs first thing (spawn_child.c). */
struct os_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

#if defined(__x86_64__)
#define HAVE_CLONE3_RUN 1
/* long os_clone3_run(args, size, fn, arg): the child's pid or -errno. The
 * system call keeps every register but rax, rcx and r11, so fn and arg ride
 * in r8/r9 into the child, whose stack pointer the kernel set. */
__asm__(".text\n"
        ".p2align 4\n"
        ".type os_clone3_run,@function\n"
        "os_clone3_run:\n"
        "    mov %rdx, %r8\n"
        "    mov %rcx, %r9\n"
        "    mov $435, %eax\n"
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"
        "    xor %ebp, %ebp\n"
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov %eax, %edi\n"
        "    mov $231, %eax\n"
        "    syscall\n"
        "    hlt\n"
        "1:  ret\n"
        ".size os_clone3_run, .-os_clone3_run\n");
#elif defined(__aarch64__)
#define HAVE_CLONE3_RUN 1
/* The same on arm64: svc keeps every register but x0. */
__asm__(".text\n"
        ".p2align 2\n"
        ".type os_clone3_run,%function\n"
        "os_clone3_run:\n"
        "    mov x9, x2\n"
        "    mov x10, x3\n"
        "    mov x8, #435\n"
        "    svc #0\n"
        "    cbnz x0, 1f\n"
        "    mov x29, xzr\n"
        "    mov x0, x10\n"
        "    blr x9\n"
        "    mov x8, #94\n"
        "    svc #0\n"
        "    brk #0\n"
        "1:  ret\n"
        ".size os_clone3_run, .-os_clone3_run\n");
#else
#define HAVE_CLONE3_RUN 0
#endif

#if HAVE_CLONE3_RUN
long os_clone3_run(struct os_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#endif

/* Set once clone3 was refused as a whole (ENOSYS: an old kernel or a seccomp
 * policy; E2BIG: no CLONE_INTO_CGROUP): from then on the child joins its
 * cgroup itself. */
static int clone3_unusable = !HAVE_CLONE3_RUN;

/* clone3 of os_child_main into the cgroup `cgroup_fd`: the child's pid, or
 * -errno with nothing started. */
static pid_t clone3_into_cgroup(int flags, int cgroup_fd, char *stack, os_child_ctx *ctx,
                                int *pidfd) {
#if HAVE_CLONE3_RUN
    struct os_clone_args args;
    long pid;

    memset(&args, 0, sizeof args);
    /* clone3 takes the exit signal apart from the flags. */
    args.flags = ((uint64_t)(unsigned int)flags & ~(uint64_t)0xff) | CLONE_INTO_CGROUP;
    args.exit_signal = (uint64_t)(flags & 0xff);
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = CHILD_STACK_SIZE;
    args.cgroup = (uint64_t)cgroup_fd;
    pid = os_clone3_run(&args, sizeof args, os_child_main, ctx);
    if (pid == -ENOSYS || pid == -E2BIG)
        __atomic_store_n(&clone3_unusable, 1, __ATOMIC_RELAXED);
    return (pid_t)pid;
#else
    return -ENOSYS;
#endif
}

static int spawn_clone(const os_spawn_request *req, const char *path, os_spawn_result *result) {
    os_child_ctx ctx;
    os_child_report report;
    sigset_t old;
    int report_pipe[2] = {-1, -1};
    int use_vfork = !req->force_fork;
    /* A sandbox's namespaces come from clone() itself (a vfork child may not
     * unshare a user namespace). */
    int ns_flags = use_vfork ? os_sandbox_clone_flags(req->sandbox) : 0;
    int flags = SIGCHLD;
    int in_cgroup = 0;
    int pidfd = -1;
    int clone_errno;
    char *stack;
    pid_t pid;

    stack = child_stack();
    if (stack == NULL)
        return fail(result, OS_STAGE_FORK, errno);
    UNPOISON_CHILD_STACK(stack);
    if (!use_vfork && pipe2(report_pipe, O_CLOEXEC) < 0)
        return fail(result, OS_STAGE_FORK, errno);

    ctx.request = req;
    ctx.path = path;
    ctx.envp = req->envp != NULL ? req->envp : environ;
    ctx.report_fd = report_pipe[1];
    ctx.shares_fd_table = use_vfork && req->sandbox == NULL &&
                          !__atomic_load_n(&clone_files_unusable, __ATOMIC_RELAXED);
    ctx.sandbox_cloned = ns_flags != 0;
    ctx.shared.stage = OS_STAGE_NONE;
    ctx.shared.error = 0;
    ctx.join_cgroup_fd = -1;
    /* PR_SET_PDEATHSIG follows the spawning thread: only the main thread
     * lives as long as the process (Python never ends it early). */
    ctx.pdeathsig_parent =
        req->die_with_parent && (pid_t)syscall(SYS_gettid) == getpid() ? getpid() : 0;
    /* The pid namespace needs the user namespace of the same clone(). */
    if (ns_flags != 0 && req->new_pid_ns)
        ns_flags |= CLONE_NEWPID;

    /* CLONE_FILES: no copy of the parent's fd table at clone time; the child
     * takes a private copy of only the fds it needs (spawn_child.c). */
    if (use_vfork)
        flags |= CLONE_VM | CLONE_VFORK | ns_flags;
    if (ctx.shares_fd_table)
        flags |= CLONE_FILES;
    if (req->want_pidfd)
        flags |= CLONE_PIDFD;

    os_block_signals(&old);
    pid = -1;
    clone_errno = ENOSYS;
    if (req->cgroup_fd >= 0 && use_vfork && !__atomic_load_n(&clone3_unusable, __ATOMIC_RELAXED)) {
        pid = clone3_into_cgroup(flags, req->cgroup_fd, stack, &ctx, &pidfd);
        if (pid < 0) {
            clone_errno = -pid;
            pid = -1;
        } else {
            in_cgroup = 1;
        }
    }
    if (pid < 0) {
        /* Without clone3, or refused (it may refuse what clone() accepts):
         * the child writes itself into the cgroup before anything else. */
        ctx.join_cgroup_fd = req->cgroup_fd;
        /* The stack grows down on every architecture we support. */
        pid = clone(os_child_main, stack + CHILD_STACK_SIZE, flags, &ctx, &pidfd);
        clone_errno = errno;
        in_cgroup = pid >= 0 && req->cgroup_fd >= 0;
    }
    os_restore_signals(&old);
    /* vfork: the child has exec'd or exited, its stack is free again.
     * fork: the child has its own copy. Either way it can be reused. */

    if (pid < 0) {
        if (report_pipe[0] >= 0) {
            close(report_pipe[0]);
            close(report_pipe[1]);
        }
        if (ns_flags & CLONE_NEWPID) {
            /* A pid namespace refused (its nesting limit, say): the job
             * stays contained by its cgroup or process group. */
            os_spawn_request without_pidns = *req;
            without_pidns.new_pid_ns = 0;
            return spawn_clone(&without_pidns, path, result);
        }
        if (ns_flags != 0) {
            /* clone() refused the namespaces: a real fork unshares them in
             * the child, which reports the exact error as stage "sandbox". */
            os_spawn_request forked = *req;
            forked.force_fork = 1;
            return spawn_clone(&forked, path, result);
        }
        return fail(result, OS_STAGE_FORK, clone_errno);
    }

    report.stage = OS_STAGE_NONE;
    report.error = 0;
    if (use_vfork) {
        report.stage = ctx.shared.stage;
        report.error = ctx.shared.error;
    } else {
        close(report_pipe[1]);
        /* EOF (the pipe closed by exec) means success. */
        if (!os_child_read_report(report_pipe[0], &report))
            report.stage = OS_STAGE_NONE;
        close(report_pipe[0]);
    }

    if (report.stage != OS_STAGE_NONE) {
        reap(pid);
        if (pidfd >= 0)
            close(pidfd);
        if (report.stage == OS_STAGE_PRIVATE_FDS_UNAVAILABLE) {
            /* That child only reset its own signal table (and maybe joined
             * a new process group) before _exit: try again the old way. */
            __atomic_store_n(&clone_files_unusable, 1, __ATOMIC_RELAXED);
            return spawn_clone(req, path, result);
        }
        return fail(result, report.stage, report.error);
    }
    result->pid = pid;
    result->contained =
        (in_cgroup ? OS_CONTAINED_CGROUP : 0) | (ns_flags & CLONE_NEWPID ? OS_CONTAINED_PID_NS : 0);
    /* Kernels before 5.2 ignore CLONE_PIDFD and leave pidfd at -1. Kept as
     * long as the child is watched: parked (fdpark_api.h). */
    result->pidfd = os_fd_park(pidfd);
    return 0;
}
#endif

#ifdef __APPLE__
/* A real fork (rlimits or a working directory need code in the child). */
static int spawn_fork(const os_spawn_request *req, const char *path, os_spawn_result *result) {
    os_child_ctx ctx;
    os_child_report report = {OS_STAGE_NONE, 0};
    sigset_t old;
    int report_pipe[2];
    pid_t pid;
    int fork_errno;

    if (pipe(report_pipe) < 0)
        return fail(result, OS_STAGE_FORK, errno);
    fcntl(report_pipe[0], F_SETFD, FD_CLOEXEC);
    fcntl(report_pipe[1], F_SETFD, FD_CLOEXEC);
    ctx.request = req;
    ctx.path = path;
    ctx.envp = req->envp != NULL ? req->envp : environ;
    ctx.report_fd = report_pipe[1];
    ctx.shares_fd_table = 0;
    ctx.sandbox_cloned = 0;
    ctx.join_cgroup_fd = -1;
    ctx.pdeathsig_parent = 0;
    ctx.shared.stage = OS_STAGE_NONE;
    ctx.shared.error = 0;

    os_block_signals(&old);
    pid = fork();
    if (pid == 0)
        os_child_main(&ctx);
    fork_errno = errno;
    os_restore_signals(&old);
    close(report_pipe[1]);
    if (pid < 0) {
        close(report_pipe[0]);
        return fail(result, OS_STAGE_FORK, fork_errno);
    }
    if (!os_child_read_report(report_pipe[0], &report))
        report.stage = OS_STAGE_NONE;
    close(report_pipe[0]);
    if (report.stage != OS_STAGE_NONE) {
        reap(pid);
        return fail(result, report.stage, report.error);
    }
    result->pid = pid;
    return 0;
}

/* posix_spawn does setpgid, the signal reset and close-on-exec-by-default in
 * the kernel; it cannot set rlimits or report which step failed (all
 * failures are reported as stage "exec"). */
static int spawn_posix(const os_spawn_request *req, const char *path, os_spawn_result *result) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    sigset_t all, none;
    int moved[3] = {-1, -1, -1};
    short flags = POSIX_SPAWN_CLOEXEC_DEFAULT | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    pid_t pid;
    int i, err;

    if ((err = posix_spawnattr_init(&attr)) != 0)
        return fail(result, OS_STAGE_FORK, err);
    if ((err = posix_spawn_file_actions_init(&actions)) != 0) {
        posix_spawnattr_destroy(&attr);
        return fail(result, OS_STAGE_FORK, err);
    }
    if (req->new_process_group) {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, flags);

    for (i = 0; i < 3 && err == 0; i++) {
        int src = req->stdio[i];
        if (src >= 0 && src <= 2 && src != i) {
            /* A later dup2 must not read a source an earlier one replaced. */
            moved[i] = fcntl(src, F_DUPFD_CLOEXEC, 3);
            if (moved[i] < 0) {
                err = errno;
                break;
            }
            src = moved[i];
        }
        if (src == OS_SPAWN_FD_DEVNULL)
            err = posix_spawn_file_actions_addopen(&actions, i, "/dev/null", O_RDWR, 0);
        else if (src < 0 || src == i)
            err = posix_spawn_file_actions_addinherit_np(&actions, i);
        else
            err = posix_spawn_file_actions_adddup2(&actions, src, i);
    }
    for (i = 0; i < req->n_pass_fds && err == 0; i++)
        err = posix_spawn_file_actions_addinherit_np(&actions, req->pass_fds[i]);
    if (err == 0)
        err = posix_spawn(&pid, path, &actions, &attr, req->argv,
                          req->envp != NULL ? req->envp : environ);

    for (i = 0; i < 3; i++)
        if (moved[i] >= 0)
            close(moved[i]);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (err != 0)
        return fail(result, OS_STAGE_EXEC, err);
    result->pid = pid;
    return 0;
}
#endif

int os_spawn(const os_spawn_request *req, os_spawn_result *result) {
    char resolved[PATH_MAX];
    const char *path = req->file;

    result->pid = -1;
    result->pidfd = -1;
    result->stage = OS_STAGE_NONE;
    result->error = 0;
    result->contained = 0;

    if (req->search_path != NULL && strchr(req->file, '/') == NULL) {
        int err = resolve_program(req->file, req->search_path, resolved, sizeof resolved);
        if (err != 0)
            return fail(result, OS_STAGE_EXEC, err);
        path = resolved;
    }
#ifdef __linux__
    return spawn_clone(req, path, result);
#elif defined(__APPLE__)
    {
        int i, needs_fork = req->cwd != NULL;
        for (i = 0; i < 4; i++)
            needs_fork |= req->rlimits[i] >= 0;
        return needs_fork ? spawn_fork(req, path, result) : spawn_posix(req, path, result);
    }
#else
#error "orchestrator_spawn supports Linux and macOS"
#endif
}

int os_spawn_packed(const char *file, const char *search_path, const char *argv_block,
                    long long argv_len, int argc, const char *env_block, long long env_len,
                    int envc, const char *cwd, int stdin_fd, int stdout_fd, int stderr_fd,
                    const int *pass_fds, int n_pass_fds, int flags, const long long *rlimits,
                    int cgroup_fd, const os_sandbox_plan *sandbox, int *out) {
    os_spawn_request req;
    os_spawn_result result;
    char *small[32];
    char **arrays = small;
    size_t slots;
    int i, rc;

    if (argc < 1 || envc < 0 || (env_block == NULL && envc != 0))
        return OS_SPAWN_BAD_STRINGS;
    /* One array for both: argv (argc + NULL), then envp (envc + NULL). Most
     * spawns fit on the stack; malloc is fine here, before the fork. */
    slots = (size_t)argc + 1 + (env_block != NULL ? (size_t)envc + 1 : 0);
    if (slots > sizeof small / sizeof small[0]) {
        arrays = malloc(slots * sizeof *arrays);
        if (arrays == NULL) {
            out[0] = out[1] = -1;
            out[2] = OS_STAGE_FORK;
            out[3] = ENOMEM;
            out[4] = 0;
            return -ENOMEM;
        }
    }
    /* The blocks are only read: the casts follow os_split_strings' type. */
    rc = os_split_strings((char *)argv_block, argv_len, arrays, argc) == argc
             ? 0
             : OS_SPAWN_BAD_STRINGS;
    if (rc == 0 && env_block != NULL &&
        os_split_strings((char *)env_block, env_len, arrays + argc + 1, envc) != envc)
        rc = OS_SPAWN_BAD_STRINGS;
    if (rc != 0)
        goto done;

    memset(&req, 0, sizeof req);
    req.file = file;
    req.search_path = search_path;
    req.argv = arrays;
    req.envp = env_block != NULL ? arrays + argc + 1 : NULL;
    req.cwd = cwd;
    req.stdio[0] = stdin_fd;
    req.stdio[1] = stdout_fd;
    req.stdio[2] = stderr_fd;
    req.pass_fds = pass_fds;
    req.n_pass_fds = n_pass_fds;
    req.new_process_group = (flags & OS_SPAWN_NEW_PROCESS_GROUP) != 0;
    req.want_pidfd = (flags & OS_SPAWN_WANT_PIDFD) != 0;
    req.force_fork = (flags & OS_SPAWN_FORCE_FORK) != 0;
    req.die_with_parent = (flags & OS_SPAWN_DIE_WITH_PARENT) != 0;
    req.new_pid_ns = (flags & OS_SPAWN_NEW_PID_NS) != 0;
    req.cgroup_fd = cgroup_fd;
    for (i = 0; i < 4; i++)
        req.rlimits[i] = rlimits != NULL ? rlimits[i] : -1;
    req.sandbox = sandbox;
    rc = os_spawn(&req, &result);
    out[0] = result.pid;
    out[1] = result.pidfd;
    out[2] = result.stage;
    out[3] = result.error;
    out[4] = result.contained;
done:
    if (arrays != small)
        free(arrays);
    return rc;
}

int os_split_strings(char *block, long long length, char **out, int n) {
    long long off = 0;
    int count = 0;

    while (off < length && count < n) {
        out[count++] = block + off;
        off += (long long)strlen(block + off) + 1;
    }
    out[count] = NULL;
    /* Fewer NULs than strings means a string held an embedded NUL. */
    return off == length ? count : -1;
}

static int sigchld_wakeup_fd = -1;
static struct sigaction sigchld_previous;

static void sigchld_handler(int sig, siginfo_t *info, void *uctx) {
    int saved_errno = errno;
    ssize_t ignored;

    if (sigchld_wakeup_fd >= 0)
        ignored = write(sigchld_wakeup_fd, "c", 1);
    (void)ignored;
    /* Chain to whoever handled SIGCHLD before us (Python's handler, say). */
    if (sigchld_previous.sa_flags & SA_SIGINFO) {
        if (sigchld_previous.sa_sigaction != NULL)
            sigchld_previous.sa_sigaction(sig, info, uctx);
    } else if (sigchld_previous.sa_handler != SIG_DFL && sigchld_previous.sa_handler != SIG_IGN) {
        sigchld_previous.sa_handler(sig);
    }
    errno = saved_errno;
}

int os_sigchld_install(int wakeup_fd) {
    struct sigaction sa;

    if (sigchld_wakeup_fd >= 0) {
        sigchld_wakeup_fd = wakeup_fd;
        return 0;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigchld_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigchld_wakeup_fd = wakeup_fd;
    if (sigaction(SIGCHLD, &sa, &sigchld_previous) < 0) {
        sigchld_wakeup_fd = -1;
        return -errno;
    }
    return 0;
}

/* ---- waiting and reaping (the blocking half of the Child handle) -------- */

int os_wait_exit_nowait(int pid) {
    siginfo_t info;

    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0)
        return -errno;
    return 0;
}

int os_reap(int pid, long long *out) {
    struct rusage usage;
    int status;
    pid_t got;

    do {
        got = wait4((pid_t)pid, &status, WNOHANG, &usage);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    if (got == 0)
        return 0;
    if (WIFEXITED(status))
        out[0] = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        out[0] = -(long long)WTERMSIG(status);
    else
        return -EINVAL; /* stopped/continued: wait4 was not asked for those */
    out[1] = (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec;
    out[2] = (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec;
    out[3] = (long long)usage.ru_maxrss;
    return 1;
}

/* Next to the OS_STAGE_* values of spawn_api.h: their names in errors. */
const char *os_spawn_stage_name(int stage) {
    switch (stage) {
    case OS_STAGE_CHDIR:
        return "chdir";
    case OS_STAGE_SETPGID:
        return "setpgid";
    case OS_STAGE_SETRLIMIT:
        return "setrlimit";
    case OS_STAGE_DUP2:
        return "dup2";
    case OS_STAGE_SANDBOX:
        return "sandbox";
    case OS_STAGE_FORK:
        return "fork";
    case OS_STAGE_CGROUP:
        return "cgroup";
    default:
        return "exec";
    }
}
