/*
 * pump.c: the native output pump (see pump_api.h for the contract).
 *
 * Threads. Callers (Python threads, GIL released by cffi) only touch the
 * shared state under P.lock: they queue commands (add a capture, abort one)
 * and wake the reactor through P.wake_fd. Everything inside a running
 * capture's streams belongs to the reactor thread alone, so the byte path
 * takes no lock. Counters that callers may read while a capture runs are
 * updated with relaxed atomics.
 *
 * Life of a stream: read the source pipe into a shared buffer, feed the
 * redactor (or keep the bytes as they are), write the pending output to the
 * sink and the tee. A target that would block (a pipe nobody reads fast
 * enough) pauses reading of that stream until it becomes writable, so no
 * byte is dropped and memory stays bounded. A target that fails is marked
 * dead and its error recorded, but the source is still drained to its end so
 * the child never blocks on a full pipe.
 */
#include "fdpark_api.h"
#include "pump_api.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pump_poller.h"
#include "redact_api.h"

#if defined(__linux__)
#include <sys/eventfd.h>
#define PUMP_HAVE_EVENTFD 1
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: sockets get SO_NOSIGPIPE instead */
#endif

#define READ_BUF_SIZE 262144
/* Reads per readiness event before serving other streams (fairness). */
#define READS_PER_EVENT 16
/* A source pipe that fills a read is busy: grow its buffer once to this, so
 * a fast writer and the reactor trade fewer, larger batches. Idle pipes keep
 * the default, so thousands of quiet children cost no kernel memory. */
#define BUSY_PIPE_SIZE (1024 * 1024)
/* At most this many grown pipes at once: the kernel counts pipe buffers per
 * user, and past its soft limit (64 MiB by default) every new pipe of the
 * user gets a tiny buffer, which would slow down unrelated programs. */
#define MAX_GROWN_PIPES 16

/* Pipes the reactor keeps made ahead for two-step captures (two each): the
 * thread that spawns the children then makes none of its own. */
#define PIPE_POOL_MAX 8

enum tag_role { ROLE_WAKE, ROLE_SOURCE, ROLE_TARGET, ROLE_POOLED };
enum target_kind { TARGET_NONE, TARGET_FILE, TARGET_POLLED, TARGET_SOCKET, TARGET_MEMORY };
enum command_op { CMD_ADD, CMD_ABORT };

/* First member of everything registered with the poller. */
typedef struct pump_tag {
    enum tag_role role;
} pump_tag;

struct pump_stream;

/* A pipe the reactor made ahead for a two-step capture: both ends parked
 * and close-on-exec, the read end non-blocking and already registered with
 * the poller under this tag. Its events go to `stream` (atomic) once a
 * capture started with it; none can come before, as only the pump holds
 * the write end until the child gets its copy. Freed with the capture. */
typedef struct pool_pipe {
    pump_tag tag; /* ROLE_POOLED */
    int r, w;
    struct pump_stream *stream;
} pool_pipe;

typedef struct pump_target {
    pump_tag tag;
    struct pump_stream *stream;
    enum target_kind kind;
    bool is_tee;
    int fd;
    bool registered; /* the poller knows fd */
    bool blocked;    /* waiting for writability */
    bool dead;       /* failed or dropped: receives nothing more */
    size_t off;      /* bytes of the stream's pending output already written */
    bool is_reg;     /* a regular file, of device dev and inode ino (from target_prepare) */
    dev_t dev;
    ino_t ino;
    uint64_t written;
    uint8_t *mem; /* TARGET_MEMORY */
    size_t mem_len, mem_cap;
} pump_target;

typedef struct pump_stream {
    pump_tag tag;
    struct os_pump_capture *capture;
    int src_fd;
    bool reading;         /* registered and enabled in the poller */
    bool eof;             /* the source is finished and closed */
    bool finished;        /* all output written, targets closed */
    bool abort_pending;   /* drain what is there, then act as at end of file */
    bool redact_failed;   /* fail closed: the redactor's output is withheld */
    bool grow_tried;      /* tried to grow the source pipe already */
    bool pipe_grown;      /* ... and it worked: counted in grown_pipes */
    bool nonblock_later;  /* a pipe the pump made: stream_start sets O_NONBLOCK and parks it */
    bool park_sink_later; /* a sink fd the start made: stream_start parks it */
    /* Registered with the poller by os_pump_capture_commit in the calling
     * thread: the rest of stream_start (redactor, parking the sink) happens
     * on the reactor before the stream is first touched there. */
    bool start_on_reactor;
    bool registered_here; /* before the child could write; never changes after */
    pool_pipe *pooled;    /* the pool's pipe this stream reads, or NULL */
    int src_flags;        /* the caller's file status flags, -1 if unknown */
    /* Redaction asked for: the redactor is made on the reactor when the
     * stream starts (stream_start), from these; until then, and if making it
     * failed (redact_failed), it is NULL. */
    bool redacting;
    const os_pattern_set *patterns;
    uint8_t *replacement; /* the pump's copy, freed once the redactor has its own */
    size_t replacement_len, max_hold;
    os_redactor *redactor;
    uint8_t *pend; /* passthrough output not yet written everywhere */
    size_t pend_len, pend_cap;
    pump_target sink, tee;
    uint64_t bytes_read;
    int error, stage;
} pump_stream;

struct os_pump_capture {
    uint64_t id;
    unsigned generation;
    int refs;  /* P.lock */
    bool done; /* P.lock */
    /* Set (atomically, by any thread) when the streams will end early: at
     * their end, held bytes become one replacement instead of being decided
     * as at end of file (see os_pump_capture_truncate). */
    int truncated;
    /* The child whose output this is (0: unknown), and whether its owner
     * said how it ended (os_pump_capture_child_exit). Atomic. */
    int child_pid;
    int exit_known;
    size_t n, n_finished;
    struct os_pump_capture *next_dead; /* reactor: released after the batch */
    /* Started in two steps (os_pump_capture_start_pair, then
     * os_pump_capture_commit): `committed` under P.lock; the pipes' write
     * ends, which the commit closes; the link in P.adds. */
    bool deferred, committed;
    int writers[2];
    struct os_pump_capture *next_add;
    pump_stream streams[];
};

typedef struct pump_command {
    enum command_op op;
    os_pump_capture *capture;
} pump_command;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool started;
    unsigned generation;
    pump_poller poller;
    pump_tag wake_tag;
    int wake_r, wake_w;     /* wakes the reactor for commands */
    int notify_r, notify_w; /* readable while done_ids is not empty */
    pump_command *cmds;
    size_t n_cmds, cap_cmds;
    uint64_t *done_ids;
    size_t n_done, cap_done;
    uint64_t next_id;
    size_t active;
    /* Committed two-step captures with a stream the commit could not
     * register, for the reactor to start (a list through next_add, so that
     * committing never needs memory). */
    os_pump_capture *adds;
    /* Pipes made ahead by the reactor for two-step captures. */
    pool_pipe *pool[PIPE_POOL_MAX];
    size_t n_pool;
    bool pool_wanted; /* a two-step capture took from the pool: refill it */
} P = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .done_cond = PTHREAD_COND_INITIALIZER,
    .poller = {.fd = -1},
    .wake_tag = {ROLE_WAKE},
    .wake_r = -1,
    .wake_w = -1,
    .notify_r = -1,
    .notify_w = -1,
};

