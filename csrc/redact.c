/*
 * redact.c: the streaming multi-pattern redaction engine over PCRE2.
 *
 * Semantics: the output equals re.sub over the alternation of all patterns
 * (leftmost-first, non-overlapping, pattern order) for every way the input is
 * cut into chunks. Speed comes from anchors (redact_anchor.c): the literals
 * each pattern's matches must contain are found by one multi-literal scan
 * (redact_scan.c) and each pattern's own JIT code runs only in the windows of
 * start offsets they imply, on the full buffer so that look-behind sees the
 * real preceding bytes. Patterns without an anchor search by themselves.
 * An anchor taken from a lookbehind ("(?<=password=)...") is located by its
 * end, which precedes the match start: its windows may begin after the end
 * of the data so far, and its literal may lie before the decision point
 * (within the look-behind context that is kept).
 *
 * Per pattern the redactor keeps a frontier (no match of the pattern starts
 * in [decision point, frontier)), its pending anchor hits and a cached next
 * event (complete match, partial match at the buffer end, or engine error).
 * The next match of the alternation is the event with the smallest start,
 * ties going to the lowest pattern index. A partial match stops the decision
 * point: those bytes are held until more data or the end of stream decides
 * them (PCRE2_PARTIAL_HARD, see pcre2partial(3)).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "redact_anchor.h"
#include "redact_api.h"
#include "redact_scan.h"

/* Backtracking budget of one pcre2_match call: a catastrophic pattern such
 * as (a+)+$ stops after milliseconds and the bytes fail closed. */
#define OS_REDACT_MATCH_LIMIT 1000000u
/* Feeds are processed in pieces of this size, which bounds the anchor-hit
 * lists (memory) of one processing round. */
#define OS_REDACT_PIECE ((size_t)256 * 1024)

typedef struct {
    pcre2_code *code;
    int jit;          /* JIT-compiled for complete and hard-partial matching */
    os_anchor anchor; /* anchor.found == 0: the pattern searches alone */
    /* How far before the end of the data a match may start whose anchor
     * has not fully arrived yet (the tail that is searched without one). */
    uint64_t lookahead;
    /* The classes of the anchor's follow check, for os_scan_run. */
    os_scan_class skip_class, need_class;
    /* No anchor, but a run every match holds (anchor.has_run): the pattern
     * searches alone, only where such a run is. */
    int run;
    os_scan_class run_class;
    int windowed; /* compiled with PCRE2_USE_OFFSET_LIMIT (anchor or run) */
} os_pat;

struct os_pattern_set {
    size_t n;
    os_pat *pats;
    os_scanner scanner;
    uint32_t context; /* bytes kept before the decision point (look-behind) */
    int debug;        /* check every match against its anchor */
};

enum { EV_NONE, EV_FULL, EV_PARTIAL, EV_ERROR };

typedef struct {
    uint64_t *t; /* anchor hits (absolute literal starts, or ends), sorted */
    size_t head, n, cap;
    uint64_t frontier;
    int ev;
    uint64_t s, e;
} os_pstate;

struct os_redactor {
    const os_pattern_set *set;
    size_t n_pats;
    uint8_t *rep;
    size_t rep_len, max_hold;
    /* The subject of matching: subj[0] is stream offset `base`. Normally it
     * is the owned buffer; a large feed is matched in place in the caller's
     * memory (no copy) once the bytes before it are decided. */
    const uint8_t *subj;
    size_t slen;
    uint8_t *buf; /* owned bytes */
    size_t len, cap;
    int inplace;
    uint64_t base, pos, seen_end;
    uint8_t *out;
    size_t out_len, out_cap, out_off;
    os_pstate *ps;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    int failed; /* sticky -ENOMEM */
    int finished;
    /* After a partial match outgrew max_hold and failed closed, the rest of
     * that match is suppressed too ("sticky"): stk holds the look-behind
     * context and the first bytes of the match, then the last bytes
     * suppressed, and each new piece of data is matched after them. */
    int sticky;
    size_t stk_idx, stk_ctx, stk_head, stk_tail;
    uint8_t *stk;
    size_t stk_cap;
    /* Whole-buffer mode (os_redactor_plan): the output is recorded as a
     * plan (runs of the input, replacements) instead of copied; a clear run
     * is pending in [plan_from, plan_to) until something else is emitted. */
    int planning;
    uint8_t *plan;
    size_t plan_len, plan_cap, plan_out;
    uint64_t plan_src, plan_from, plan_to;
};

/* ------------------------------------------------------------------------ */
/* The pattern set                                                          */

static void set_error(char *msg, size_t cap, const char *text) {
    if (cap)
        snprintf(msg, cap, "%s", text);
}

