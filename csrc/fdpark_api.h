/*
 * fdpark_api.h: keeping the fds this library holds for a child's lifetime
 * out of the low range where new fds are allocated.
 *
 * Why: a spawn gives the child a private fd table holding only the fds below
 * the highest one it needs (CLOSE_RANGE_UNSHARE, see spawn_child.c), and each
 * fd copied costs ~95 ns (copied, then closed). New fds (the pipes a child
 * writes into) take the lowest free number, so if the pidfds, pipe read ends
 * and sink files of 1,000 running children sit at the bottom of the table,
 * every new child's pipe lands above them and every spawn copies them all
 * (+190 us with 2,000 fds). Parked at OS_FD_PARK_BASE and up, they leave the
 * bottom free and the copy stays a few fds long.
 */
#ifndef OS_FDPARK_API_H
#define OS_FDPARK_API_H

/* Parked fds go to the lowest free number at or above this (below FD_SETSIZE,
 * so select() can still take the first ones). */
#define OS_FD_PARK_BASE 256

/* The functions and types orchestrator_spawn/_native calls, with their
 * documentation: csrc/cffi/fdpark.h (the cdef reads the same file). */
#include "cffi/fdpark.h"

#endif