static void stream_start_here(pump_stream *s);

/* Reactor-only state. */
static uint8_t read_buf[READ_BUF_SIZE];
static os_pump_capture *dead_list;
static int grown_pipes;

/* ---- small system helpers ------------------------------------------------ */

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static int make_pipe(int *r, int *w);

static void close_fd(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A "signal" fd pair: an eventfd on Linux, a non-blocking pipe elsewhere. */
static int signal_fd_open(int *r, int *w) {
#ifdef PUMP_HAVE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    *r = *w = fd;
    return 0;
#else
    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        (void)fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        (void)set_nonblocking(fds[i]);
    }
    *r = fds[0];
    *w = fds[1];
    return 0;
#endif
}

static void signal_fd_close(int *r, int *w) {
    if (*w != *r)
        close_fd(w);
    close_fd(r);
    *w = -1;
}

static void signal_fd_raise(int w) {
#ifdef PUMP_HAVE_EVENTFD
    uint64_t one = 1;
    while (write(w, &one, sizeof one) < 0 && errno == EINTR) {}
#else
    /* EAGAIN means the pipe is full, hence readable already. */
    while (write(w, "x", 1) < 0 && errno == EINTR) {}
#endif
}

static void signal_fd_reset(int r) {
    uint8_t buf[64];
    for (;;) {
        ssize_t n = read(r, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (size_t)n < sizeof buf)
            return;
    }
}