static int add_pattern(os_pattern_set *set, const char *pat, size_t len, uint32_t options,
                       int literal, int ci, size_t *err_offset, char *err_msg, size_t err_cap) {
    os_pat *p = &set->pats[set->n];
    memset(p, 0, sizeof *p);
    if (literal) {
        /* A literal is its own anchor (a prefix of it when long). */
        if (len >= 2) {
            os_anchor *a = &p->anchor;
            a->found = 1;
            a->ci = ci;
            a->n = 1;
            a->len[0] = (uint8_t)(len < OS_ANCHOR_MAXLEN ? len : OS_ANCHOR_MAXLEN);
            memcpy(a->lit[0], pat, a->len[0]);
        }
    } else {
        os_anchor_extract((const uint8_t *)pat, len, ci, &p->anchor);
    }
    /* Only anchored patterns run in windows; the offset limit would cost an
     * unanchored pattern some of PCRE2's start-of-match optimisations. */
    p->run = !p->anchor.found && p->anchor.has_run;
    p->windowed = p->anchor.found || p->run;
    if (p->windowed)
        options |= PCRE2_USE_OFFSET_LIMIT;
    if (p->run)
        os_scan_class_init(&p->run_class, p->anchor.run_set);
    int errcode;
    PCRE2_SIZE off = 0;
    p->code = pcre2_compile((PCRE2_SPTR)pat, len, options | (literal ? PCRE2_LITERAL : 0), &errcode,
                            &off, NULL);
    if (!p->code) {
        *err_offset = off;
        if (err_cap)
            pcre2_get_error_message(errcode, (PCRE2_UCHAR *)err_msg, err_cap);
        return OS_REDACT_E_COMPILE;
    }
    set->n++;
    uint32_t minlen = 0, lookbehind = 0;
    pcre2_pattern_info(p->code, PCRE2_INFO_MINLENGTH, &minlen);
    pcre2_pattern_info(p->code, PCRE2_INFO_MAXLOOKBEHIND, &lookbehind);
    if (minlen == 0) {
        *err_offset = 0;
        set_error(err_msg, err_cap, "pattern can match the empty string");
        return OS_REDACT_E_EMPTY_MATCH;
    }
    /* PCRE2's minimum length counts bytes a look-ahead needs, though they
     * are not part of the match: then the pattern's own width decides. */
    if (!literal && (memmem(pat, len, "(?=", 3) || memmem(pat, len, "(*pla", 5) ||
                     memmem(pat, len, "(*positive_lookahead", 20))) {
        uint32_t width = 0;
        if (!os_pattern_min_width((const uint8_t *)pat, len, ci, &width) || width == 0) {
            *err_offset = 0;
            set_error(err_msg, err_cap,
                      "pattern can match the empty string (or a look-ahead hides its width)");
            return OS_REDACT_E_EMPTY_MATCH;
        }
    }
    if (lookbehind > set->context)
        set->context = lookbehind;
    /* Without JIT, pcre2_match falls back to the interpreter: slower, same
     * results. */
    p->jit = pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD) == 0;

    if (p->anchor.found) {
        if (p->anchor.has_skip)
            os_scan_class_init(&p->skip_class, p->anchor.skip);
        if (p->anchor.has_need)
            os_scan_class_init(&p->need_class, p->anchor.need);
        uint32_t maxlen = 0;
        for (size_t v = 0; v < p->anchor.n; v++)
            if (p->anchor.len[v] > maxlen)
                maxlen = p->anchor.len[v];
        int64_t reach = (int64_t)p->anchor.dmax + (p->anchor.rel_end ? 0 : maxlen);
        p->lookahead = reach > 0 ? (uint64_t)reach : 0;
    }
    return 0;
}

