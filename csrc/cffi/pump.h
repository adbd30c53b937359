/* What orchestrator_spawn/_native calls: the capture pump (csrc/pump_api.h). */
#ifndef OS_CFFI_PUMP_H
#define OS_CFFI_PUMP_H

#ifdef OS_CFFI_CDEF /* never defined: these lines are for the cdef only */
#define OS_PUMP_SINK_DISCARD ...
#define OS_PUMP_SINK_MEMORY ...
#define OS_PUMP_SINK_PATH ...
#define OS_PUMP_SOURCE_PIPE ...
#define OS_PUMP_MAX_STREAMS ...
#define OS_PUMP_PART_NONE ...
#define OS_PUMP_PART_SINK ...
#endif

typedef struct os_pump_capture os_pump_capture;

typedef struct os_pump_stream_spec {
    /* Read end of the child's pipe. The pump makes it non-blocking and
     * closes it at end of file. OS_PUMP_SOURCE_PIPE: the pump creates a new
     * pipe (close-on-exec) and hands its write end back in pipe_w. */
    int src_fd;
    /* An fd the pump writes to and closes when done (pipes and sockets are
     * written without blocking), or OS_PUMP_SINK_DISCARD/OS_PUMP_SINK_MEMORY,
     * or OS_PUMP_SINK_PATH. */
    int sink_fd;
    /* OS_PUMP_SINK_PATH: the file to open (O_WRONLY | O_CREAT | O_TRUNC,
     * mode 0666 before umask, close-on-exec) in the calling thread. Sinks of
     * the same call that are the same regular file (same device and inode,
     * whatever the names or fds given) share one open file, so that their
     * writes interleave instead of overwriting each other. */
    const char *sink_path;
    /* Out, OS_PUMP_SOURCE_PIPE only: the pipe's write end (blocking,
     * close-on-exec), owned by the caller on success. The stream reaches end
     * of file once every copy of it is closed. */
    int pipe_w;
    /* Write end of a non-blocking pipe that receives a copy of the sink's
     * bytes for live reading, or -1. A full tee pauses reading this stream
     * (nothing is dropped); a closed tee is dropped silently. */
    int tee_fd;
    /* NULL: bytes pass through unchanged. Otherwise must outlive the capture.
     * Each stream's redactor is made on the reactor thread when the stream
     * starts; if that fails (ENOMEM) the stream fails closed: its output is
     * withheld and its stats say OS_PUMP_STAGE_REDACT. */
    const struct os_pattern_set *patterns;
    const uint8_t *replacement; /* copied at start (the caller may free it then) */
    size_t replacement_len;
    size_t max_hold;
    /* Out, when the start failed: which part of this stream failed
     * (OS_PUMP_PART_*); OS_PUMP_PART_NONE for the other streams. */
    int failed_part;
} os_pump_stream_spec;

typedef struct os_pump_stream_stats {
    uint64_t bytes_read;    /* from the source pipe */
    uint64_t bytes_written; /* to the sink (after redaction) */
    uint64_t bytes_teed;    /* to the tee pipe */
    int error;              /* errno of the first failure, or 0 */
    int stage;              /* OS_PUMP_STAGE_* of that failure */
} os_pump_stream_stats;

/* The notification fd (starting the reactor if needed): readable while
 * finished capture ids wait in os_pump_take_done. Returns the fd or -errno. */
int os_pump_notify_fd(void);

/* Reset the notification fd and move up to max finished capture ids into
 * ids; returns how many. Call until it returns less than max. */
size_t os_pump_take_done(uint64_t *ids, size_t max);

/* How many finished capture ids wait in os_pump_take_done (no syscall). */
size_t os_pump_done_pending(void);

/* Number of captures the reactor is pumping (for tests and diagnostics). */
size_t os_pump_active_captures(void);

/* Start pumping n (1..OS_PUMP_MAX_STREAMS) streams. On success the pump owns
 * every fd in specs (and the caller each pipe_w); on failure the caller still
 * owns every fd it gave and nothing the pump created is left open. *out must be
 * released with os_pump_capture_release (also while running: the pump keeps
 * its own reference). */
int os_pump_capture_start(os_pump_stream_spec *specs, size_t n, uint64_t *id,
                          os_pump_capture **out);

