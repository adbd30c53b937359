/* What orchestrator_spawn/_native calls: the redaction engine (csrc/redact_api.h). */
#ifndef OS_CFFI_REDACT_H
#define OS_CFFI_REDACT_H

#ifdef OS_CFFI_CDEF /* never defined: these lines are for the cdef only */
#define OS_REDACT_IGNORE_CASE ...
#define OS_REDACT_E_COMPILE ...
#define OS_REDACT_E_EMPTY_MATCH ...
#endif

/* A compiled, immutable pattern set; may be shared by redactors of many
 * threads. Must outlive every redactor made from it. */
typedef struct os_pattern_set os_pattern_set;

/* One stream's state; used by one thread at a time. */
typedef struct os_redactor os_redactor;

/* Compile patterns (PCRE2 syntax) and literals (matched exactly, escaped by
 * the engine) into one set, in that order of precedence. On failure,
 * *err_index is the index of the offending entry (patterns first, then
 * literals), *err_offset the offset in it, err_msg a NUL-terminated message. */
int os_pattern_set_new(const char *const *patterns, const size_t *pattern_lens, size_t n_patterns,
                       const char *const *literals, const size_t *literal_lens, size_t n_literals,
                       uint32_t flags, os_pattern_set **out, size_t *err_index, size_t *err_offset,
                       char *err_msg, size_t err_msg_len);

void os_pattern_set_free(os_pattern_set *set);

/* The anchor of entry `index`: returns the number of literal variants (0 when
 * the entry has none and is searched by itself), with the range of offsets
 * from the match start at which one of them must occur, or -EINVAL for a bad
 * index; *rel_end is 1 when they locate the end of the literal (the byte
 * after it, for an anchor taken from a lookbehind: the offsets may then be
 * negative) instead of its start. */
int os_pattern_set_anchor_ex(const os_pattern_set *set, size_t index, int32_t *dmin, int32_t *dmax,
                             int *rel_end);

/* The scan loop of the set's literal scanner: "scalar", "ssse3", "avx2" or
 * "neon" (OS_REDACT_SCAN=<name> in the environment forces a supported one
 * when the set is compiled). */
const char *os_pattern_set_scanner(const os_pattern_set *set);

/* A new stream over `set`; NULL on allocation failure. */
os_redactor *os_redactor_new(const os_pattern_set *set, const uint8_t *replacement,
                             size_t replacement_len, size_t max_hold);

void os_redactor_free(os_redactor *r);

/* Feed bytes. Whatever can be decided is appended to the redactor's pending
 * output; the rest (at most max_hold bytes plus the pattern look-behind) is
 * held. Returns 0 or -ENOMEM (then the redactor is unusable), -EINVAL after
 * os_redactor_finish. `data` need only stay valid during the call (a large
 * feed is matched in place, and what stays undecided is copied). */
int os_redactor_feed(os_redactor *r, const uint8_t *data, size_t len);

/* End of stream: everything held is decided and appended to the output. */
int os_redactor_finish(os_redactor *r);

/* The stream was cut short (aborted, killed, timed out, a read error): the
 * bytes still held, which may be the start of a match, are appended to the
 * output as one replacement, never in clear. Then like os_redactor_finish. */
int os_redactor_abort(os_redactor *r);

/* The pending output (valid until the next call on r) and its consumption. */
const uint8_t *os_redactor_output(os_redactor *r, size_t *len);

void os_redactor_consume(os_redactor *r, size_t n);

/* Bytes fed but not yet decided (held back). */
size_t os_redactor_held(const os_redactor *r);

/* Whole-buffer redaction in two steps, so that the caller can allocate the
 * result once at its final size and the output is copied once: on a fresh
 * redactor, os_redactor_plan matches all of data[0, len) and ends the stream
 * (as feed + finish would), recording what the output is made of, and sets
 * *out_len; os_redactor_write_plan then writes exactly *out_len bytes to
 * out, from the same data (which must not change in between). Returns 0,
 * -ENOMEM, or -EINVAL when r has been used already. */
int os_redactor_plan(os_redactor *r, const uint8_t *data, size_t len, size_t *out_len);

void os_redactor_write_plan(os_redactor *r, const uint8_t *data, uint8_t *out);

#endif /* OS_CFFI_REDACT_H */