int os_pattern_set_new(const char *const *patterns, const size_t *pattern_lens, size_t n_patterns,
                       const char *const *literals, const size_t *literal_lens, size_t n_literals,
                       uint32_t flags, os_pattern_set **out, size_t *err_index, size_t *err_offset,
                       char *err_msg, size_t err_msg_len) {
    *out = NULL;
    *err_index = 0;
    *err_offset = 0;
    set_error(err_msg, err_msg_len, "");
    int ci = (flags & OS_REDACT_IGNORE_CASE) != 0;
    uint32_t options = ci ? PCRE2_CASELESS : 0;
    size_t total = n_patterns + n_literals;
    os_pattern_set *set = calloc(1, sizeof *set);
    if (!set)
        return -ENOMEM;
    set->pats = calloc(total ? total : 1, sizeof *set->pats);
    if (!set->pats) {
        free(set);
        return -ENOMEM;
    }
    set->context = 1; /* keeps \A and ^ from matching mid-stream */
    const char *dbg = getenv("OS_REDACT_DEBUG_ANCHORS");
    set->debug = dbg && *dbg && strcmp(dbg, "0") != 0;
    int rc = 0;
    for (size_t i = 0; i < total && rc == 0; i++) {
        int literal = i >= n_patterns;
        const char *src = literal ? literals[i - n_patterns] : patterns[i];
        size_t len = literal ? literal_lens[i - n_patterns] : pattern_lens[i];
        rc = add_pattern(set, src, len, options, literal, ci, err_offset, err_msg, err_msg_len);
        if (rc)
            *err_index = i;
    }
    if (rc == 0) {
        size_t nl = 0;
        for (size_t i = 0; i < set->n; i++)
            nl += set->pats[i].anchor.found ? set->pats[i].anchor.n : 0;
        os_scan_lit *lits = calloc(nl ? nl : 1, sizeof *lits);
        if (!lits)
            rc = -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; lits && i < set->n; i++) {
            const os_anchor *a = &set->pats[i].anchor;
            for (size_t v = 0; a->found && v < a->n; v++, k++) {
                lits[k].owner = (uint32_t)i;
                lits[k].len = a->len[v];
                lits[k].ci = (uint8_t)a->ci;
                memcpy(lits[k].bytes, a->lit[v], a->len[v]);
                if (a->has_need && !a->has_skip) {
                    lits[k].has_next = 1;
                    memcpy(lits[k].next, a->need, 32);
                }
            }
        }
        if (lits)
            rc = os_scanner_init(&set->scanner, lits, nl);
        free(lits);
    }
    if (rc) {
        os_pattern_set_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

void os_pattern_set_free(os_pattern_set *set) {
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        pcre2_code_free(set->pats[i].code);
    free(set->pats);
    os_scanner_free(&set->scanner);
    free(set);
}

const char *os_pattern_set_scanner(const os_pattern_set *set) {
    return os_scanner_impl_name(&set->scanner);
}

int os_pattern_set_anchor_ex(const os_pattern_set *set, size_t index, int32_t *dmin, int32_t *dmax,
                             int *rel_end) {
    if (index >= set->n)
        return -EINVAL;
    const os_anchor *a = &set->pats[index].anchor;
    *dmin = a->dmin;
    *dmax = a->dmax;
    *rel_end = a->rel_end;
    return a->found ? (int)a->n : 0;
}

/* ------------------------------------------------------------------------ */
/* Redactor buffers                                                         */

static int grow(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *q = realloc(*p, c);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* The output buffer of a large feed is big and fresh: back it with huge
 * pages where the kernel offers them, because page faults would otherwise
 * cost as much as the matching. */
#define OS_REDACT_HUGE ((size_t)2 << 20)

static int grow_out(os_redactor *r, size_t need) {
    if (need <= r->out_cap)
        return 0;
    if (need < 4 * OS_REDACT_HUGE)
        return grow(&r->out, &r->out_cap, need);
    size_t cap = r->out_cap * 2 > need ? r->out_cap * 2 : need;
    cap = (cap + OS_REDACT_HUGE - 1) / OS_REDACT_HUGE * OS_REDACT_HUGE;
    void *q = NULL;
    if (posix_memalign(&q, OS_REDACT_HUGE, cap))
        return -ENOMEM;
#ifdef MADV_HUGEPAGE
    (void)madvise(q, cap, MADV_HUGEPAGE);
#endif
    memcpy(q, r->out, r->out_len);
    free(r->out);
    r->out = q;
    r->out_cap = cap;
    return 0;
}

static void plan_flush(os_redactor *r);
static void plan_other(os_redactor *r, const uint8_t *p, size_t n);

static void emit(os_redactor *r, const uint8_t *p, size_t n) {
    if (n == 0 || r->failed)
        return;
    if (r->planning) {
        plan_other(r, p, n);
        return;
    }
    if (r->out_off && r->out_off == r->out_len)
        r->out_off = r->out_len = 0;
    if (grow_out(r, r->out_len + n)) {
        r->failed = -ENOMEM;
        return;
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
}

/* Emit the clear bytes [pos, upto) of the stream. */
static void emit_clear(os_redactor *r, uint64_t upto) {
    if (upto <= r->pos)
        return;
    if (r->planning) {
        /* Stream offsets are offsets into the caller's buffer. */
        if (r->plan_to != r->pos)
            plan_flush(r);
        if (r->plan_to == r->plan_from)
            r->plan_from = r->pos;
        r->plan_to = upto;
    } else {
        emit(r, r->subj + (r->pos - r->base), (size_t)(upto - r->pos));
    }
    r->pos = upto;
}

os_redactor *os_redactor_new(const os_pattern_set *set, const uint8_t *replacement,
                             size_t replacement_len, size_t max_hold) {
    os_redactor *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->set = set;
    r->n_pats = set->n;
    r->max_hold = max_hold;
    r->rep_len = replacement_len;
    r->rep = malloc(replacement_len ? replacement_len : 1);
    r->ps = calloc(set->n ? set->n : 1, sizeof *r->ps);
    r->md = pcre2_match_data_create(1, NULL);
    r->mc = pcre2_match_context_create(NULL);
    /* The JIT stack (a 1 MiB mapping) is made by the first match (see
     * search()): a stream with nothing to match, like a quiet child's, never
     * maps it, and a pump start does not pay for it in the caller's thread. */
    if (!r->rep || !r->ps || !r->md || !r->mc) {
        os_redactor_free(r);
        return NULL;
    }
    memcpy(r->rep, replacement, replacement_len);
    pcre2_set_match_limit(r->mc, OS_REDACT_MATCH_LIMIT);
    return r;
}

void os_redactor_free(os_redactor *r) {
    if (!r)
        return;
    /* r->set is not touched here: at interpreter exit the set may already
     * be gone when the last redactor is collected. */
    if (r->ps)
        for (size_t i = 0; i < r->n_pats; i++)
            free(r->ps[i].t);
    free(r->ps);
    free(r->rep);
    free(r->buf);
    free(r->out);
    free(r->stk);
    free(r->plan);
    if (r->md)
        pcre2_match_data_free(r->md);
    if (r->mc)
        pcre2_match_context_free(r->mc);
    if (r->js)
        pcre2_jit_stack_free(r->js);
    free(r);
}

/* ------------------------------------------------------------------------ */
/* Matching                                                                 */

/* The anchor's follow check at buf[i] (right after the literal): a run of
 * skip bytes of the right length, then need_run need bytes. Undecided (1)
 * where the data ends first. */
static int follow_ok(const os_scanner *sc, const os_pat *pt, const uint8_t *buf, size_t len,
                     size_t i) {
    const os_anchor *a = &pt->anchor;
    if (!a->has_need)
        return 1;
    if (a->has_skip) {
        size_t k =
            os_scan_run(sc, &pt->skip_class, buf + i, len - i, a->skip_max < 64 ? a->skip_max : 64);
        i += k;
        if (i >= len || (k == 64 && a->skip_max > 64))
            return 1; /* undecided */
        if (k < a->skip_min)
            return 0;
    }
    if (i >= len)
        return 1;
    if (a->need_run <= 1)
        return os_anchor_set_has(a->need, buf[i]);
    size_t k = os_scan_run(sc, &pt->need_class, buf + i, len - i, a->need_run);
    return k >= a->need_run || i + k >= len;
}

static void on_hit(void *ctx, const os_scan_lit *l, size_t t_rel) {
    os_redactor *r = ctx;
    const os_pat *pt = &r->set->pats[l->owner];
    if (!follow_ok(&r->set->scanner, pt, r->subj, r->slen, t_rel + l->len))
        return;
    os_pstate *p = &r->ps[l->owner];
    uint64_t t = r->base + t_rel + (pt->anchor.rel_end ? l->len : 0);
    if (p->head && p->head == p->n)
        p->head = p->n = 0;
    if (p->n == p->cap) {
        if (p->head > 0) {
            memmove(p->t, p->t + p->head, (p->n - p->head) * sizeof *p->t);
            p->n -= p->head;
            p->head = 0;
        }
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 64;
            uint64_t *q = realloc(p->t, cap * sizeof *q);
            if (!q) {
                r->failed = -ENOMEM;
                return;
            }
            p->t = q;
            p->cap = cap;
        }
    }
    /* Hits arrive almost sorted (fingerprints sit at different offsets of
     * different literals): insert from the back, dropping duplicates. */
    size_t i = p->n;
    while (i > p->head && p->t[i - 1] > t)
        i--;
    if (i > p->head && p->t[i - 1] == t)
        return;
    memmove(p->t + i + 1, p->t + i, (p->n - i) * sizeof *p->t);
    p->t[i] = t;
    p->n++;
}

static void debug_check(const os_redactor *r, size_t idx, uint64_t s, uint64_t e) {
    const os_anchor *a = &r->set->pats[idx].anchor;
    for (int64_t d = a->dmin; d <= a->dmax; d++) {
        for (size_t v = 0; v < a->n; v++) {
            /* A forward anchor lies inside the match; a lookbehind's anywhere
             * in the kept data (usually just before the match). */
            int64_t t = (int64_t)s + d - (a->rel_end ? a->len[v] : 0);
            if (!a->rel_end && (uint64_t)t + a->len[v] > e)
                continue;
            if (t < (int64_t)r->base || (uint64_t)t + a->len[v] > r->base + r->slen)
                continue;
            const uint8_t *p = r->subj + ((uint64_t)t - r->base);
            size_t k = 0;
            for (; k < a->len[v]; k++) {
                uint8_t x = p[k], y = a->lit[v][k];
                if (a->ci) {
                    if (x >= 'A' && x <= 'Z')
                        x |= 0x20;
                    if (y >= 'A' && y <= 'Z')
                        y |= 0x20;
                }
                if (x != y)
                    break;
            }
            if (k == a->len[v])
                return;
        }
    }
    fprintf(stderr,
            "orchestrator_spawn redact: pattern %zu matched [%llu, %llu) without its anchor "
            "at offsets [%d, %d] (%s)\n",
            idx, (unsigned long long)s, (unsigned long long)e, a->dmin, a->dmax,
            a->rel_end ? "literal end" : "literal start");
    abort();
}

/* One pcre2_match of pattern idx from stream offset lo; with a limit, only
 * starts <= hi count. Returns EV_* with the match bounds. */
static int search(os_redactor *r, size_t idx, uint64_t lo, uint64_t hi, int limited, int partial,
                  uint64_t *s, uint64_t *e) {
    const os_pat *pt = &r->set->pats[idx];
    if (pt->jit && r->js == NULL) {
        r->js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
        /* Fail closed, as when a match overflows the JIT stack. */
        if (r->js == NULL)
            return EV_ERROR;
        pcre2_jit_stack_assign(r->mc, NULL, r->js);
    }
    if (pt->windowed)
        pcre2_set_offset_limit(r->mc, limited ? (PCRE2_SIZE)(hi - r->base) : PCRE2_UNSET);
    /* pcre2_jit_match skips the generic entry checks: same results. */
    int rc = (pt->jit ? pcre2_jit_match
                      : pcre2_match)(pt->code, r->subj, r->slen, (PCRE2_SIZE)(lo - r->base),
                                     partial ? PCRE2_PARTIAL_HARD : 0, r->md, r->mc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    if (rc >= 0) {
        *s = r->base + ov[0];
        *e = r->base + ov[1];
        /* Never zero-width (only \K could do that): always make progress. */
        if (*e <= *s)
            *e = *s + 1 <= r->base + r->slen ? *s + 1 : *s;
        if (r->set->debug && pt->anchor.found)
            debug_check(r, idx, *s, *e);
        return EV_FULL;
    }
    if (rc == PCRE2_ERROR_PARTIAL) {
        *s = r->base + ov[0];
        return EV_PARTIAL;
    }
    if (rc == PCRE2_ERROR_NOMATCH)
        return EV_NONE;
    return EV_ERROR; /* match/depth/heap limit, JIT stack: fail closed */
}

static void set_event(os_pstate *p, int ev, uint64_t s, uint64_t e, uint64_t lo, uint64_t end) {
    p->ev = ev;
    if (ev == EV_ERROR) {
        p->s = lo;
        p->e = end;
    } else {
        p->s = s;
        p->e = e;
        p->frontier = s;
    }
}

/* One search from lo to the end of the data (not limited): its event, or
 * none and the frontier at the end. */
static const os_pstate *search_rest(os_redactor *r, size_t idx, os_pstate *p, uint64_t lo,
                                    int partial) {
    uint64_t end = r->base + r->slen, s = 0, e = 0;
    int ev = search(r, idx, lo, 0, 0, partial, &s, &e);
    if (ev == EV_NONE)
        p->frontier = end;
    else
        set_event(p, ev, s, e, lo, end);
    return p;
}

/* The first q in [from, end - n] where subj[q, q + n) are all bytes of the
 * run class: 1 with q and the end of its run (*re), else 0. Each step looks
 * at the last byte of the window and back from it: a byte outside the class
 * moves the window past it, so most bytes are never read. */
static int find_run(const os_redactor *r, const os_pat *pt, size_t from, size_t n, size_t *q_out,
                    size_t *re_out) {
    const uint8_t *buf = r->subj, *set = pt->anchor.run_set;
    size_t end = r->slen, q = from;
    while (q + n <= end) {
        size_t j = q + n;
        while (j > q && os_anchor_set_has(set, buf[j - 1]))
            j--;
        if (j == q) {
            size_t re = q + n;
            re += os_scan_run(&r->set->scanner, &pt->run_class, buf + re, end - re, end - re);
            *q_out = q;
            *re_out = re;
            return 1;
        }
        q = j;
    }
    return 0;
}

/* next_event for a pattern searched where its run is (os_pat.run): each
 * run of run_min class bytes (found by find_run) gives the window of match
 * starts [q - run_dmax, re - run_min - run_dmin]; a run that reaches the
 * end of the data may go on, and in the last run_dmax + run_min bytes a
 * match may be partial before its run is complete: there the search is not
 * limited. */
static const os_pstate *run_event(os_redactor *r, size_t idx, os_pstate *p, int partial) {
    const os_pat *pt = &r->set->pats[idx];
    const os_anchor *a = &pt->anchor;
    uint64_t end = r->base + r->slen, s = 0, e = 0;
    uint64_t n = a->run_min, dmin = a->run_dmin, dmax = a->run_dmax;
    while (p->frontier < end) {
        uint64_t from = p->frontier + dmin;
        size_t q, re;
        if (from >= end || !find_run(r, pt, (size_t)(from - r->base), (size_t)n, &q, &re))
            break;
        uint64_t aq = r->base + q, are = r->base + re;
        uint64_t lo = aq > dmax ? aq - dmax : 0;
        if (lo < p->frontier)
            lo = p->frontier;
        if (are >= end)
            return search_rest(r, idx, p, lo, partial);
        uint64_t hi = are - n - dmin;
        int ev = search(r, idx, lo, hi, 1, partial, &s, &e);
        if (ev != EV_NONE) {
            set_event(p, ev, s, e, lo, end);
            return p;
        }
        p->frontier = hi + 1;
    }
    /* No complete run from the frontier on. */
    uint64_t tail = end > dmax + n ? end - dmax - n : 0;
    if (tail < p->frontier)
        tail = p->frontier;
    if (partial && tail < end)
        return search_rest(r, idx, p, tail, partial);
    if (p->frontier < end)
        p->frontier = end;
    return p;
}

/* The next event of pattern idx at or after the decision point. */
static const os_pstate *next_event(os_redactor *r, size_t idx, int partial) {
    os_pstate *p = &r->ps[idx];
    const os_pat *pt = &r->set->pats[idx];
    uint64_t end = r->base + r->slen, s = 0, e = 0;
    if (p->ev != EV_NONE) {
        if (p->s >= r->pos)
            return p;
        p->ev = EV_NONE; /* overlapped by an earlier match */
    }
    /* Everything before the decision point is decided: a match that ended
     * past this pattern's frontier moves it (the streaming trap). */
    if (p->frontier < r->pos)
        p->frontier = r->pos;
    if (pt->anchor.found) {
        int64_t dmin = pt->anchor.dmin, dmax = pt->anchor.dmax;
        int64_t front = (int64_t)p->frontier, iend = (int64_t)end;
        while (p->head < p->n) {
            /* Matches of this hit start in [lo, hi]. */
            int64_t t = (int64_t)p->t[p->head], hi = t - dmin, lo = t - dmax;
            if (hi < front) {
                p->head++;
                continue;
            }
            if (lo < front)
                lo = front;
            if (hi >= iend) {
                /* Only a lookbehind's literal, which precedes the match, has
                 * windows reaching the end of the data; so do all later hits.
                 * Starts at or after the end wait for more data. */
                if (lo >= iend) {
                    if (partial)
                        return p;
                    p->head = p->n;
                    break;
                }
                int ev = search(r, idx, (uint64_t)lo, 0, 0, partial, &s, &e);
                if (ev == EV_NONE) {
                    p->frontier = end;
                    if (partial)
                        return p; /* the hits stay for the next data */
                    p->head = p->n;
                    break;
                }
                set_event(p, ev, s, e, (uint64_t)lo, end);
                return p;
            }
            int ev = search(r, idx, (uint64_t)lo, (uint64_t)hi, 1, partial, &s, &e);
            if (ev == EV_NONE) {
                p->frontier = (uint64_t)hi + 1;
                front = hi + 1;
                p->head++;
                continue;
            }
            set_event(p, ev, s, e, (uint64_t)lo, end);
            return p;
        }
        if (!partial) {
            p->frontier = end;
            return p;
        }
        /* Near the end, a match's anchor may not have arrived yet. */
        uint64_t tail = end > pt->lookahead ? end - pt->lookahead : 0;
        if (tail < p->frontier)
            tail = p->frontier;
        if (tail >= end)
            return p;
        return search_rest(r, idx, p, tail, partial);
    }
    if (p->frontier >= end)
        return p;
    if (pt->run)
        return run_event(r, idx, p, partial);
    return search_rest(r, idx, p, p->frontier, partial);
}

/* After failing closed on [pos, end): no match starts before end any more.
 * The anchor hits stay: a lookbehind's literal in the replaced bytes still
 * announces a match after them (next_event drops the others). */
static void drop_all(os_redactor *r, uint64_t end) {
    for (size_t i = 0; i < r->set->n; i++) {
        os_pstate *p = &r->ps[i];
        p->ev = EV_NONE;
        if (p->frontier < end)
            p->frontier = end;
    }
}

/* How much of an outgrown match is kept to go on matching it (bytes): its
 * start (what tells its pattern where it is) and the last bytes suppressed
 * (a terminator may straddle two pieces of data). */
#define OS_STICKY_HEAD ((size_t)1024)
#define OS_STICKY_TAIL ((size_t)256)

/* The partial match of pattern idx at s outgrew max_hold at end: remember
 * its start so that the rest of it can be suppressed as it arrives. Without
 * memory for that, matching starts afresh after end (as it always did). */
static void sticky_start(os_redactor *r, size_t idx, uint64_t s, uint64_t end) {
    size_t ctx = r->set->context;
    if (ctx > s - r->base)
        ctx = (size_t)(s - r->base);
    size_t head = end - s < OS_STICKY_HEAD ? (size_t)(end - s) : OS_STICKY_HEAD;
    size_t tail = (size_t)(end - s) - head;
    if (tail > OS_STICKY_TAIL)
        tail = OS_STICKY_TAIL;
    if (grow(&r->stk, &r->stk_cap, ctx + head + tail))
        return;
    memcpy(r->stk, r->subj + (s - ctx - r->base), ctx + head);
    memcpy(r->stk + ctx + head, r->subj + (end - tail - r->base), tail);
    r->sticky = 1;
    r->stk_idx = idx;
    r->stk_ctx = ctx;
    r->stk_head = head;
    r->stk_tail = tail;
}

/* Match the outgrown pattern over its kept start, the last bytes suppressed
 * and the new data [pos, end): while it still matches partially, the new
 * data is suppressed (the one replacement written at the overflow covers
 * it); once the match ends, pos moves past it and matching goes on as
 * usual. Splicing out the middle of the match is exact for the repeats
 * secrets are made of (a character class run, up to a terminator). Returns
 * 1 while the match goes on. */
static int sticky_step(os_redactor *r, int partial) {
    uint64_t end = r->base + r->slen;
    size_t fixed = r->stk_ctx + r->stk_head + r->stk_tail;
    size_t fresh = (size_t)(end - r->pos);
    if (grow(&r->stk, &r->stk_cap, fixed + fresh)) {
        r->failed = -ENOMEM;
        return 1;
    }
    memcpy(r->stk + fixed, r->subj + (r->pos - r->base), fresh);
    const os_pat *pt = &r->set->pats[r->stk_idx];
    if (pt->windowed)
        pcre2_set_offset_limit(r->mc, PCRE2_UNSET);
    /* The interpreter: JIT code does not take PCRE2_ANCHORED at match time. */
    int rc = pcre2_match(pt->code, r->stk, fixed + fresh, r->stk_ctx,
                         PCRE2_ANCHORED | (partial ? PCRE2_PARTIAL_HARD : 0), r->md, r->mc);
    if (rc == PCRE2_ERROR_PARTIAL || (rc < 0 && rc != PCRE2_ERROR_NOMATCH)) {
        /* Still going (or the engine gave up: fail closed all the same). */
        size_t have = r->stk_tail + fresh;
        size_t keep = have < OS_STICKY_TAIL ? have : OS_STICKY_TAIL;
        memmove(r->stk + r->stk_ctx + r->stk_head, r->stk + fixed + fresh - keep, keep);
        r->stk_tail = keep;
        r->pos = end;
        drop_all(r, end);
        if (rc == PCRE2_ERROR_PARTIAL)
            return 1;
        r->sticky = 0;
        return 1;
    }
    r->sticky = 0;
    if (rc >= 0) {
        size_t e = pcre2_get_ovector_pointer(r->md)[1];
        if (e > fixed) {
            r->pos += e - fixed;
            drop_all(r, r->pos);
        }
    }
    return 0;
}

static void process(os_redactor *r, int partial) {
    const os_pattern_set *set = r->set;
    uint64_t end = r->base + r->slen;
    for (size_t i = 0; i < set->n; i++)
        if (r->ps[i].ev == EV_PARTIAL || r->ps[i].ev == EV_ERROR)
            r->ps[i].ev = EV_NONE;

    if (r->sticky && end > r->pos) {
        if (sticky_step(r, partial)) {
            r->seen_end = end; /* suppressed: no match starts before end */
            goto trim;
        }
        /* Literals inside the suppressed bytes belonged to the secret; one
         * that straddles pos may announce a match after it. */
        uint64_t ml = set->scanner.maxlen;
        uint64_t from = r->pos > ml ? r->pos - ml : 0;
        if (from > r->seen_end)
            r->seen_end = from < r->base ? r->base : from;
    }

    /* Literals ending after seen_end are new. A lookbehind's literal may
     * start before the decision point, so the scan starts up to one literal
     * length before seen_end, whatever pos is (the kept context covers it). */
    uint64_t from = r->base, ml = set->scanner.maxlen;
    if (r->seen_end + 1 > ml && r->seen_end + 1 - ml > from)
        from = r->seen_end + 1 - ml;
    if (from < end)
        os_scan(&set->scanner, r->subj, (size_t)(from - r->base), r->slen,
                (size_t)(r->seen_end - r->base), on_hit, r);
    r->seen_end = end;

    while (!r->failed) {
        const os_pstate *best = NULL;
        for (size_t i = 0; i < set->n; i++) {
            const os_pstate *p = next_event(r, i, partial);
            if (p->ev != EV_NONE && (!best || p->s < best->s))
                best = p;
        }
        if (!best) {
            emit_clear(r, end);
            break;
        }
        if (best->ev == EV_PARTIAL) {
            emit_clear(r, best->s);
            if (end - best->s > r->max_hold) {
                /* Fail closed: too much undecided data, and the rest of
                 * this match as it arrives (sticky). */
                emit(r, r->rep, r->rep_len);
                sticky_start(r, (size_t)(best - r->ps), best->s, end);
                r->pos = end;
                drop_all(r, end);
            }
            break;
        }
        uint64_t s = best->s, e = best->ev == EV_ERROR ? end : best->e;
        emit_clear(r, s);
        emit(r, r->rep, r->rep_len);
        r->pos = e;
    }

trim:
    /* Keep only what later matching can look at. */
    if (r->inplace)
        return;
    uint64_t keep = r->pos > set->context ? r->pos - set->context : 0;
    if (keep > r->base) {
        size_t drop = (size_t)(keep - r->base);
        memmove(r->buf, r->buf + drop, r->len - drop);
        r->len -= drop;
        r->base = keep;
    }
    r->subj = r->buf;
    r->slen = r->len;
}

static int append(os_redactor *r, const uint8_t *data, size_t n) {
    if (grow(&r->buf, &r->cap, r->len + n))
        return r->failed = -ENOMEM;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    r->subj = r->buf;
    r->slen = r->len;
    return 0;
}

/* Match data[done, len) in place: the caller's buffer becomes the subject
 * (base = data_off, the stream offset of data[0]); afterwards the undecided
 * tail and its context are copied into the owned buffer. The caller ensures
 * pos >= data_off + context, so every look-behind stays inside data. */
static int feed_inplace(os_redactor *r, const uint8_t *data, uint64_t data_off, size_t done,
                        size_t len) {
    r->inplace = 1;
    r->subj = data;
    r->base = data_off;
    while (done < len && !r->failed) {
        size_t n = len - done < OS_REDACT_PIECE ? len - done : OS_REDACT_PIECE;
        done += n;
        r->slen = done;
        process(r, 1);
    }
    r->inplace = 0;
    if (r->failed)
        return r->failed;
    uint64_t keep = r->pos - r->set->context;
    size_t from = (size_t)(keep - data_off);
    r->len = 0;
    r->base = keep;
    return append(r, data + from, len - from);
}

/* A large feed starts with a seam of this size, copied and matched after
 * the held bytes; the rest is matched in place when the seam decides
 * everything before it. */
#define OS_REDACT_SEAM ((size_t)4096)

int os_redactor_feed(os_redactor *r, const uint8_t *data, size_t len) {
    if (r->failed)
        return r->failed;
    if (r->finished)
        return -EINVAL;
    uint64_t data_off = r->base + r->slen;
    size_t done = 0;
    /* Most of a feed comes out again: size the output once. */
    if (!r->planning && grow_out(r, r->out_len + len + len / 16))
        return r->failed = -ENOMEM;
    while (done < len) {
        size_t n = len - done < OS_REDACT_PIECE ? len - done : OS_REDACT_PIECE;
        int seam = done == 0 && len > 4 * OS_REDACT_SEAM;
        if (seam)
            n = OS_REDACT_SEAM;
        if (append(r, data + done, n))
            return r->failed;
        done += n;
        process(r, 1);
        if (r->failed)
            return r->failed;
        if (seam && r->pos >= data_off + r->set->context)
            return feed_inplace(r, data, data_off, done, len);
    }
    return 0;
}

int os_redactor_finish(os_redactor *r) {
    if (r->failed)
        return r->failed;
    if (r->finished)
        return 0;
    process(r, 0);
    r->finished = 1;
    return r->failed;
}

int os_redactor_abort(os_redactor *r) {
    if (r->failed)
        return r->failed;
    if (r->finished)
        return 0;
    /* Everything before pos is decided already; what follows may be the
     * start of a secret whose end never came. */
    uint64_t end = r->base + r->slen;
    if (end > r->pos) {
        emit(r, r->rep, r->rep_len);
        r->pos = end;
        drop_all(r, end);
    }
    r->finished = 1;
    return r->failed;
}

const uint8_t *os_redactor_output(os_redactor *r, size_t *len) {
    *len = r->out_len - r->out_off;
    return r->out + r->out_off;
}

void os_redactor_consume(os_redactor *r, size_t n) {
    if (n > r->out_len - r->out_off)
        n = r->out_len - r->out_off;
    r->out_off += n;
    if (r->out_off == r->out_len) {
        r->out_off = r->out_len = 0;
        /* A huge feed's output buffer is not kept for the small ones after. */
        if (r->out_cap >= 4 * OS_REDACT_HUGE) {
            free(r->out);
            r->out = NULL;
            r->out_cap = 0;
        }
    }
}

size_t os_redactor_held(const os_redactor *r) { return (size_t)(r->base + r->slen - r->pos); }

/* ------------------------------------------------------------------------ */
/* Whole-buffer redaction                                                   */

/* The plan is a byte string of operations, each a tag and LEB128 numbers:
 * a run of the input (offset from the end of the previous run, length), the
 * replacement, or other bytes (their length; the bytes are in r->out, in
 * order). Its size is bounded by a few bytes per emitted piece. */
enum { PLAN_INPUT = 0, PLAN_REPLACEMENT = 1, PLAN_OTHER = 2 };

static void plan_put(os_redactor *r, const uint64_t *v, size_t nv, uint8_t tag) {
    if (r->failed)
        return;
    if (grow(&r->plan, &r->plan_cap, r->plan_len + 1 + 10 * nv)) {
        r->failed = -ENOMEM;
        return;
    }
    r->plan[r->plan_len++] = tag;
    for (size_t i = 0; i < nv; i++) {
        uint64_t x = v[i];
        while (x >= 0x80) {
            r->plan[r->plan_len++] = (uint8_t)(x | 0x80);
            x >>= 7;
        }
        r->plan[r->plan_len++] = (uint8_t)x;
    }
}

static void plan_flush(os_redactor *r) {
    if (r->plan_to == r->plan_from)
        return;
    uint64_t v[2] = {r->plan_from - r->plan_src, r->plan_to - r->plan_from};
    plan_put(r, v, 2, PLAN_INPUT);
    r->plan_out += (size_t)(r->plan_to - r->plan_from);
    r->plan_src = r->plan_from = r->plan_to;
}

static void plan_other(os_redactor *r, const uint8_t *p, size_t n) {
    plan_flush(r);
    if (p == r->rep && n == r->rep_len) {
        plan_put(r, NULL, 0, PLAN_REPLACEMENT);
    } else {
        uint64_t v = n;
        plan_put(r, &v, 1, PLAN_OTHER);
        if (!r->failed && grow(&r->out, &r->out_cap, r->out_len + n))
            r->failed = -ENOMEM;
        if (r->failed)
            return;
        memcpy(r->out + r->out_len, p, n);
        r->out_len += n;
    }
    r->plan_out += n;
}

static uint64_t plan_get(const uint8_t *plan, size_t *i) {
    uint64_t x = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint8_t b = plan[(*i)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return x;
    }
}

int os_redactor_plan(os_redactor *r, const uint8_t *data, size_t len, size_t *out_len) {
    *out_len = 0;
    if (r->failed)
        return r->failed;
    if (r->finished || r->base + r->slen != 0 || r->out_len != 0)
        return -EINVAL;
    r->planning = 1;
    r->plan_len = r->plan_out = 0;
    r->plan_src = r->plan_from = r->plan_to = 0;
    int rc = os_redactor_feed(r, data, len);
    if (rc == 0)
        rc = os_redactor_finish(r);
    if (rc == 0)
        plan_flush(r);
    if (rc == 0 && r->failed)
        rc = r->failed;
    r->planning = 0;
    if (rc)
        return rc;
    *out_len = r->plan_out;
    return 0;
}

void os_redactor_write_plan(os_redactor *r, const uint8_t *data, uint8_t *out) {
    /* A large output is fresh memory: huge pages save most of its faults. */
#ifdef MADV_HUGEPAGE
    if (r->plan_out >= 2 * OS_REDACT_HUGE) {
        uintptr_t a = ((uintptr_t)out + 4095) & ~(uintptr_t)4095;
        uintptr_t b = ((uintptr_t)out + r->plan_out) & ~(uintptr_t)4095;
        if (b > a)
            (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
    }
#endif
    uint64_t src = 0;
    size_t o = 0, other = 0;
    for (size_t i = 0; i < r->plan_len;) {
        uint8_t tag = r->plan[i++];
        if (tag == PLAN_INPUT) {
            src += plan_get(r->plan, &i);
            size_t n = (size_t)plan_get(r->plan, &i);
            memcpy(out + o, data + src, n);
            src += n;
            o += n;
        } else if (tag == PLAN_REPLACEMENT) {
            memcpy(out + o, r->rep, r->rep_len);
            o += r->rep_len;
        } else {
            size_t n = (size_t)plan_get(r->plan, &i);
            memcpy(out + o, r->out + other, n);
            other += n;
            o += n;
        }
    }
    free(r->plan);
    r->plan = NULL;
    r->plan_len = r->plan_cap = r->plan_out = 0;
    r->out_len = r->out_off = 0;
}