static void counter_add(uint64_t *counter, uint64_t n) {
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* ---- errors and completion ------------------------------------------------ */

/* Only the first failure of a stream is kept: it is the cause. */
static void stream_record_error(pump_stream *s, int stage, int err) {
    pthread_mutex_lock(&P.lock);
    if (s->error == 0) {
        s->error = err;
        s->stage = stage;
    }
    pthread_mutex_unlock(&P.lock);
}

static void capture_complete(os_pump_capture *c) {
    pthread_mutex_lock(&P.lock);
    c->done = true;
    P.active--;
    /* Room was reserved when the capture started (reserve_done_slot). */
    P.done_ids[P.n_done++] = c->id;
    bool first = P.n_done == 1;
    int notify_w = P.notify_w;
    pthread_cond_broadcast(&P.done_cond);
    pthread_mutex_unlock(&P.lock);
    /* Raised outside the lock so a woken taker does not block on it. Whoever
     * makes the queue non-empty raises after its push; os_pump_take_done
     * resets only an empty queue, so a late raise is at worst spurious. */
    if (first)
        signal_fd_raise(notify_w);
    c->next_dead = dead_list;
    dead_list = c;
}

/* ---- targets: sink and tee ------------------------------------------------ */

static void target_close(pump_target *t) {
    if (t->fd < 0)
        return;
    if (t->registered)
        pump_poller_forget(&P.poller, t->fd);
    t->registered = false;
    if (close(t->fd) < 0 && !t->is_tee && errno != EINTR)
        stream_record_error(t->stream, OS_PUMP_STAGE_CLOSE, errno);
    t->fd = -1;
}

static void target_fail(pump_target *t, int err) {
    t->dead = true;
    t->blocked = false;
    t->off = 0;
    /* A reader that went away from the live view is not an error of the
     * capture; the sink is where the bytes must land. */
    if (t->is_tee)
        target_close(t);
    else
        stream_record_error(t->stream, OS_PUMP_STAGE_WRITE, err);
}

static int memory_append(pump_target *t, const uint8_t *p, size_t len) {
    if (t->mem_len + len > t->mem_cap) {
        size_t cap = t->mem_cap ? t->mem_cap : 4096;
        while (cap < t->mem_len + len)
            cap *= 2;
        uint8_t *mem = realloc(t->mem, cap);
        if (mem == NULL)
            return -ENOMEM;
        t->mem = mem;
        t->mem_cap = cap;
    }
    memcpy(t->mem + t->mem_len, p, len);
    t->mem_len += len;
    return 0;
}

static ssize_t target_write_once(pump_target *t, const uint8_t *p, size_t len) {
    if (t->kind == TARGET_SOCKET)
        return send(t->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return write(t->fd, p, len);
}

/* Write p[t->off, len) to t; stops early only when t would block. */
static void target_write(pump_target *t, const uint8_t *p, size_t len) {
    if (t->kind == TARGET_NONE || t->dead || t->blocked)
        return;
    if (t->kind == TARGET_MEMORY) {
        int rc = memory_append(t, p + t->off, len - t->off);
        if (rc < 0) {
            target_fail(t, -rc);
            return;
        }
        counter_add(&t->written, len - t->off);
        t->off = len;
        return;
    }
    while (t->off < len) {
        ssize_t n = target_write_once(t, p + t->off, len - t->off);
        if (n > 0) {
            t->off += (size_t)n;
            counter_add(&t->written, (uint64_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = pump_poller_want_write(&P.poller, t->fd, t, &t->registered);
            if (rc < 0)
                target_fail(t, -rc);
            else
                t->blocked = true;
            return;
        } else {
            /* write() returning 0 for a non-empty buffer: treat as no space. */
            target_fail(t, n < 0 ? errno : ENOSPC);
            return;
        }
    }
}

/* Offset up to which every live target has written p[0, len). */
static size_t targets_write(pump_stream *s, const uint8_t *p, size_t len) {
    pump_target *targets[2] = {&s->sink, &s->tee};
    size_t done = len;
    for (int i = 0; i < 2; i++) {
        pump_target *t = targets[i];
        target_write(t, p, len);
        if (t->kind != TARGET_NONE && !t->dead && t->off < done)
            done = t->off;
    }
    for (int i = 0; i < 2; i++)
        if (!targets[i]->dead)
            targets[i]->off -= targets[i]->off < done ? targets[i]->off : done;
    return done;
}

/* ---- streams -------------------------------------------------------------- */

static void stream_fail_redactor(pump_stream *s, int err) {
    /* Fail closed: what the redactor holds or would emit is never written. */
    s->redact_failed = true;
    stream_record_error(s, OS_PUMP_STAGE_REDACT, err);
}

static int pend_append(pump_stream *s, const uint8_t *p, size_t len) {
    if (s->pend_len + len > s->pend_cap) {
        size_t cap = s->pend_cap ? s->pend_cap : 4096;
        while (cap < s->pend_len + len)
            cap *= 2;
        uint8_t *pend = realloc(s->pend, cap);
        if (pend == NULL)
            return -ENOMEM;
        s->pend = pend;
        s->pend_cap = cap;
    }
    memcpy(s->pend + s->pend_len, p, len);
    s->pend_len += len;
    return 0;
}

/* Write the stream's pending output; true when all of it is written. */
static bool stream_flush(pump_stream *s) {
    const uint8_t *p;
    size_t len;
    if (s->redacting) {
        if (s->redact_failed)
            return true;
        p = os_redactor_output(s->redactor, &len);
    } else {
        p = s->pend;
        len = s->pend_len;
    }
    if (len == 0)
        return true;
    size_t done = targets_write(s, p, len);
    if (s->redacting) {
        os_redactor_consume(s->redactor, done);
    } else {
        memmove(s->pend, s->pend + done, len - done);
        s->pend_len -= done;
    }
    return done == len;
}

/* New bytes from the source; true when all resulting output is written. */
static bool stream_take_input(pump_stream *s, const uint8_t *p, size_t len) {
    if (s->redacting) {
        if (s->redact_failed)
            return true;
        int rc = os_redactor_feed(s->redactor, p, len);
        if (rc < 0) {
            stream_fail_redactor(s, -rc);
            return true;
        }
        return stream_flush(s);
    }
    /* Passthrough writes straight from the read buffer and keeps only what
     * a blocked target has not taken yet. */
    size_t done = targets_write(s, p, len);
    if (done < len && pend_append(s, p + done, len - done) < 0) {
        stream_record_error(s, OS_PUMP_STAGE_WRITE, ENOMEM);
        s->sink.dead = s->tee.dead = true;
        return true;
    }
    return done == len;
}

/* Pause or resume reading the source; false if resuming failed. */
static bool stream_set_reading(pump_stream *s, bool enabled) {
    if (s->reading == enabled || s->src_fd < 0)
        return true;
    int rc = pump_poller_set_reading(&P.poller, s->src_fd, s, enabled);
    if (rc == 0) {
        s->reading = enabled;
        return true;
    }
    if (enabled)
        stream_record_error(s, OS_PUMP_STAGE_READ, -rc);
    return !enabled;
}

static void stream_finish(pump_stream *s) {
    s->finished = true;
    target_close(&s->sink);
    target_close(&s->tee);
    if (s->redactor != NULL)
        os_redactor_free(s->redactor);
    s->redactor = NULL;
    free(s->pend);
    s->pend = NULL;
    s->pend_len = s->pend_cap = 0;
    os_pump_capture *c = s->capture;
    if (++c->n_finished == c->n)
        capture_complete(c);
}

/* How long a stream that ends holding bytes waits to learn whether its
 * child was killed (see child_was_killed), in 100 us steps. */
#define EXIT_VERDICT_STEPS 200

/* End of file while the redactor holds bytes: was it the child dying from a
 * signal (a secret cut short) rather than a real end? The pipes close during
 * the child's exit, a moment before it can be waited for, so that moment is
 * waited for (up to 20 ms, only in this case). WNOWAIT leaves the child to
 * its owner to reap; once the owner has reaped it, its word counts. */
static bool child_was_killed(os_pump_capture *c) {
    int pid = __atomic_load_n(&c->child_pid, __ATOMIC_ACQUIRE);
    for (int step = 0; pid > 0 && step < EXIT_VERDICT_STEPS; step++) {
        if (__atomic_load_n(&c->exit_known, __ATOMIC_ACQUIRE))
            return __atomic_load_n(&c->truncated, __ATOMIC_ACQUIRE) != 0;
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
            return info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
        /* Still running, or reaped already (ECHILD: its owner is about to
         * say how it ended). */
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    return false; /* it closed the pipe and lives on: a real end of file */
}

/* The source is finished: at end of file (cut == false), or cut short by
 * an abort, a read error, or a capture marked truncated. */
static void stream_end_of_input(pump_stream *s, bool cut) {
    if (s->src_fd >= 0) {
        pump_poller_forget(&P.poller, s->src_fd);
        close_fd(&s->src_fd);
    }
    if (s->pipe_grown) {
        s->pipe_grown = false;
        grown_pipes--;
    }
    s->reading = false;
    s->eof = true;
    if (s->redactor != NULL && !s->redact_failed) {
        /* Fail closed: what a cut-short stream still holds may be the start
         * of a secret whose end never came; it becomes one replacement. */
        cut = cut || __atomic_load_n(&s->capture->truncated, __ATOMIC_ACQUIRE);
        if (!cut && os_redactor_held(s->redactor) > 0)
            cut = child_was_killed(s->capture);
        int rc = cut ? os_redactor_abort(s->redactor) : os_redactor_finish(s->redactor);
        if (rc < 0)
            stream_fail_redactor(s, -rc);
    }
    if (stream_flush(s))
        stream_finish(s);
}

static void stream_maybe_grow_pipe(pump_stream *s, size_t got) {
#if defined(__linux__) && defined(F_SETPIPE_SZ)
    if (s->grow_tried || got < 65536 || grown_pipes >= MAX_GROWN_PIPES)
        return;
    s->grow_tried = true;
    /* Best effort: fails harmlessly for non-pipes or over the user's quota. */
    if (fcntl(s->src_fd, F_SETPIPE_SZ, BUSY_PIPE_SIZE) >= 0) {
        s->pipe_grown = true;
        grown_pipes++;
    }
#else
    (void)s;
    (void)got;
#endif
}

/* Read until the pipe is empty, the output blocks, or `budget` reads. */
static void stream_read(pump_stream *s, int budget) {
    while (budget-- > 0 && !s->eof) {
        ssize_t n = read(s->src_fd, read_buf, sizeof read_buf);
        if (n > 0) {
            counter_add(&s->bytes_read, (uint64_t)n);
            stream_maybe_grow_pipe(s, (size_t)n);
            if (!stream_take_input(s, read_buf, (size_t)n)) {
                (void)stream_set_reading(s, false);
                return;
            }
            /* A short read emptied the pipe: skip the read that would only
             * say EAGAIN (the poller is level-triggered and reports more).
             * Not when aborting, which must see the pipe empty to finish. */
            if ((size_t)n < sizeof read_buf && !s->abort_pending)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (s->abort_pending)
                stream_end_of_input(s, true);
            return;
        }
        /* A pty master reports the slave's close as EIO: that is EOF. */
        bool failed = n < 0 && errno != EIO;
        if (failed)
            stream_record_error(s, OS_PUMP_STAGE_READ, errno);
        stream_end_of_input(s, failed);
        return;
    }
}

static void stream_on_readable(pump_stream *s) {
    if (s->start_on_reactor)
        stream_start_here(s); /* before anything reads or redacts */
    if (!s->reading || s->eof)
        return; /* stale event from before a pause in this batch */
    stream_read(s, READS_PER_EVENT);
}

static void stream_on_writable(pump_target *t) {
    pump_stream *s = t->stream;
    if (s->start_on_reactor)
        stream_start_here(s); /* cannot happen before a read: fail safe */
    if (t->fd < 0 || s->finished)
        return;
    t->blocked = false;
    if (!stream_flush(s))
        return;
    if (s->eof)
        stream_finish(s);
    else if (s->abort_pending)
        stream_read(s, INT32_MAX);
    else if (!stream_set_reading(s, true))
        stream_end_of_input(s, true); /* cannot watch it any more: do not hang */
}

/* The stream's redactor, made here on the reactor rather than in the thread
 * starting captures in a loop. If it cannot be made the stream fails closed:
 * its pipe is drained, nothing of it is written, and the capture reports
 * OS_PUMP_STAGE_REDACT (ENOMEM). */
static void stream_make_redactor(pump_stream *s) {
    if (!s->redacting || s->redactor != NULL || s->redact_failed)
        return;
    s->redactor = os_redactor_new(s->patterns, s->replacement, s->replacement_len, s->max_hold);
    free(s->replacement);
    s->replacement = NULL;
    if (s->redactor == NULL)
        stream_fail_redactor(s, ENOMEM);
}

/* A pipe the pump made without the pool: parked (fdpark_api.h: these fds
 * live as long as the child, out of the low range the next children's pipes
 * come from) and made non-blocking, once. Nobody else reads it, so nothing
 * can have read it blocking meanwhile. 0 or -errno. */
static int stream_source_ready(pump_stream *s) {
    if (!s->nonblock_later)
        return 0;
    s->src_fd = os_fd_park(s->src_fd);
    int rc = set_nonblocking(s->src_fd);
    if (rc == 0)
        s->nonblock_later = false;
    return rc;
}

/* What stream_start does on the reactor besides registering the source. */
static void stream_start_here(pump_stream *s) {
    s->start_on_reactor = false;
    stream_make_redactor(s);
    if (s->park_sink_later) {
        s->park_sink_later = false;
        s->sink.fd = os_fd_park(s->sink.fd);
    }
}

static void stream_start(pump_stream *s) {
    if (s->registered_here) {
        /* Registered by os_pump_capture_commit already (and maybe finished
         * since: stream_start_here then has nothing left to do). */
        if (s->start_on_reactor)
            stream_start_here(s);
        return;
    }
    /* Done here, on the reactor, so that the starting thread (spawning
     * children in a loop) pays less. */
    stream_start_here(s);
    int rc = stream_source_ready(s);
    if (rc == 0)
        rc = pump_poller_add_reader(&P.poller, s->src_fd, s);
    if (rc < 0) {
        stream_record_error(s, OS_PUMP_STAGE_READ, -rc);
        stream_end_of_input(s, true);
        return;
    }
    s->reading = true;
}

static void stream_abort(pump_stream *s) {
    if (s->start_on_reactor)
        stream_start_here(s);
    if (s->eof || s->finished)
        return;
    s->abort_pending = true;
    if (s->tee.kind != TARGET_NONE && !s->tee.dead)
        target_fail(&s->tee, 0);
    /* A blocked sink is waited for (its bytes are not dropped); the rest of
     * the abort then happens in stream_on_writable. */
    if (!s->sink.blocked && stream_flush(s))
        stream_read(s, INT32_MAX);
}

/* ---- the reactor thread --------------------------------------------------- */

/* Tops the pipe pool up (reactor), outside the lock: only the reactor adds
 * to it, so the room it saw can only have grown meanwhile. */
static void refill_pipe_pool(void) {
    pthread_mutex_lock(&P.lock);
    size_t room = PIPE_POOL_MAX - P.n_pool;
    __atomic_store_n(&P.pool_wanted, false, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&P.lock);
    for (; room > 0; room--) {
        pool_pipe *pp = calloc(1, sizeof *pp);
        if (pp == NULL)
            return;
        pp->tag.role = ROLE_POOLED;
        pp->r = pp->w = -1;
        /* Out of fds, say: the spawning thread makes its own. */
        if (make_pipe(&pp->r, &pp->w) < 0)
            goto fail;
        pp->r = os_fd_park(pp->r);
        pp->w = os_fd_park(pp->w);
        if (set_nonblocking(pp->r) < 0 || pump_poller_add_reader(&P.poller, pp->r, pp) < 0)
            goto fail;
        pthread_mutex_lock(&P.lock);
        P.pool[P.n_pool++] = pp;
        pthread_mutex_unlock(&P.lock);
        continue;
    fail:
        close_fd(&pp->r);
        close_fd(&pp->w);
        free(pp);
        return;
    }
}

static void run_commands(void) {
    /* Reset before taking the queue: a command queued later raises again
     * (see queue_command), one queued in between is taken now. */
    signal_fd_reset(P.wake_r);
    pthread_mutex_lock(&P.lock);
    pump_command *cmds = P.cmds;
    size_t n = P.n_cmds;
    P.cmds = NULL;
    P.n_cmds = P.cap_cmds = 0;
    os_pump_capture *adds = P.adds;
    P.adds = NULL;
    pthread_mutex_unlock(&P.lock);
    /* Two-step captures whose commit could not register every stream
     * first: an abort queued for one after its commit then finds its
     * streams started. */
    while (adds != NULL) {
        os_pump_capture *c = adds;
        adds = c->next_add;
        for (size_t k = 0; k < c->n; k++)
            stream_start(&c->streams[k]);
    }
    for (size_t i = 0; i < n; i++) {
        os_pump_capture *c = cmds[i].capture;
        if (cmds[i].op == CMD_ADD) {
            for (size_t k = 0; k < c->n; k++)
                stream_start(&c->streams[k]);
        } else {
            for (size_t k = 0; k < c->n; k++)
                stream_abort(&c->streams[k]);
            os_pump_capture_release(c); /* the command's reference */
        }
    }
    free(cmds);
}

static void release_dead(void) {
    while (dead_list != NULL) {
        os_pump_capture *c = dead_list;
        dead_list = c->next_dead;
        os_pump_capture_release(c); /* the reactor's reference */
    }
}

static void name_this_thread(void) {
    /* Shows up in ps/top and lets tests count reactor threads. */
#if defined(__APPLE__)
    pthread_setname_np("os-pump");
#elif defined(__linux__)
    pthread_setname_np(pthread_self(), "os-pump");
#endif
}

static void *reactor_main(void *arg) {
    (void)arg;
    pump_poller_event events[256];
    name_this_thread();
    for (;;) {
        int n = pump_poller_wait(&P.poller, events, 256, -1);
        if (n < 0) {
            if (n != -EINTR)
                fprintf(stderr, "orchestrator_spawn pump: poller wait failed: %s\n", strerror(-n));
            continue;
        }
        for (int i = 0; i < n; i++) {
            pump_tag *tag = events[i].tag;
            if (tag->role == ROLE_WAKE)
                run_commands();
            else if (tag->role == ROLE_SOURCE)
                stream_on_readable((pump_stream *)tag);
            else if (tag->role == ROLE_POOLED) {
                pump_stream *s = __atomic_load_n(&((pool_pipe *)tag)->stream, __ATOMIC_ACQUIRE);
                if (s != NULL) /* always: nothing writes to an untaken one */
                    stream_on_readable(s);
            } else
                stream_on_writable((pump_target *)tag);
        }
        /* Captures finished in this batch are freed only now, so later
         * events of the same batch never point at freed memory. */
        release_dead();
        /* Two-step captures took pipes from the pool (a racy read: a
         * missed request is seen after the next event). */
        if (__atomic_load_n(&P.pool_wanted, __ATOMIC_RELAXED))
            refill_pipe_pool();
    }
    return NULL;
}

static void at_fork_prepare(void) { pthread_mutex_lock(&P.lock); }
static void at_fork_parent(void) { pthread_mutex_unlock(&P.lock); }

/* The reactor thread does not exist in a forked child: start afresh there,
 * abandoning (leaking) the parent's captures, which now report -ECHILD. */
static void at_fork_child(void) {
    pthread_mutex_init(&P.lock, NULL);
    pthread_cond_init(&P.done_cond, NULL);
    if (P.started) {
        pump_poller_close(&P.poller);
        signal_fd_close(&P.wake_r, &P.wake_w);
        signal_fd_close(&P.notify_r, &P.notify_w);
    }
    P.started = false;
    P.generation++;
    P.cmds = NULL;
    P.n_cmds = P.cap_cmds = 0;
    P.done_ids = NULL;
    P.n_done = P.cap_done = 0;
    P.active = 0;
    P.adds = NULL;
    for (size_t i = 0; i < P.n_pool; i++) {
        /* Closed; the small structs are left (malloc may not be usable in
         * a child forked from a threaded process). */
        close(P.pool[i]->r);
        close(P.pool[i]->w);
    }
    P.n_pool = 0;
    P.pool_wanted = false;
    dead_list = NULL;
    grown_pipes = 0;
}

static void register_at_fork(void) {
    (void)pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
}

/* Call with P.lock held. */
static int ensure_started(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (P.started)
        return 0;
    pthread_once(&once, register_at_fork);
    int rc = pump_poller_open(&P.poller);
    if (rc < 0)
        return rc;
    if ((rc = signal_fd_open(&P.wake_r, &P.wake_w)) < 0)
        goto error;
    if ((rc = signal_fd_open(&P.notify_r, &P.notify_w)) < 0)
        goto error;
    if ((rc = pump_poller_add_reader(&P.poller, P.wake_r, &P.wake_tag)) < 0)
        goto error;
    /* The reactor blocks every signal: Python handles signals on its main
     * thread, and a write to a closed pipe must give EPIPE, not SIGPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&thread, &attr, reactor_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc < 0)
        goto error;
    P.started = true;
    return 0;
error:
    pump_poller_close(&P.poller);
    signal_fd_close(&P.wake_r, &P.wake_w);
    signal_fd_close(&P.notify_r, &P.notify_w);
    return rc;
}

/* Call with P.lock held: room in done_ids for every running capture's id,
 * so that finishing one never needs memory (and never loses its id). */
static int reserve_done_slot(void) {
    size_t need = P.n_done + P.active + 1;
    if (need <= P.cap_done)
        return 0;
    size_t cap = P.cap_done ? P.cap_done : 64;
    while (cap < need)
        cap *= 2;
    uint64_t *ids = realloc(P.done_ids, cap * sizeof *ids);
    if (ids == NULL)
        return -ENOMEM;
    P.done_ids = ids;
    P.cap_done = cap;
    return 0;
}

/* Call with P.lock held. Returns 1 when the caller must wake the reactor
 * (signal_fd_raise(P.wake_w)) after unlocking, 0, or -errno. */
static int queue_command(enum command_op op, os_pump_capture *c) {
    if (P.n_cmds == P.cap_cmds) {
        size_t cap = P.cap_cmds ? P.cap_cmds * 2 : 16;
        pump_command *cmds = realloc(P.cmds, cap * sizeof *cmds);
        if (cmds == NULL)
            return -ENOMEM;
        P.cmds = cmds;
        P.cap_cmds = cap;
    }
    P.cmds[P.n_cmds++] = (pump_command){op, c};
    /* One wake-up per batch: the reactor takes the whole queue at once.
     * Raised after unlocking, so the woken reactor does not block on the
     * lock the caller still holds. */
    return P.n_cmds == 1;
}

/* ---- the API -------------------------------------------------------------- */

int os_pump_notify_fd(void) {
    pthread_mutex_lock(&P.lock);
    int rc = ensure_started();
    int fd = rc < 0 ? rc : P.notify_r;
    pthread_mutex_unlock(&P.lock);
    return fd;
}

size_t os_pump_take_done(uint64_t *ids, size_t max) {
    pthread_mutex_lock(&P.lock);
    size_t n = P.n_done < max ? P.n_done : max;
    memcpy(ids, P.done_ids, n * sizeof *ids);
    memmove(P.done_ids, P.done_ids + n, (P.n_done - n) * sizeof *ids);
    P.n_done -= n;
    if (P.n_done == 0 && P.started)
        signal_fd_reset(P.notify_r);
    pthread_mutex_unlock(&P.lock);
    return n;
}

/* A new open file description of the pipe behind fd (Linux), so that
 * O_NONBLOCK set on it stays private to the pump and never leaks into the
 * caller's fd (which may be this process's own stdout, or a file object
 * Python still reads). -1 where that is not possible. */
static int reopen_pipe(int fd, int access) {
#if defined(__linux__)
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return os_fd_park(open(path, access | O_NONBLOCK | O_CLOEXEC));
#else
    (void)fd;
    (void)access;
    return -1;
#endif
}

/* Pipes and sockets get a non-blocking way to write; files and devices are
 * written directly (they never report "would block" in practice). `owned`:
 * the pump opened fd itself, so its file status flags are private already. */
static int target_prepare(pump_target *t, int fd, bool is_tee, bool owned, int *reopened) {
    *reopened = -1;
    t->tag.role = ROLE_TARGET;
    t->is_tee = is_tee;
    t->fd = -1;
    t->kind = TARGET_NONE;
    if (is_tee ? fd == -1 : fd == OS_PUMP_SINK_DISCARD)
        return 0;
    if (!is_tee && fd == OS_PUMP_SINK_MEMORY) {
        t->kind = TARGET_MEMORY;
        return 0;
    }
    if (fd < 0)
        return -EBADF;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    t->fd = fd;
    t->is_reg = S_ISREG(st.st_mode);
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    if (S_ISSOCK(st.st_mode)) {
        t->kind = TARGET_SOCKET;
#ifdef SO_NOSIGPIPE
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        return 0;
    }
    if (!S_ISFIFO(st.st_mode)) {
        t->kind = TARGET_FILE;
        return 0;
    }
    t->kind = TARGET_POLLED;
    if (is_tee || owned)
        return set_nonblocking(fd);
    int again = reopen_pipe(fd, O_WRONLY);
    if (again >= 0) {
        *reopened = again;
        t->fd = again;
        return 0;
    }
    return set_nonblocking(fd);
}

static void capture_free(os_pump_capture *c) {
    for (size_t i = 0; i < c->n; i++) {
        pump_stream *s = &c->streams[i];
        if (s->redactor != NULL)
            os_redactor_free(s->redactor);
        free(s->replacement);
        free(s->pend);
        free(s->sink.mem);
        free(s->tee.mem);
        free(s->pooled); /* its fds were closed with the stream */
    }
    free(c);
}

/* What stream_prepare created; closed again if the start fails. */
typedef struct stream_made {
    int src;           /* a new source fd (reopened, or a new pipe's read end), or -1 */
    int sink;          /* a new sink fd (reopened, opened from a path, shared), or -1 */
    int pipe_w;        /* a new pipe's write end, or -1 */
    pool_pipe *pooled; /* the pool's pipe: back to the pool if the start fails */
} stream_made;

/* A pipe of the pool for a two-step capture; NULL when the pool is empty.
 * Either way the reactor refills it after its next events. */
static pool_pipe *take_pooled_pipe(void) {
    pthread_mutex_lock(&P.lock);
    pool_pipe *pp = P.n_pool > 0 ? P.pool[--P.n_pool] : NULL;
    __atomic_store_n(&P.pool_wanted, true, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&P.lock);
    return pp;
}

/* A pooled pipe of a start that failed goes back unused (no end of it left
 * the pump, nothing was written), closed if the pool filled up meanwhile
 * (closing the read end takes it off the poller). */
static void return_pooled_pipe(pool_pipe *pp) {
    pthread_mutex_lock(&P.lock);
    bool kept = P.n_pool < PIPE_POOL_MAX;
    if (kept)
        P.pool[P.n_pool++] = pp;
    pthread_mutex_unlock(&P.lock);
    if (!kept) {
        close_fd(&pp->r);
        close_fd(&pp->w);
        free(pp);
    }
}

/* A new pipe for the child to write into, both ends close-on-exec and
 * blocking (the reactor makes its read end non-blocking in stream_start). */
static int make_pipe(int *r, int *w) {
    int fds[2];
#if defined(__linux__)
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
#else
    if (pipe(fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++)
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0) {
            int err = errno;
            close(fds[0]);
            close(fds[1]);
            return -err;
        }
#endif
    *r = fds[0];
    *w = fds[1];
    return 0;
}

/* The sink fd of a spec with OS_PUMP_SINK_PATH: the open file of an earlier
 * stream of the same call with that path (duplicated), else a new one. */
static int open_sink_path(os_pump_capture *c, size_t index, const os_pump_stream_spec *specs) {
    const char *path = specs[index].sink_path;
    if (path == NULL)
        return -EINVAL;
    for (size_t j = 0; j < index; j++) {
        if (specs[j].sink_fd == OS_PUMP_SINK_PATH && strcmp(specs[j].sink_path, path) == 0) {
            int fd = fcntl(c->streams[j].sink.fd, F_DUPFD_CLOEXEC, 0);
            return fd < 0 ? -errno : fd;
        }
    }
    int fd;
    do
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

/* Two names (or fds) for one regular file: two open files with two offsets
 * would overwrite each other's bytes. Compared by device and inode after
 * opening, the later stream takes a duplicate of the earlier one's fd. */
static int share_same_file(os_pump_capture *c, size_t index, stream_made *made) {
    pump_target *t = &c->streams[index].sink;
    /* Device and inode as target_prepare's fstat saw them: no stat again. */
    if (t->kind != TARGET_FILE || !t->is_reg)
        return 0;
    for (size_t j = 0; j < index; j++) {
        const pump_target *u = &c->streams[j].sink;
        if (u->kind != TARGET_FILE || !u->is_reg)
            continue;
        if (u->dev != t->dev || u->ino != t->ino)
            continue;
        int fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        /* A fd this call made is closed now; a given one at success, as
         * every given fd that was replaced (os_pump_capture_start). */
        close_fd(&made->sink);
        made->sink = t->fd = fd;
        c->streams[index].park_sink_later = true; /* on the reactor */
        return 0;
    }
    return 0;
}

static int stream_prepare(os_pump_capture *c, size_t index, os_pump_stream_spec *specs,
                          stream_made *made) {
    os_pump_stream_spec *spec = &specs[index];
    spec->failed_part = OS_PUMP_PART_SOURCE;
    pump_stream *s = &c->streams[index];
    made->src = made->sink = made->pipe_w = -1;
    made->pooled = NULL;
    s->capture = c;
    s->src_flags = -1;
    s->tag.role = ROLE_SOURCE;
    s->src_fd = spec->src_fd;
    s->sink.stream = s->tee.stream = s;
    int rc;
    struct stat st;
    bool new_pipe = spec->src_fd == OS_PUMP_SOURCE_PIPE;
    if (new_pipe && c->deferred && (made->pooled = take_pooled_pipe()) != NULL) {
        /* Parked, non-blocking and on the poller already. */
        made->src = made->pooled->r;
        made->pipe_w = made->pooled->w;
        s->src_fd = made->src;
    } else if (new_pipe) {
        if ((rc = make_pipe(&made->src, &made->pipe_w)) < 0)
            return rc;
        /* The read end lives as long as the child: out of the low range the
         * next children's pipes are taken from (fdpark_api.h). */
        s->src_fd = made->src; /* parked on the reactor (stream_start) */
        s->nonblock_later = true;
    } else {
        if (fstat(spec->src_fd, &st) < 0)
            return -errno;
        /* Only what a poller can watch: pipes, sockets, terminals. */
        if (!(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode)))
            return -EINVAL;
    }
    if (spec->patterns != NULL) {
        /* The redactor itself is made on the reactor (stream_make_redactor);
         * the replacement is copied now, as the caller may free it. */
        spec->failed_part = OS_PUMP_PART_REDACTOR;
        s->redacting = true;
        s->patterns = spec->patterns;
        s->replacement_len = spec->replacement_len;
        s->max_hold = spec->max_hold;
        s->replacement = malloc(spec->replacement_len ? spec->replacement_len : 1);
        if (s->replacement == NULL)
            return -ENOMEM;
        if (spec->replacement_len)
            memcpy(s->replacement, spec->replacement, spec->replacement_len);
    }
    int unused;
    spec->failed_part = OS_PUMP_PART_TEE;
    rc = target_prepare(&s->tee, spec->tee_fd, true, false, &unused);
    if (rc < 0)
        return rc;
    spec->failed_part = OS_PUMP_PART_SINK;
    int sink_fd = spec->sink_fd;
    bool owned = false;
    if (sink_fd == OS_PUMP_SINK_PATH) {
        if ((sink_fd = open_sink_path(c, index, specs)) < 0)
            return sink_fd;
        made->sink = sink_fd;
        owned = true;
        s->park_sink_later = true; /* on the reactor (stream_start) */
    }
    int reopened_sink;
    rc = target_prepare(&s->sink, sink_fd, false, owned, &reopened_sink);
    if (reopened_sink >= 0)
        made->sink = reopened_sink;
    if (rc == 0)
        rc = share_same_file(c, index, made);
    if (rc < 0 || new_pipe)
        goto out;
    spec->failed_part = OS_PUMP_PART_SOURCE;
    /* Non-blocking before the reactor can see the fd: one blocking read
     * would stall every capture. */
    if (S_ISFIFO(st.st_mode) && (made->src = reopen_pipe(spec->src_fd, O_RDONLY)) >= 0) {
        s->src_fd = made->src;
        rc = 0;
        goto out;
    }
    s->src_flags = fcntl(spec->src_fd, F_GETFL); /* restored if the start fails */
    rc = s->src_flags < 0 ? -errno : set_nonblocking(spec->src_fd);
out:
    if (rc == 0)
        spec->failed_part = OS_PUMP_PART_NONE;
    return rc;
}

/* os_pump_capture_start, or with `deferred` the first step of
 * os_pump_capture_start_pair: everything but handing the capture to the
 * reactor, which os_pump_capture_commit does. */
static int capture_start(os_pump_stream_spec *specs, size_t n, bool deferred, uint64_t *id,
                         os_pump_capture **out) {
    *out = NULL;
    if (n == 0 || n > OS_PUMP_MAX_STREAMS)
        return -EINVAL;
    os_pump_capture *c = calloc(1, sizeof *c + n * sizeof c->streams[0]);
    if (c == NULL)
        return -ENOMEM;
    c->n = n;
    c->deferred = deferred;
    c->writers[0] = c->writers[1] = -1;
    stream_made made[OS_PUMP_MAX_STREAMS];
    int rc = 0;
    size_t prepared = 0;
    for (size_t i = 0; i < n; i++)
        specs[i].failed_part = OS_PUMP_PART_NONE;
    for (; prepared < n && rc == 0; prepared++)
        rc = stream_prepare(c, prepared, specs, &made[prepared]);
    int wake = 0;
    if (rc == 0) {
        pthread_mutex_lock(&P.lock);
        rc = ensure_started();
        if (rc == 0)
            rc = reserve_done_slot();
        if (rc == 0) {
            c->id = ++P.next_id;
            c->generation = P.generation;
            c->refs = 2; /* the caller's and the reactor's */
            if (!deferred)
                rc = wake = queue_command(CMD_ADD, c);
        }
        if (rc >= 0)
            P.active++;
        int wake_w = P.wake_w;
        pthread_mutex_unlock(&P.lock);
        if (wake == 1)
            signal_fd_raise(wake_w);
    }
    if (rc < 0) {
        for (size_t i = 0; i < prepared; i++) {
            if (made[i].pooled != NULL) {
                return_pooled_pipe(made[i].pooled);
                made[i].src = made[i].pipe_w = -1;
            }
            int *fds[3] = {&made[i].src, &made[i].sink, &made[i].pipe_w};
            for (int k = 0; k < 3; k++)
                close_fd(fds[k]);
            if (c->streams[i].src_flags >= 0)
                (void)fcntl(specs[i].src_fd, F_SETFL, c->streams[i].src_flags);
        }
        capture_free(c);
        return rc;
    }
    /* The pump owns the fds now; a new fd replaced a given one. */
    for (size_t i = 0; i < n; i++) {
        if (made[i].src >= 0 && specs[i].src_fd >= 0)
            close(specs[i].src_fd);
        if (made[i].sink >= 0 && specs[i].sink_fd >= 0)
            close(specs[i].sink_fd);
        specs[i].pipe_w = made[i].pipe_w;
        if (deferred && i < 2)
            c->writers[i] = made[i].pipe_w; /* still the pump's */
        pool_pipe *pp = made[i].pooled;
        if (pp != NULL) {
            /* Its events are this stream's from now on: set up first, then
             * published (the child that can write into it comes later). */
            pump_stream *s = &c->streams[i];
            s->pooled = pp;
            s->registered_here = s->start_on_reactor = s->reading = true;
            __atomic_store_n(&pp->stream, s, __ATOMIC_RELEASE);
        }
    }
    *id = c->id;
    *out = c;
    return 0;
}

int os_pump_capture_start(os_pump_stream_spec *specs, size_t n, uint64_t *id,
                          os_pump_capture **out) {
    return capture_start(specs, n, false, id, out);
}

os_pump_capture *os_pump_capture_start_pair(int sink_out, const char *path_out, int sink_err,
                                            const char *path_err,
                                            const struct os_pattern_set *patterns,
                                            const uint8_t *replacement, size_t replacement_len,
                                            size_t max_hold, int64_t out[5]) {
    os_pump_stream_spec specs[2];
    memset(specs, 0, sizeof specs);
    for (int i = 0; i < 2; i++) {
        specs[i].src_fd = OS_PUMP_SOURCE_PIPE;
        specs[i].tee_fd = -1;
        specs[i].patterns = patterns;
        specs[i].replacement = replacement;
        specs[i].replacement_len = replacement_len;
        specs[i].max_hold = max_hold;
    }
    specs[0].sink_fd = sink_out;
    specs[0].sink_path = path_out;
    specs[1].sink_fd = sink_err;
    specs[1].sink_path = path_err;
    uint64_t id = 0;
    os_pump_capture *c = NULL;
    int rc = capture_start(specs, 2, true, &id, &c);
    out[3] = out[4] = 0;
    if (rc < 0) {
        out[0] = rc;
        for (int i = 0; i < 2; i++)
            if (specs[i].failed_part != OS_PUMP_PART_NONE) {
                out[3] = i;
                out[4] = specs[i].failed_part;
            }
        return NULL;
    }
    out[0] = (int64_t)id;
    out[1] = specs[0].pipe_w;
    out[2] = specs[1].pipe_w;
    return c;
}

/* Registers a two-step capture's source with the poller from the calling
 * thread, which spares waking the reactor for it: the reactor finishes the
 * start (stream_start_here) when the first event comes. False if it could
 * not be registered (the reactor's stream_start then tries again, and
 * reports the failure). */
static bool stream_register_here(pump_stream *s) {
    if (s->registered_here)
        return true;                /* a pooled pipe: on the poller since it was made */
    if (stream_source_ready(s) < 0) /* not from the pool (it was empty) */
        return false;
    /* Set before the poller can report the fd: from then on the stream is
     * the reactor's. */
    s->registered_here = s->start_on_reactor = s->reading = true;
    if (pump_poller_add_reader(&P.poller, s->src_fd, s) == 0)
        return true;
    s->registered_here = s->start_on_reactor = s->reading = false;
    return false;
}

void os_pump_capture_commit(os_pump_capture *c, int pid) {
    pthread_mutex_lock(&P.lock);
    /* A capture of the parent process seen after fork() stays abandoned. */
    bool go = c->deferred && !c->committed && c->generation == P.generation;
    if (go) {
        c->committed = true;
        if (pid > 0)
            __atomic_store_n(&c->child_pid, pid, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&P.lock);
    if (!go)
        return;
    bool all = true;
    for (size_t k = 0; k < c->n; k++)
        all = stream_register_here(&c->streams[k]) && all;
    /* The child has its copies by now (or never will): ours go, and the
     * streams end once the child's are closed. */
    for (size_t k = 0; k < 2; k++)
        close_fd(&c->writers[k]);
    if (all)
        return;
    /* A stream that could not be registered: the reactor's stream_start. */
    pthread_mutex_lock(&P.lock);
    bool wake = P.adds == NULL && P.n_cmds == 0; /* one wake-up per batch */
    c->next_add = P.adds;
    P.adds = c;
    int wake_w = P.wake_w;
    pthread_mutex_unlock(&P.lock);
    if (wake)
        signal_fd_raise(wake_w);
}

void os_pump_capture_truncate(os_pump_capture *c) {
    __atomic_store_n(&c->truncated, 1, __ATOMIC_RELEASE);
}

void os_pump_capture_watch_child(os_pump_capture *c, int pid) {
    __atomic_store_n(&c->child_pid, pid, __ATOMIC_RELEASE);
}

void os_pump_capture_child_exit(os_pump_capture *c, int killed) {
    if (killed)
        os_pump_capture_truncate(c);
    __atomic_store_n(&c->exit_known, 1, __ATOMIC_RELEASE);
}

int os_pump_capture_abort(os_pump_capture *c) {
    /* Before the command is queued: a stream that reaches end of file in
     * the meantime is cut short as well. */
    os_pump_capture_truncate(c);
    pthread_mutex_lock(&P.lock);
    int rc = 0;
    if (c->generation != P.generation)
        rc = -ECHILD;
    else if (!c->done) {
        c->refs++;
        rc = queue_command(CMD_ABORT, c);
        if (rc < 0)
            c->refs--;
    }
    int wake_w = P.wake_w;
    pthread_mutex_unlock(&P.lock);
    if (rc == 1)
        signal_fd_raise(wake_w);
    return rc < 0 ? rc : 0;
}

int os_pump_capture_done(os_pump_capture *c) {
    pthread_mutex_lock(&P.lock);
    int done = c->done;
    pthread_mutex_unlock(&P.lock);
    return done;
}

static void deadline_after(struct timespec *ts, int64_t ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int os_pump_capture_wait(os_pump_capture *c, int64_t timeout_ms) {
    struct timespec deadline;
    if (timeout_ms >= 0)
        deadline_after(&deadline, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&P.lock);
    while (!c->done && rc == 0) {
        if (c->generation != P.generation)
            rc = -ECHILD;
        else if (timeout_ms < 0)
            rc = -pthread_cond_wait(&P.done_cond, &P.lock);
        else
            rc = -pthread_cond_timedwait(&P.done_cond, &P.lock, &deadline);
    }
    if (c->done)
        rc = 0;
    pthread_mutex_unlock(&P.lock);
    return rc;
}

int os_pump_capture_pair_counters(os_pump_capture *c, uint64_t out[6]) {
    if (c->n != 2)
        return -EINVAL;
    if (!os_pump_capture_done(c))
        return 0;
    os_pump_stream_stats stats[2]; /* final: the capture is done */
    os_pump_capture_stats_all(c, stats);
    if (stats[0].error || stats[1].error)
        return -EIO;
    for (size_t i = 0; i < 2; i++) {
        out[3 * i] = stats[i].bytes_read;
        out[3 * i + 1] = stats[i].bytes_written;
        out[3 * i + 2] = stats[i].bytes_teed;
    }
    return 1;
}

int os_pump_capture_stats_all(os_pump_capture *c, os_pump_stream_stats *out) {
    for (size_t i = 0; i < c->n; i++) {
        pump_stream *s = &c->streams[i];
        out[i].bytes_read = __atomic_load_n(&s->bytes_read, __ATOMIC_RELAXED);
        out[i].bytes_written = __atomic_load_n(&s->sink.written, __ATOMIC_RELAXED);
        out[i].bytes_teed = __atomic_load_n(&s->tee.written, __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&P.lock);
    for (size_t i = 0; i < c->n; i++) {
        out[i].error = c->streams[i].error;
        out[i].stage = c->streams[i].stage;
    }
    pthread_mutex_unlock(&P.lock);
    return (int)c->n;
}

size_t os_pump_done_pending(void) {
    /* A racy read is fine: it only decides whether draining is worth a call. */
    return __atomic_load_n(&P.n_done, __ATOMIC_RELAXED);
}

int os_pump_capture_stats(os_pump_capture *c, size_t i, os_pump_stream_stats *out) {
    if (i >= c->n)
        return -EINVAL;
    pump_stream *s = &c->streams[i];
    out->bytes_read = __atomic_load_n(&s->bytes_read, __ATOMIC_RELAXED);
    out->bytes_written = __atomic_load_n(&s->sink.written, __ATOMIC_RELAXED);
    out->bytes_teed = __atomic_load_n(&s->tee.written, __ATOMIC_RELAXED);
    pthread_mutex_lock(&P.lock);
    out->error = s->error;
    out->stage = s->stage;
    pthread_mutex_unlock(&P.lock);
    return 0;
}

int os_pump_capture_memory(os_pump_capture *c, size_t i, const uint8_t **data, size_t *len) {
    if (i >= c->n)
        return -EINVAL;
    if (!os_pump_capture_done(c))
        return -EBUSY;
    *data = c->streams[i].sink.mem;
    *len = c->streams[i].sink.mem_len;
    return 0;
}

void os_pump_capture_release(os_pump_capture *c) {
    if (c == NULL)
        return;
    /* Never committed (the caller gave up between the two steps): the
     * reactor takes it now, closes its writers, and it ends at end of file. */
    if (c->deferred)
        os_pump_capture_commit(c, 0);
    pthread_mutex_lock(&P.lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&P.lock);
    if (last)
        capture_free(c);
}

size_t os_pump_active_captures(void) {
    pthread_mutex_lock(&P.lock);
    size_t n = P.active;
    pthread_mutex_unlock(&P.lock);
    return n;
}

/* Next to the OS_PUMP_STAGE_* / OS_PUMP_PART_* values of pump_api.h: their
 * names in errors and stats; NULL for a value that is none of them. */
const char *os_pump_stage_name(int stage) {
    switch (stage) {
    case OS_PUMP_STAGE_NONE:
        return "none";
    case OS_PUMP_STAGE_READ:
        return "read";
    case OS_PUMP_STAGE_REDACT:
        return "redact";
    case OS_PUMP_STAGE_WRITE:
        return "write";
    case OS_PUMP_STAGE_CLOSE:
        return "close";
    default:
        return NULL;
    }
}

const char *os_pump_part_name(int part) {
    switch (part) {
    case OS_PUMP_PART_SOURCE:
        return "the source";
    case OS_PUMP_PART_SINK:
        return "the sink";
    case OS_PUMP_PART_TEE:
        return "the live-output pipe";
    case OS_PUMP_PART_REDACTOR:
        return "the redactor";
    default:
        return NULL;
    }
}
