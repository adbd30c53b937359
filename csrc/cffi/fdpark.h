/* What orchestrator_spawn/_native calls: parking long-lived fds (csrc/fdpark_api.h). */
#ifndef OS_CFFI_FDPARK_H
#define OS_CFFI_FDPARK_H

#ifdef OS_CFFI_CDEF /* never defined: these lines are for the cdef only */
#define OS_FD_PARK_BASE ...
#endif

/* Moves fd (one the library owns) to the lowest free number >= OS_FD_PARK_BASE,
 * close-on-exec, and returns the new number. Returns fd itself when it is
 * there already, negative, or when no such number is free (RLIMIT_NOFILE at
 * or under the base, or full): parking is an optimisation and never fails. */
int os_fd_park(int fd);

#endif /* OS_CFFI_FDPARK_H */
