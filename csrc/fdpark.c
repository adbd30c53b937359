/*
 * fdpark.c: see fdpark_api.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "fdpark_api.h"

int os_fd_park(int fd) {
    int parked;

    if (fd < 0 || fd >= OS_FD_PARK_BASE)
        return fd;
    parked = fcntl(fd, F_DUPFD_CLOEXEC, OS_FD_PARK_BASE);
    if (parked < 0)
        return fd; /* EINVAL (limit <= base) or EMFILE: stay where it is */
    close(fd);
    return parked;
}
