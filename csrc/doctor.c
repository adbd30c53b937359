/*
 * doctor.c: one short probe per feature for `orchestrator-spawn doctor`.
 *
 * These run in the parent only (never between fork and exec), so they may
 * allocate. Each probe tries the real call rather than reading a kernel
 * version: backports and seccomp policies (containers) make versions lie.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#endif

#include "doctor_api.h"

#ifdef __linux__

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

#define DOCTOR_STACK_SIZE (64 * 1024)

int os_doctor_pidfd_open(void) {
    long fd = syscall(SYS_pidfd_open, (long)getpid(), 0L);
    if (fd < 0)
        return -errno;
    close((int)fd);
    return 0;
}

int os_doctor_close_range(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int err;
    if (fd < 0)
        return -errno;
    if (syscall(SYS_close_range, (unsigned int)fd, (unsigned int)fd, 0U) == 0)
        return 0;
    err = errno;
    close(fd);
    return -err;
}

/* The child of the clone probe: a fresh copy of the parent (no CLONE_VM)
 * that only exits. */
static int doctor_child(void *arg) {
    (void)arg;
    _exit(0);
}

int os_doctor_clone_pidfd(void) {
    char *stack = malloc(DOCTOR_STACK_SIZE);
    int pidfd = -1;
    int status;
    pid_t pid;

    if (stack == NULL)
        return -ENOMEM;
    /* The stack grows down on every architecture we support. */
    pid = clone(doctor_child, stack + DOCTOR_STACK_SIZE, CLONE_PIDFD | SIGCHLD, NULL, &pidfd);
    if (pid < 0) {
        int err = errno;
        free(stack);
        return -err;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    free(stack);
    if (pidfd < 0)
        return -ENOSYS; /* kernels before 5.2 ignore the flag */
    close(pidfd);
    return 0;
}

#else /* !__linux__ */

int os_doctor_pidfd_open(void) { return -ENOSYS; }
int os_doctor_close_range(void) { return -ENOSYS; }
int os_doctor_clone_pidfd(void) { return -ENOSYS; }

#endif

/* pcre2_config writes strings of up to its own reported length. */
static int doctor_pcre2_string(uint32_t what, char *buf, size_t len) {
    int need = pcre2_config(what, NULL);
    if (need < 0) {
        if (len > 0)
            buf[0] = '\0';
        return 0;
    }
    if ((size_t)need > len)
        return -ENOSPC;
    pcre2_config(what, buf);
    return 0;
}

int os_doctor_pcre2_version(char *buf, size_t len) {
    return doctor_pcre2_string(PCRE2_CONFIG_VERSION, buf, len);
}

int os_doctor_pcre2_jit_built(void) {
    uint32_t jit = 0;
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit) < 0)
        return 0;
    return jit != 0;
}

int os_doctor_pcre2_jit_target(char *buf, size_t len) {
    if (!os_doctor_pcre2_jit_built()) {
        if (len > 0)
            buf[0] = '\0';
        return 0;
    }
    return doctor_pcre2_string(PCRE2_CONFIG_JITTARGET, buf, len);
}

int os_doctor_pcre2_jit_works(void) {
    int errorcode;
    PCRE2_SIZE erroroffset;
    pcre2_code *code;
    int works;

    if (!os_doctor_pcre2_jit_built())
        return 0;
    code = pcre2_compile((PCRE2_SPTR) "a+b", 3, 0, &errorcode, &erroroffset, NULL);
    if (code == NULL)
        return -ENOMEM;
    works = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    pcre2_code_free(code);
    return works;
}
