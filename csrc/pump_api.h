/*
 * pump_api.h: the native output pump.
 *
 * One reactor thread per process (epoll or kqueue) moves bytes from the read
 * ends of children's pipes, through one os_redactor per stream (or none),
 * into sink fds, an in-memory buffer, and optionally a "tee" pipe that Python
 * reads for live output. No Python code runs on the reactor thread.
 *
 * A capture groups the streams of one child (usually stdout and stderr). It
 * is done once every stream reached end of file (or was aborted), every byte
 * read went through its redactor (finish() included) and was written. Python
 * learns about finished captures from one notification fd (readable while
 * finished capture ids are waiting in os_pump_take_done), or blocks in
 * os_pump_capture_wait.
 *
 * Return codes are 0 or -errno. The reactor is started lazily; in a child
 * created by fork() the pump starts afresh, and captures of the parent are
 * dead there (their wait returns -ECHILD).
 */
#ifndef OS_PUMP_API_H
#define OS_PUMP_API_H

#include <stddef.h>
#include <stdint.h>

#define OS_PUMP_SINK_DISCARD -1 /* sink_fd: drop the (redacted) bytes */
#define OS_PUMP_SINK_MEMORY -2  /* sink_fd: keep them in memory for Python */
#define OS_PUMP_SINK_PATH -3    /* sink_fd: open sink_path (see os_pump_stream_spec) */
#define OS_PUMP_SOURCE_PIPE -3  /* src_fd: the pump creates the pipe (see pipe_w) */
#define OS_PUMP_MAX_STREAMS 8

/* Where a stream failed (os_pump_stream_stats.stage). */
#define OS_PUMP_STAGE_NONE 0
#define OS_PUMP_STAGE_READ 1   /* reading the source pipe failed */
#define OS_PUMP_STAGE_REDACT 2 /* the redactor failed (ENOMEM); output withheld */
#define OS_PUMP_STAGE_WRITE 3  /* writing the sink failed */
#define OS_PUMP_STAGE_CLOSE 4  /* closing the sink failed (e.g. NFS, EIO) */

/* What failed when a capture could not start (os_pump_stream_spec.failed_part). */
#define OS_PUMP_PART_NONE 0
#define OS_PUMP_PART_SOURCE 1
#define OS_PUMP_PART_SINK 2
#define OS_PUMP_PART_TEE 3
#define OS_PUMP_PART_REDACTOR 4

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/pump.h (the cdef reads the same file). */
#include "cffi/pump.h"

/* Counters of stream i (consistent snapshot; final once done). */
int os_pump_capture_stats(os_pump_capture *c, size_t i, os_pump_stream_stats *out);

#endif
