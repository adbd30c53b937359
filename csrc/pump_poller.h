/*
 * pump_poller.h: the readiness poller under the pump's reactor, one small
 * interface over epoll (Linux) and kqueue (macOS, BSD).
 *
 * Internal to csrc/pump*.c (not an *_api.h, so cffi never sees it). Every
 * function returns 0 or -errno. A watched fd carries one opaque tag, handed
 * back by pump_poller_wait; an fd is watched either for reading (level
 * triggered, can be paused) or for one-shot writability, never both.
 */
#ifndef OS_PUMP_POLLER_H
#define OS_PUMP_POLLER_H

#include <stdbool.h>

typedef struct pump_poller {
    int fd; /* the epoll or kqueue fd, -1 when closed */
} pump_poller;

typedef struct pump_poller_event {
    void *tag;
    bool readable; /* readable, hung up or in error: try a read */
    bool writable; /* writable or in error: try a write */
} pump_poller_event;

int pump_poller_open(pump_poller *p);
void pump_poller_close(pump_poller *p);

/* Start watching fd for reading (level triggered). */
int pump_poller_add_reader(pump_poller *p, int fd, void *tag);

/* Pause or resume a reader added with pump_poller_add_reader. */
int pump_poller_set_reading(pump_poller *p, int fd, void *tag, bool enabled);

/* Report fd once when it becomes writable. *registered tracks whether fd is
 * already known to the poller (epoll needs ADD the first time, MOD after). */
int pump_poller_want_write(pump_poller *p, int fd, void *tag, bool *registered);

/* Stop watching fd; must be called before closing an fd whose open file
 * description may live on in other fds (epoll watches descriptions). */
void pump_poller_forget(pump_poller *p, int fd);

/* Wait up to timeout_ms (-1: forever); returns the number of events stored
 * in events (at most max), or -errno (-EINTR included). */
int pump_poller_wait(pump_poller *p, pump_poller_event *events, int max, int timeout_ms);

#endif
