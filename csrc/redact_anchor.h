/*
 * redact_anchor.h: extraction of a required literal ("anchor") from a regex.
 *
 * An anchor is a small set of literals plus the range of offsets, counted
 * from the match start, at which one of them must occur in EVERY match of the
 * pattern. The offset is that of the literal's first byte, or, for a literal
 * taken from a lookbehind (rel_end), that of the byte just after its last
 * byte; then it is usually negative or zero: "(?<=key=)v" has the anchor
 * "key=" ending at offset 0, i.e. right at the match start. The redaction engine scans text for the literals and runs the
 * pattern only in the windows they imply, so a wrong anchor would silently
 * miss secrets: the extractor is deliberately conservative and gives up
 * (found = 0) on any construct it does not fully understand.
 */
#ifndef OS_REDACT_ANCHOR_H
#define OS_REDACT_ANCHOR_H

#include <stddef.h>
#include <stdint.h>

#define OS_ANCHOR_MAXV 16   /* at most this many literal variants */
#define OS_ANCHOR_MAXLEN 32 /* bytes per literal variant */
#define OS_ANCHOR_INF UINT32_MAX
#define OS_ANCHOR_RUN_MIN 16 /* shortest class repeat used as a run (has_run) */

typedef struct {
    int found;
    int ci; /* compare literals with ASCII case folding */
    size_t n;
    uint8_t lit[OS_ANCHOR_MAXV][OS_ANCHOR_MAXLEN];
    uint8_t len[OS_ANCHOR_MAXV];
    int rel_end;        /* dmin/dmax locate the literal's end, not its start */
    int32_t dmin, dmax; /* offset of the literal from the match start */
    /* Optional cheap check on the bytes after the literal: skip_min to
     * skip_max bytes of class `skip`, then need_run bytes of class `need`
     * (the two classes are disjoint, so the greedy count decides). */
    int has_need;
    uint8_t need[32];
    int has_skip;
    uint8_t skip[32];
    uint32_t skip_min, skip_max;
    /* With has_need: at least this many bytes of class `need` follow in a
     * row (0 means 1), e.g. 32 for "key-[0-9a-z]{32}". */
    uint32_t need_run;
    /* Without a literal (found == 0), a cheaper necessary condition: every
     * match holds run_min or more bytes of class run_set in a row, starting
     * at an offset in [run_dmin, run_dmax] from the match start (has_run;
     * e.g. "\b[A-Za-z0-9+/]{40}\b": 40 bytes of the class at offset 0). */
    int has_run;
    uint8_t run_set[32];
    uint32_t run_min;
    uint32_t run_dmin, run_dmax;
} os_anchor;

/* Fill *out from the pattern text; ci says whether the whole pattern is
 * compiled caseless. Never fails: out->found = 0 when no safe anchor exists. */
void os_anchor_extract(const uint8_t *pat, size_t len, int ci, os_anchor *out);

/* The minimum width of a match, with look-arounds counting zero: 1 and
 * *out when the whole pattern was understood, 0 otherwise. */
int os_pattern_min_width(const uint8_t *pat, size_t len, int ci, uint32_t *out);

static inline int os_anchor_set_has(const uint8_t set[32], uint8_t c) {
    return (set[c >> 3] >> (c & 7)) & 1;
}

#endif
