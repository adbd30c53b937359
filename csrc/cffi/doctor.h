/* What orchestrator_spawn/_native calls: the probes of `orchestrator-spawn doctor` (csrc/doctor_api.h). */
#ifndef OS_CFFI_DOCTOR_H
#define OS_CFFI_DOCTOR_H

/* pidfd_open(getpid(), 0): the pidfd syscall family (Linux >= 5.3). */
int os_doctor_pidfd_open(void);

/* close_range(fd, fd, 0) on a freshly opened /dev/null (Linux >= 5.9); the
 * spawn child uses it to close inherited fds in one call. */
int os_doctor_close_range(void);

/* clone(CLONE_PIDFD) of a child that exits at once, reaped here: the call
 * the spawn core makes to get a pidfd for each child (Linux >= 5.2). A kernel
 * that ignores the flag leaves no pidfd: -ENOSYS. */
int os_doctor_clone_pidfd(void);

/* The linked PCRE2's version ("10.42 2022-12-11") into buf (NUL-terminated).
 * Returns 0, or -ENOSPC when len is too small. */
int os_doctor_pcre2_version(char *buf, size_t len);

/* 1 when the linked PCRE2 was built with JIT support, else 0. */
int os_doctor_pcre2_jit_built(void);

/* 1 when JIT-compiling a trivial pattern succeeds here (JIT built and the
 * system allows executable memory), 0 when it does not, -ENOMEM. */
int os_doctor_pcre2_jit_works(void);

/* The JIT target ("x86 64bit (little endian + unaligned)") into buf, or an
 * empty string without JIT. Returns 0, or -ENOSPC when len is too small. */
int os_doctor_pcre2_jit_target(char *buf, size_t len);

#endif /* OS_CFFI_DOCTOR_H */