/* The runner's and run()'s capture, started in two steps around the spawn
 * of the child that writes into it. Step one: two new pipes (stdout, stderr;
 * taken from the ones the reactor made ahead when it has some) into the
 * sinks sink_out/sink_err (OS_PUMP_SINK_* values; OS_PUMP_SINK_PATH opens
 * path_out/path_err as os_pump_capture_start does), both redacted with
 * patterns (NULL: not redacted; replacement and max_hold as in
 * os_pump_stream_spec). Returns the capture, not pumping yet, with out[0] =
 * its id and out[1], out[2] = the pipes' write ends for the child: they stay
 * the pump's (do not close them). On failure returns NULL with out[0] =
 * -errno, out[3] = the index of the stream that failed and out[4] = its
 * OS_PUMP_PART_*, and nothing it made is left open. Step two is
 * os_pump_capture_commit, once the child has its copies of the write ends
 * (or could not be started); os_pump_capture_release commits a capture
 * that never was. */
os_pump_capture *os_pump_capture_start_pair(int sink_out, const char *path_out, int sink_err,
                                            const char *path_err,
                                            const struct os_pattern_set *patterns,
                                            const uint8_t *replacement, size_t replacement_len,
                                            size_t max_hold, int64_t out[5]);

/* Step two of os_pump_capture_start_pair: the streams are child pid's (as
 * os_pump_capture_watch_child; 0: no child); they are handed to the reactor
 * (registered with its poller from this thread, without waking it) and the
 * pump's write ends are closed. Never fails (a stream that cannot be
 * registered is left to the reactor, which reports it as
 * os_pump_capture_start's streams); once only (later calls do nothing). */
void os_pump_capture_commit(os_pump_capture *c, int pid);

/* Stop waiting for end of file: each stream takes what its pipe holds right
 * now, then finishes cut short (see os_pump_capture_truncate). The tee pipes
 * are closed. */
int os_pump_capture_abort(os_pump_capture *c);

/* The streams will end early (the child is about to be killed, timed out,
 * cancelled): from now on, whenever a stream ends, the bytes its redactor
 * still holds because they may be the start of a match are written as one
 * replacement, never in clear (os_redactor_abort). Reading goes on to end
 * of file. Never blocks; callable from any thread, and before the kill so
 * that the end of file the kill causes is already cut short. */
void os_pump_capture_truncate(os_pump_capture *c);

/* The streams are the output of child `pid`. A stream that reaches end of
 * file while its redactor holds bytes then checks (without reaping it, for
 * up to 20 ms while the child finishes exiting) whether the child was killed
 * by a signal, and if so ends cut short as above. Call it before the stream
 * can reach end of file (before closing your copies of the pipes' write
 * ends); pid 0 forgets the child. */
void os_pump_capture_watch_child(os_pump_capture *c, int pid);

/* The owner reaped the watched child: `killed` when a signal ended it (then
 * as os_pump_capture_truncate). A stream waiting for the verdict (the child
 * could not be waited for any more) takes it at once. */
void os_pump_capture_child_exit(os_pump_capture *c, int killed);

/* 1 when done, 0 while running. */
int os_pump_capture_done(os_pump_capture *c);

/* Block up to timeout_ms (-1: forever) until done: 0, -ETIMEDOUT, or
 * -ECHILD for a capture of the parent process seen after fork(). Call it
 * without the GIL (cffi releases it). */
int os_pump_capture_wait(os_pump_capture *c, int64_t timeout_ms);

/* Counters of every stream (out has room for the capture's stream count);
 * returns that count. */
int os_pump_capture_stats_all(os_pump_capture *c, os_pump_stream_stats *out);

/* A done two-stream capture's final counters, when neither stream failed:
 * out = bytes read, written and teed of stream 0, then of stream 1, and
 * returns 1. Returns 0 while running, -EIO when a stream failed (read its
 * error with os_pump_capture_stats_all), -EINVAL for another stream count. */
int os_pump_capture_pair_counters(os_pump_capture *c, uint64_t out[6]);

/* The bytes kept by an OS_PUMP_SINK_MEMORY stream; valid until release.
 * -EBUSY while the capture runs. */
int os_pump_capture_memory(os_pump_capture *c, size_t i, const uint8_t **data, size_t *len);

void os_pump_capture_release(os_pump_capture *c);

/* The names of an OS_PUMP_STAGE_* and an OS_PUMP_PART_* (in stats and
 * errors); NULL for a value that is none of them. */
const char *os_pump_stage_name(int stage);

const char *os_pump_part_name(int part);

#endif /* OS_CFFI_PUMP_H */
