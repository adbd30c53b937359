/* pump_poller.c: epoll (Linux) or kqueue (macOS, BSD) behind pump_poller.h. */
#include "pump_poller.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/epoll.h>

int pump_poller_open(pump_poller *p) {
    p->fd = epoll_create1(EPOLL_CLOEXEC);
    return p->fd < 0 ? -errno : 0;
}

static int ctl(pump_poller *p, int op, int fd, uint32_t events, void *tag) {
    struct epoll_event ev = {.events = events, .data = {.ptr = tag}};
    return epoll_ctl(p->fd, op, fd, &ev) < 0 ? -errno : 0;
}

int pump_poller_add_reader(pump_poller *p, int fd, void *tag) {
    return ctl(p, EPOLL_CTL_ADD, fd, EPOLLIN, tag);
}

int pump_poller_set_reading(pump_poller *p, int fd, void *tag, bool enabled) {
    /* Pausing removes the fd rather than setting its events to 0: epoll
     * reports EPOLLHUP even with no events requested, so a paused pipe whose
     * writer exited would wake the reactor in a busy loop. */
    if (enabled)
        return ctl(p, EPOLL_CTL_ADD, fd, EPOLLIN, tag);
    return ctl(p, EPOLL_CTL_DEL, fd, 0, NULL);
}

int pump_poller_want_write(pump_poller *p, int fd, void *tag, bool *registered) {
    int rc = ctl(p, *registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, EPOLLOUT | EPOLLONESHOT, tag);
    if (rc == 0)
        *registered = true;
    return rc;
}

void pump_poller_forget(pump_poller *p, int fd) { (void)ctl(p, EPOLL_CTL_DEL, fd, 0, NULL); }

int pump_poller_wait(pump_poller *p, pump_poller_event *events, int max, int timeout_ms) {
    struct epoll_event raw[256];
    if (max > 256)
        max = 256;
    int n = epoll_wait(p->fd, raw, max, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = raw[i].events;
        events[i].tag = raw[i].data.ptr;
        events[i].readable = (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
        events[i].writable = (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    }
    return n;
}

#else /* kqueue: macOS and the BSDs */
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>

int pump_poller_open(pump_poller *p) {
    p->fd = kqueue();
    if (p->fd < 0)
        return -errno;
    (void)fcntl(p->fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

static int change(pump_poller *p, int fd, int filter, int flags, void *tag) {
    struct kevent kev;
    EV_SET(&kev, fd, filter, flags, 0, 0, tag);
    return kevent(p->fd, &kev, 1, NULL, 0, NULL) < 0 ? -errno : 0;
}

int pump_poller_add_reader(pump_poller *p, int fd, void *tag) {
    return change(p, fd, EVFILT_READ, EV_ADD, tag);
}

int pump_poller_set_reading(pump_poller *p, int fd, void *tag, bool enabled) {
    return change(p, fd, EVFILT_READ, enabled ? EV_ENABLE : EV_DISABLE, tag);
}

int pump_poller_want_write(pump_poller *p, int fd, void *tag, bool *registered) {
    int rc = change(p, fd, EVFILT_WRITE, EV_ADD | EV_ONESHOT, tag);
    if (rc == 0)
        *registered = true;
    return rc;
}

void pump_poller_forget(pump_poller *p, int fd) {
    /* Either filter may be absent; ENOENT is expected and harmless. */
    (void)change(p, fd, EVFILT_READ, EV_DELETE, NULL);
    (void)change(p, fd, EVFILT_WRITE, EV_DELETE, NULL);
}

int pump_poller_wait(pump_poller *p, pump_poller_event *events, int max, int timeout_ms) {
    struct kevent raw[256];
    struct timespec ts, *tsp = NULL;
    if (max > 256)
        max = 256;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int n = kevent(p->fd, NULL, 0, raw, max, tsp);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        events[i].tag = raw[i].udata;
        events[i].readable = raw[i].filter == EVFILT_READ;
        events[i].writable = raw[i].filter == EVFILT_WRITE;
    }
    return n;
}
#endif

void pump_poller_close(pump_poller *p) {
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}
