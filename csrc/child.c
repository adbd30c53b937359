/*
 * child.c: the child's side of child.h, shared by the spawn core's child
 * (spawn_child.c) and the sandbox probes (sandbox.c): the signal reset and
 * the failure report. Runs between fork and exec: raw system calls only
 * (the rule in child.h).
 */
#include "child.h"

#ifdef __linux__
/* The kernel's struct sigaction (not libc's): a handler, flags, maybe a
 * restorer, then the mask, except on MIPS where the flags come first. All
 * zero is SIG_DFL with no flags everywhere; 64 bytes cover every layout. */
struct os_kernel_sigaction {
    unsigned long words[8];
};

/* SIG_DFL and not SA_SIGINFO (the restorer and mask glibc leaves there do
 * not matter): the disposition a new program starts with anyway. */
static int is_default(const struct os_kernel_sigaction *sa) {
#if defined(__mips__)
    for (size_t i = 0; i < sizeof sa->words / sizeof sa->words[0]; i++)
        if (sa->words[i] != 0)
            return 0;
    return 1;
#else
    return sa->words[0] == 0 && !(sa->words[1] & SA_SIGINFO);
#endif
}
#endif

/* Like glibc's posix_spawn, only the dispositions that are not already
 * SIG_DFL are written: a query is cheaper than a write (which also flushes
 * pending signals), and most of the ~64 signals are at their default. The
 * answer cannot go stale: without CLONE_SIGHAND the child has its own table,
 * which nothing but the child changes, and every signal stays blocked until
 * the reset is done. Unlike libc's sigaction, the system call also resets
 * the signals libc keeps for itself (glibc's 32 and 33): the new program
 * starts with those at SIG_DFL anyway. */
void os_child_reset_signals(void) {
#ifdef __linux__
    struct os_kernel_sigaction dfl, old;
    int sig;

    for (size_t i = 0; i < sizeof dfl.words / sizeof dfl.words[0]; i++)
        dfl.words[i] = 0;
    for (sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        old = dfl;
        if (syscall(SYS_rt_sigaction, sig, NULL, &old, OS_KERNEL_SIGSET_SIZE) == 0 &&
            is_default(&old))
            continue;
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, OS_KERNEL_SIGSET_SIZE);
    }
#else
    struct sigaction dfl, old;
    int sig;

    dfl.sa_handler = SIG_DFL;
    dfl.sa_flags = 0;
    sigemptyset(&dfl.sa_mask);
    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
            !(old.sa_flags & SA_SIGINFO))
            continue;
        (void)sigaction(sig, &dfl, NULL);
    }
#endif
}

void os_child_unblock_signals(void) {
#ifdef __linux__
    static const uint64_t none = 0;
    (void)os_sys_sigmask_set(&none);
#else
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
#endif
}

void os_child_report_and_exit(int fd, volatile os_child_report *shared, int stage, int error) {
    os_child_report report = {stage, error};

    if (shared != NULL) {
        shared->stage = stage;
        shared->error = error;
    }
    if (fd >= 0) {
        long n;
        do {
            n = os_sys_write(fd, &report, sizeof report);
        } while (n == -EINTR);
    }
    os_sys_exit(127);
}
