/* cffi declarations: parking long-lived fds (csrc/fdpark_api.h). */

#define OS_FD_PARK_BASE ...

int os_fd_park(int fd);
