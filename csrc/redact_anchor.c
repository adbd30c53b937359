/*
 * redact_anchor.c: a small, conservative parser of the front of a regex that
 * finds literals every match must contain (see redact_anchor.h).
 *
 * The pattern is read as a sequence of items: literal sets (a run of literal
 * bytes, small classes and alternations of literals, expanded to at most
 * OS_ANCHOR_MAXV variants), single-byte classes with a repeat range, and
 * "gaps" (anything else whose width range is known, such as a group of
 * classes). Zero-width assertions (\b, ^, $, lookaheads, negative
 * lookbehinds) add nothing. A positive lookbehind is a zero-width item that
 * may carry literals ending at a known distance before its position (see
 * parse_alternatives): "(?<=password[=:] )" has "password" ending 2 or 3 bytes
 * before the point where the assertion stands. The
 * first construct the parser does not understand ends the sequence: items
 * before it still describe a prefix of every match, because a top-level
 * alternation is ruled out before parsing starts.
 */
#include <stdlib.h>
#include <string.h>

#include "redact_anchor.h"

enum { IT_LITS, IT_CLASS, IT_GAP, IT_LB };

typedef struct {
    int kind;
    uint32_t min, max; /* width range in bytes (IT_CLASS: the repeat range) */
    uint8_t set[32];   /* IT_CLASS: the byte class */
    int exact;         /* IT_CLASS: set is exactly the class (not a superset) */
    size_t n;          /* IT_LITS: variants */
    /* IT_LITS: the variants are only prefixes of what the item matches,
     * whose width is [min, max] ("A3T[A-Z0-9]" gives "a3t", width 4). */
    int trunc;
    uint8_t lit[OS_ANCHOR_MAXV][OS_ANCHOR_MAXLEN];
    uint8_t len[OS_ANCHOR_MAXV];
    /* IT_LB (zero width): the literals (lit/len/n) end at an offset in
     * [emin, emax] (<= 0) from the item's position; has_need: the byte after
     * each literal is in `need`. */
    int32_t emin, emax;
    int has_need;
    uint8_t need[32];
} item;

#define MAX_ITEMS 48
#define MAX_DEPTH 8

typedef struct {
    item it[MAX_ITEMS];
    size_t n;
} seq;

typedef struct {
    const uint8_t *p, *end;
    int ci;
    int depth;
} parser;

enum { R_END, R_ALT, R_CLOSE, R_STOP };

static uint32_t sat_add(uint32_t a, uint32_t b) {
    if (a == OS_ANCHOR_INF || b == OS_ANCHOR_INF || a + b < a || a + b >= OS_ANCHOR_INF)
        return OS_ANCHOR_INF;
    return a + b;
}

static uint32_t sat_mul(uint32_t a, uint32_t b) {
    if (a == 0 || b == 0)
        return 0;
    if (a == OS_ANCHOR_INF || b == OS_ANCHOR_INF)
        return OS_ANCHOR_INF;
    uint64_t m = (uint64_t)a * b;
    return m >= OS_ANCHOR_INF ? OS_ANCHOR_INF : (uint32_t)m;
}

static int is_alpha(uint8_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_alnum(uint8_t c) { return is_alpha(c) || is_digit(c); }
static uint8_t fold(uint8_t c) { return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c; }

static void set_add(uint8_t set[32], uint8_t c) { set[c >> 3] |= (uint8_t)(1u << (c & 7)); }

static void set_close_case(uint8_t set[32]) {
    for (int c = 'a'; c <= 'z'; c++) {
        if (os_anchor_set_has(set, (uint8_t)c) || os_anchor_set_has(set, (uint8_t)(c - 32))) {
            set_add(set, (uint8_t)c);
            set_add(set, (uint8_t)(c - 32));
        }
    }
}

static void set_named(uint8_t set[32], uint8_t kind) {
    uint8_t tmp[32] = {0};
    uint8_t k = (uint8_t)(kind | 0x20);
    for (int c = 0; c < 256; c++) {
        int in = 0;
        if (k == 'd')
            in = is_digit((uint8_t)c);
        else if (k == 'w')
            in = is_alnum((uint8_t)c) || c == '_';
        else if (k == 's')
            in = c == ' ' || (c >= 9 && c <= 13);
        if (in)
            set_add(tmp, (uint8_t)c);
    }
    int negate = kind >= 'A' && kind <= 'Z';
    for (int i = 0; i < 32; i++)
        set[i] |= negate ? (uint8_t)~tmp[i] : tmp[i];
}

static int hexval(uint8_t c) {
    if (is_digit(c))
        return c - '0';
    c = fold(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* After a backslash (outside or inside a class). Returns 1 with the byte(s)
 * added to set, 2 for a zero-width assertion, 0 when not understood. */
static int parse_escape(parser *P, uint8_t set[32], int in_class) {
    if (P->p >= P->end)
        return 0;
    uint8_t c = *P->p++;
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
        set_named(set, c);
        return 1;
    case 'b':
    case 'B':
    case 'A':
    case 'z':
    case 'Z':
    case 'G':
        return in_class ? 0 : 2;
    case 'n':
        set_add(set, '\n');
        return 1;
    case 't':
        set_add(set, '\t');
        return 1;
    case 'r':
        set_add(set, '\r');
        return 1;
    case 'f':
        set_add(set, '\f');
        return 1;
    case 'x': {
        if (P->end - P->p < 2)
            return 0;
        int h = hexval(P->p[0]), l = hexval(P->p[1]);
        if (h < 0 || l < 0)
            return 0;
        P->p += 2;
        set_add(set, (uint8_t)(h * 16 + l));
        return 1;
    }
    default:
        if (is_alnum(c) || c >= 0x80)
            return 0;
        set_add(set, c);
        return 1;
    }
}

/* At '[' : a bracketed class. Returns 0 when not understood. */
static int parse_class(parser *P, uint8_t set[32]) {
    uint8_t tmp[32] = {0};
    P->p++; /* '[' */
    int negate = 0;
    if (P->p < P->end && *P->p == '^') {
        negate = 1;
        P->p++;
    }
    int first = 1;
    for (;;) {
        if (P->p >= P->end)
            return 0;
        uint8_t c = *P->p;
        if (c == ']' && !first) {
            P->p++;
            break;
        }
        first = 0;
        if (c == '[' && P->p + 1 < P->end && (P->p[1] == ':' || P->p[1] == '.' || P->p[1] == '='))
            return 0;
        int lo;
        if (c == '\\') {
            uint8_t one[32] = {0};
            P->p++;
            if (!parse_escape(P, one, 1))
                return 0;
            int cnt = 0, only = -1;
            for (int b = 0; b < 256; b++)
                if (os_anchor_set_has(one, (uint8_t)b))
                    cnt++, only = b;
            for (int i = 0; i < 32; i++)
                tmp[i] |= one[i];
            if (cnt != 1)
                continue; /* \d and friends cannot start a range */
            lo = only;
        } else {
            P->p++;
            lo = c;
            set_add(tmp, c);
        }
        /* A range "lo-hi" unless the '-' is the last byte before ']'. */
        if (P->p + 1 < P->end && P->p[0] == '-' && P->p[1] != ']') {
            P->p++;
            int hi;
            if (*P->p == '\\') {
                uint8_t one[32] = {0};
                P->p++;
                if (!parse_escape(P, one, 1))
                    return 0;
                int cnt = 0;
                hi = -1;
                for (int b = 0; b < 256; b++)
                    if (os_anchor_set_has(one, (uint8_t)b))
                        cnt++, hi = b;
                if (cnt != 1)
                    return 0;
            } else {
                hi = *P->p++;
            }
            if (hi < lo)
                return 0;
            for (int b = lo; b <= hi; b++)
                set_add(tmp, (uint8_t)b);
        }
    }
    if (P->ci)
        set_close_case(tmp);
    for (int i = 0; i < 32; i++)
        set[i] |= negate ? (uint8_t)~tmp[i] : tmp[i];
    return 1;
}

/* Skip a parenthesised group whose '(' has been consumed; used for
 * look-arounds, whose content never adds width. */
static int skip_group(parser *P) {
    int depth = 1;
    while (P->p < P->end) {
        uint8_t c = *P->p++;
        if (c == '\\') {
            if (P->p >= P->end)
                return 0;
            P->p++;
        } else if (c == '[') {
            P->p--;
            uint8_t dummy[32] = {0};
            if (!parse_class(P, dummy))
                return 0;
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (--depth == 0)
                return 1;
        }
    }
    return 0;
}

static size_t lits_minlen(const item *it) {
    size_t m = SIZE_MAX;
    for (size_t i = 0; i < it->n; i++)
        if (it->len[i] < m)
            m = it->len[i];
    return m;
}

static size_t lits_maxlen(const item *it) {
    size_t m = 0;
    for (size_t i = 0; i < it->n; i++)
        if (it->len[i] > m)
            m = it->len[i];
    return m;
}

static int lit_eq(const uint8_t *a, size_t la, const uint8_t *b, size_t lb, int ci) {
    if (la != lb)
        return 0;
    for (size_t i = 0; i < la; i++)
        if ((ci ? fold(a[i]) : a[i]) != (ci ? fold(b[i]) : b[i]))
            return 0;
    return 1;
}

/* Add a variant unless present; 0 when the set would overflow. */
static int lits_add(item *it, const uint8_t *s, size_t len, int ci) {
    if (len > OS_ANCHOR_MAXLEN)
        return 0;
    for (size_t i = 0; i < it->n; i++)
        if (lit_eq(it->lit[i], it->len[i], s, len, ci))
            return 1;
    if (it->n == OS_ANCHOR_MAXV)
        return 0;
    memcpy(it->lit[it->n], s, len);
    it->len[it->n++] = (uint8_t)len;
    return 1;
}

/* The set a -> a x b (concatenation); 0 (a unchanged) when too big. */
static int lits_concat(item *a, const item *b, int ci) {
    item *r = calloc(1, sizeof *r);
    if (!r)
        return 0;
    r->kind = IT_LITS;
    r->n = 0;
    int ok = 1;
    for (size_t i = 0; ok && i < a->n; i++) {
        for (size_t j = 0; ok && j < b->n; j++) {
            uint8_t buf[2 * OS_ANCHOR_MAXLEN];
            size_t len = (size_t)a->len[i] + b->len[j];
            if (len > OS_ANCHOR_MAXLEN) {
                ok = 0;
                break;
            }
            memcpy(buf, a->lit[i], a->len[i]);
            memcpy(buf + a->len[i], b->lit[j], b->len[j]);
            ok = lits_add(r, buf, len, ci);
        }
    }
    if (ok) {
        r->min = (uint32_t)lits_minlen(r);
        r->max = (uint32_t)lits_maxlen(r);
        *a = *r;
    }
    free(r);
    return ok;
}

static void item_width(const item *it, uint32_t *mn, uint32_t *mx) {
    if (it->kind == IT_LITS && !it->trunc) {
        *mn = (uint32_t)lits_minlen(it);
        *mx = (uint32_t)lits_maxlen(it);
    } else {
        *mn = it->min;
        *mx = it->max;
    }
}

static int seq_push(seq *S, const item *it, int ci) {
    if (it->kind == IT_LITS && it->n == 1 && it->len[0] == 0)
        return 1; /* empty */
    if (it->kind == IT_LITS && !it->trunc && S->n > 0 && S->it[S->n - 1].kind == IT_LITS &&
        !S->it[S->n - 1].trunc && lits_concat(&S->it[S->n - 1], it, ci))
        return 1;
    if (S->n == MAX_ITEMS)
        return 0;
    S->it[S->n++] = *it;
    return 1;
}

/* How selective a literal set is: long literals and few variants. */
static int lit_score(const item *it) {
    size_t minl = lits_minlen(it);
    return (int)(minl > 8 ? 8 : minl) * 16 - (int)it->n;
}

/* Cut the variants of a lookbehind item longer than L bytes to their first
 * L bytes: fewer, equal-length variants. A cut variant ends earlier (emin
 * moves down by the most cut) and the byte after it is the one cut off,
 * which joins the need set. */
static void lb_cut(item *it, size_t L, int ci) {
    size_t maxl = lits_maxlen(it), minl = lits_minlen(it);
    if (maxl <= L)
        return;
    item r = *it;
    r.n = 0;
    for (size_t v = 0; v < it->n; v++) {
        size_t len = it->len[v];
        if (len > L)
            set_add(r.need, it->lit[v][L]);
        (void)lits_add(&r, it->lit[v], len > L ? L : len, ci); /* never more */
    }
    if (ci)
        set_close_case(r.need);
    r.has_need = it->has_need || minl > L;
    r.emin = it->emin - (int32_t)(maxl - L);
    if (minl > L)
        r.emax = it->emax - (int32_t)(minl - L);
    *it = r;
}

/* a := a or b, for two lookbehind items at the same position: both cut to
 * the shorter length (shorter still while there are too many variants), then
 * the union of the literal sets, of the offset ranges and of the need sets.
 * 0 (a unchanged) when even 2-byte prefixes are too many. */
static int lb_union(item *a, const item *b, int ci) {
    size_t la = lits_minlen(a), lb = lits_minlen(b), L = la < lb ? la : lb;
    item x, y;
    for (;; L--) {
        if (L < 2)
            return 0;
        x = *a;
        y = *b;
        lb_cut(&x, L, ci);
        lb_cut(&y, L, ci);
        int ok = 1;
        for (size_t i = 0; ok && i < y.n; i++)
            ok = lits_add(&x, y.lit[i], y.len[i], ci);
        if (ok)
            break;
    }
    if (y.emin < x.emin)
        x.emin = y.emin;
    if (y.emax > x.emax)
        x.emax = y.emax;
    if (x.has_need && y.has_need)
        for (int i = 0; i < 32; i++)
            x.need[i] |= y.need[i];
    else
        x.has_need = 0;
    *a = x;
    return 1;
}

/* The final literal set of a lookbehind anchor: shorter prefixes when they
 * are much fewer (one "token" and a check of the byte after it beat five
 * "token=", "token:"...: each literal costs the scanner). */
static void lb_settle(item *it, int ci) {
    size_t minl = lits_minlen(it);
    item best = *it;
    int best_sc = (int)(minl > 8 ? 8 : minl) * 16 - 16 * (int)it->n;
    for (size_t L = minl - 1; L >= 3 && L + 3 >= minl; L--) {
        item t = *it;
        lb_cut(&t, L, ci);
        int sc = (int)(L > 8 ? 8 : L) * 16 - 16 * (int)t.n;
        if (sc > best_sc)
            best = t, best_sc = sc;
    }
    *it = best;
}

/* Reduce an alternative to one item: its literal set (a prefix set when
 * more items follow the literals), a lookbehind item (when the alternative
 * is only zero-width assertions, the most selective of its lookbehinds: all
 * of them must hold), or a gap. */
static void seq_reduce(const seq *S, item *out) {
    if (S->n == 0) {
        memset(out, 0, sizeof *out);
        out->kind = IT_LITS;
        out->n = 1;
        out->len[0] = 0;
        return;
    }
    if (S->n == 1 && S->it[0].kind == IT_LITS) {
        *out = S->it[0];
        return;
    }
    uint32_t mn = 0, mx = 0;
    int lb = -1;
    for (size_t i = 0; i < S->n; i++) {
        uint32_t a, b;
        item_width(&S->it[i], &a, &b);
        mn = sat_add(mn, a);
        mx = sat_add(mx, b);
        if (S->it[i].kind == IT_LB && (lb < 0 || lit_score(&S->it[i]) > lit_score(&S->it[lb])))
            lb = (int)i;
    }
    if (mx == 0 && lb >= 0) {
        *out = S->it[lb];
        return;
    }
    if (S->it[0].kind == IT_LITS && lits_minlen(&S->it[0]) >= 1) {
        *out = S->it[0];
        out->trunc = 1;
        out->min = mn;
        out->max = mx;
        return;
    }
    memset(out, 0, sizeof *out);
    out->kind = IT_GAP;
    out->min = mn;
    out->max = mx;
}

static int parse_seq(parser *P, seq *S);

/* The literal a lookbehind alternative offers: its most selective literal
 * set whose distance to the alternative's end is known (every item after it
 * has a bounded width), as an IT_LB item. 0 when there is none. */
static int lb_candidate(const seq *S, int ci, item *out) {
    uint32_t amin = 0, amax = 0; /* width of the items after index k */
    int best = -1, best_score = 0;
    int32_t bmin = 0, bmax = 0;
    for (size_t k = S->n; k-- > 0;) {
        const item *it = &S->it[k];
        if (amax > 4096)
            break;
        if (it->kind == IT_LITS && !it->trunc && lits_minlen(it) >= 1) {
            int sc = lit_score(it);
            if (best < 0 || sc > best_score) {
                best = (int)k;
                best_score = sc;
                bmin = -(int32_t)amax;
                bmax = -(int32_t)amin;
            }
        }
        uint32_t a, b;
        item_width(it, &a, &b);
        amin = sat_add(amin, a);
        amax = sat_add(amax, b);
    }
    if (best < 0)
        return 0;
    const item *it = &S->it[best];
    memset(out, 0, sizeof *out);
    out->kind = IT_LB;
    out->n = it->n;
    memcpy(out->lit, it->lit, sizeof out->lit);
    memcpy(out->len, it->len, sizeof out->len);
    out->emin = bmin;
    out->emax = bmax;
    /* The byte after the literal, when the next item says what it is. */
    const item *nx = (size_t)best + 1 < S->n ? &S->it[best + 1] : NULL;
    if (nx && nx->kind == IT_CLASS && nx->min >= 1) {
        memcpy(out->need, nx->set, 32);
        out->has_need = 1;
    } else if (nx && nx->kind == IT_LITS && lits_minlen(nx) >= 1) {
        for (size_t i = 0; i < nx->n; i++)
            set_add(out->need, nx->lit[i][0]);
        if (ci)
            set_close_case(out->need);
        out->has_need = 1;
    }
    lb_cut(out, lits_minlen(out), ci);
    return 1;
}

/* The smallest and largest width of either of two items. */
static void width_union(const item *x, const item *y, uint32_t *mn, uint32_t *mx) {
    uint32_t a, b, c, d;
    item_width(x, &a, &b);
    item_width(y, &c, &d);
    *mn = a < c ? a : c;
    *mx = b > d ? b : d;
}

/* A group's alternative alt joins out (the alternatives before it): the
 * union of lookbehind literals or of literal prefixes where both are such,
 * else a gap as wide as either. */
static void group_merge(item *out, const item *alt, int ci) {
    uint32_t mn, mx;
    width_union(out, alt, &mn, &mx);
    if (out->kind == IT_LB && alt->kind == IT_LB) {
        if (lb_union(out, alt, ci))
            return;
    } else if (out->kind == IT_LITS && alt->kind == IT_LITS) {
        /* Prefixes of either alternative: the union, whose width covers
         * both when one of them is a prefix set. */
        item tmp = *out;
        int merged = 1;
        for (size_t i = 0; merged && i < alt->n; i++)
            merged = lits_add(&tmp, alt->lit[i], alt->len[i], ci);
        if (merged) {
            if (out->trunc || alt->trunc) {
                tmp.trunc = 1;
                tmp.min = mn;
                tmp.max = mx;
            }
            *out = tmp;
            return;
        }
    }
    memset(out, 0, sizeof *out);
    out->kind = IT_GAP;
    out->min = mn;
    out->max = mx;
}

/* The '(' and any prefix are consumed; parse alternatives up to ')'. In a
 * lookbehind (after "(?<=") every alternative must offer a literal
 * (lb_candidate) and the result is their union; 0 when not understood (the
 * caller then skips the group as a plain assertion). */
static int parse_alternatives(parser *P, item *out, int lookbehind) {
    if (P->depth >= MAX_DEPTH)
        return 0;
    seq *S = malloc(sizeof *S);
    if (!S)
        return 0;
    P->depth++;
    int first = 1, ok = 1;
    for (;;) {
        S->n = 0;
        int r = parse_seq(P, S);
        item alt;
        if (r == R_STOP || r == R_END || (lookbehind && !lb_candidate(S, P->ci, &alt))) {
            ok = 0;
            break;
        }
        if (!lookbehind)
            seq_reduce(S, &alt);
        if (first) {
            *out = alt;
            first = 0;
        } else if (!lookbehind) {
            group_merge(out, &alt, P->ci);
        } else if (!lb_union(out, &alt, P->ci)) {
            ok = 0;
            break;
        }
        if (r == R_CLOSE)
            break;
    }
    P->depth--;
    free(S);
    return ok;
}

/* A quantifier after an atom: 1 and the range, 0 for none, -1 for one not
 * understood. Lazy and possessive suffixes do not change the widths. */
static int parse_quant(parser *P, uint32_t *qmin, uint32_t *qmax) {
    if (P->p >= P->end)
        return 0;
    uint8_t c = *P->p;
    if (c == '?')
        *qmin = 0, *qmax = 1, P->p++;
    else if (c == '*')
        *qmin = 0, *qmax = OS_ANCHOR_INF, P->p++;
    else if (c == '+')
        *qmin = 1, *qmax = OS_ANCHOR_INF, P->p++;
    else if (c == '{') {
        const uint8_t *q = P->p + 1;
        uint32_t m = 0, n;
        if (q >= P->end || !is_digit(*q))
            return -1;
        while (q < P->end && is_digit(*q)) {
            m = m * 10 + (uint32_t)(*q++ - '0');
            if (m > 100000)
                return -1;
        }
        if (q < P->end && *q == '}')
            n = m;
        else if (q < P->end && *q == ',') {
            q++;
            if (q < P->end && *q == '}')
                n = OS_ANCHOR_INF;
            else {
                n = 0;
                if (q >= P->end || !is_digit(*q))
                    return -1;
                while (q < P->end && is_digit(*q)) {
                    n = n * 10 + (uint32_t)(*q++ - '0');
                    if (n > 100000)
                        return -1;
                }
                if (q >= P->end || *q != '}' || n < m)
                    return -1;
            }
        } else
            return -1;
        P->p = q + 1;
        *qmin = m;
        *qmax = n;
    } else
        return 0;
    if (P->p < P->end && (*P->p == '?' || *P->p == '+'))
        P->p++;
    return 1;
}

static int set_count(const uint8_t set[32], int ci) {
    int n = 0;
    for (int c = 0; c < 256; c++)
        if (os_anchor_set_has(set, (uint8_t)c) && !(ci && c >= 'A' && c <= 'Z'))
            n++;
    return n;
}

static void class_to_lits(const uint8_t set[32], int ci, item *out) {
    memset(out, 0, sizeof *out);
    out->kind = IT_LITS;
    for (int c = 0; c < 256; c++) {
        if (!os_anchor_set_has(set, (uint8_t)c) || (ci && c >= 'A' && c <= 'Z'))
            continue;
        uint8_t b = (uint8_t)c;
        lits_add(out, &b, 1, ci);
    }
    out->min = out->max = 1;
}

static int parse_seq(parser *P, seq *S) {
    for (;;) {
        if (P->p >= P->end)
            return R_END;
        uint8_t c = *P->p;
        if (c == '|') {
            P->p++;
            return R_ALT;
        }
        if (c == ')') {
            P->p++;
            return R_CLOSE;
        }
        item atom;
        memset(&atom, 0, sizeof atom);
        int zero = 0, is_class = 0, lb = 0;
        if (c == '^' || c == '$') {
            P->p++;
            zero = 1;
        } else if (c == '.') {
            P->p++;
            memset(atom.set, 0xff, 32); /* (?s) may let it match \n */
            is_class = 1;
        } else if (c == '[') {
            if (!parse_class(P, atom.set))
                return R_STOP;
            is_class = 1;
            atom.exact = 1;
        } else if (c == '\\') {
            P->p++;
            int r = parse_escape(P, atom.set, 0);
            if (r == 0)
                return R_STOP;
            if (r == 2)
                zero = 1;
            else {
                /* "\x41" matches "a" too when caseless. */
                if (P->ci)
                    set_close_case(atom.set);
                is_class = 1;
                atom.exact = 1;
            }
        } else if (c == '(') {
            P->p++;
            const uint8_t *q = P->p;
            if (q < P->end && *q == '?') {
                q++;
                if (q >= P->end)
                    return R_STOP;
                if (*q == ':' || *q == '>') {
                    P->p = q + 1;
                } else if (*q == '=' || *q == '!' ||
                           (*q == '<' && q + 1 < P->end && (q[1] == '=' || q[1] == '!'))) {
                    P->p = q + (*q == '<' ? 2 : 1);
                    zero = 1;
                    if (*q == '<' && q[1] == '=') {
                        const uint8_t *body = P->p;
                        if (parse_alternatives(P, &atom, 1))
                            lb = 1;
                        else
                            P->p = body;
                    }
                    if (!lb && !skip_group(P))
                        return R_STOP;
                } else if (*q == '<' || *q == '\'' ||
                           (*q == 'P' && q + 1 < P->end && q[1] == '<')) {
                    uint8_t close = *q == '\'' ? '\'' : '>';
                    while (q < P->end && *q != close)
                        q++;
                    if (q >= P->end)
                        return R_STOP;
                    P->p = q + 1;
                } else {
                    /* Inline flags "(?imsnU-imsnU)" or "(?flags:". */
                    while (q < P->end && (is_alpha(*q) || *q == '-' || *q == '^'))
                        q++;
                    if (q >= P->end)
                        return R_STOP;
                    if (*q == ')') {
                        P->p = q + 1;
                        zero = 1;
                    } else if (*q == ':') {
                        P->p = q + 1;
                    } else
                        return R_STOP;
                }
            }
            if (!zero) {
                if (!parse_alternatives(P, &atom, 0))
                    return R_STOP;
            }
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            return R_STOP;
        } else {
            P->p++;
            set_add(atom.set, c);
            if (P->ci)
                set_close_case(atom.set);
            is_class = 1;
            atom.exact = 1;
        }

        uint32_t qmin = 1, qmax = 1;
        int q = parse_quant(P, &qmin, &qmax);
        if (q < 0)
            return R_STOP;
        if (zero) {
            if (q > 0)
                return R_STOP;
            if (lb && !seq_push(S, &atom, P->ci))
                return R_STOP;
            continue;
        }
        item it;
        if (is_class) {
            int cnt = set_count(atom.set, P->ci);
            if (q == 0 && cnt <= 6 && atom.exact) {
                class_to_lits(atom.set, P->ci, &it);
            } else if (q > 0 && qmin == 0 && qmax == 1 && cnt <= 3 && atom.exact) {
                class_to_lits(atom.set, P->ci, &it);
                if (!lits_add(&it, (const uint8_t *)"", 0, P->ci))
                    return R_STOP;
            } else {
                it = atom;
                it.kind = IT_CLASS;
                it.min = qmin;
                it.max = qmax;
            }
        } else if ((atom.kind == IT_LITS || atom.kind == IT_LB) && q == 0) {
            it = atom;
        } else if (atom.kind == IT_LITS && !atom.trunc && qmin == 0 && qmax == 1 &&
                   lits_add(&atom, (const uint8_t *)"", 0, P->ci)) {
            it = atom;
        } else {
            uint32_t a, b;
            item_width(&atom, &a, &b);
            memset(&it, 0, sizeof it);
            it.kind = IT_GAP;
            it.min = sat_mul(a, qmin);
            it.max = sat_mul(b, qmax);
        }
        if (!seq_push(S, &it, P->ci))
            return R_STOP;
    }
}

/* Whole-pattern pre-scan. Returns -1 when the pattern uses syntax that makes
 * a textual parse unreliable (\Q, \K, comments, extended mode, verbs, POSIX
 * classes), else whether a top-level '|' exists; *ci is raised by any inline
 * flag group that turns caseless matching on. */
static int prescan(const uint8_t *p, size_t n, int *ci) {
    int depth = 0, alt = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return -1;
            uint8_t e = p[i + 1];
            if (e == 'Q' || e == 'E' || e == 'K' || (e == 'x' && i + 2 < n && p[i + 2] == '{'))
                return -1;
            i++;
        } else if (c == '[') {
            i++;
            if (i < n && p[i] == '^')
                i++;
            if (i < n && p[i] == ']')
                i++;
            while (i < n && p[i] != ']') {
                if (p[i] == '\\')
                    i++;
                else if (p[i] == '[' && i + 1 < n && p[i + 1] == ':')
                    return -1;
                i++;
            }
            if (i >= n)
                return -1;
        } else if (c == '(') {
            depth++;
            if (i + 1 < n && p[i + 1] == '*')
                return -1;
            if (i + 1 < n && p[i + 1] == '?') {
                size_t j = i + 2;
                if (j < n && (p[j] == '#' || p[j] == '|' || p[j] == '(' || p[j] == 'R' ||
                              p[j] == '&' || is_digit(p[j]) || p[j] == '+' || p[j] == 'C'))
                    return -1;
                if (j < n && p[j] == 'P' && j + 1 < n && p[j + 1] != '<')
                    return -1;
                int neg = 0;
                for (; j < n && (is_alpha(p[j]) || p[j] == '-' || p[j] == '^'); j++) {
                    if (p[j] == '-')
                        neg = 1;
                    if (p[j] == 'x')
                        return -1;
                    if (p[j] == 'i' && !neg)
                        *ci = 1;
                }
            }
        } else if (c == ')') {
            depth--;
        } else if (c == '|' && depth == 0) {
            alt = 1;
        }
    }
    return alt;
}

void os_anchor_extract(const uint8_t *pat, size_t len, int ci, os_anchor *out) {
    memset(out, 0, sizeof *out);
    int alt = prescan(pat, len, &ci);
    if (alt < 0)
        return;
    seq *S = malloc(sizeof *S);
    if (!S)
        return;
    S->n = 0;
    parser P = {pat, pat + len, ci, 0};
    if (alt) {
        /* Top-level alternation: only an alternation of literals anchors. */
        item whole;
        P.depth = 0;
        int r;
        memset(&whole, 0, sizeof whole);
        /* Reuse the group parser by treating the pattern end as ')'. */
        int first = 1, ok = 1;
        for (;;) {
            S->n = 0;
            r = parse_seq(&P, S);
            if (r == R_STOP || r == R_CLOSE) {
                ok = 0;
                break;
            }
            item a;
            seq_reduce(S, &a);
            if (a.kind != IT_LITS) {
                ok = 0;
                break;
            }
            if (first)
                whole = a, first = 0;
            else
                for (size_t i = 0; ok && i < a.n; i++)
                    ok = lits_add(&whole, a.lit[i], a.len[i], ci);
            whole.trunc |= a.trunc; /* nothing follows: the width does not matter */
            if (!ok || r == R_END)
                break;
        }
        S->n = 0;
        if (ok && !first)
            S->it[S->n++] = whole;
    } else {
        (void)parse_seq(&P, S); /* a STOP keeps the items before it */
    }

    uint32_t omin = 0, omax = 0;
    int best = -1, best_score = 0;
    int64_t bmin = 0, bmax = 0;
    for (size_t k = 0; k < S->n; k++) {
        const item *it = &S->it[k];
        int lits = (it->kind == IT_LITS || it->kind == IT_LB) && lits_minlen(it) >= 2;
        if (lits && omax != OS_ANCHOR_INF && omax <= 4096) {
            /* A lookbehind's literal ends within [emin, emax] of here. */
            int64_t lo = (int64_t)omin + (it->kind == IT_LB ? it->emin : 0);
            int64_t hi = (int64_t)omax + (it->kind == IT_LB ? it->emax : 0);
            int sc = lit_score(it) - (hi - lo > 64 ? 8 : 0);
            if (best < 0 || sc > best_score)
                best = (int)k, best_score = sc, bmin = lo, bmax = hi;
        }
        /* The longest class repeat at a bounded offset: a run every match
         * holds (used when no literal anchors the pattern). */
        if (it->kind == IT_CLASS && it->min >= OS_ANCHOR_RUN_MIN && omax <= 4096 &&
            (!out->has_run || it->min > out->run_min)) {
            out->has_run = 1;
            memcpy(out->run_set, it->set, 32);
            out->run_min = it->min < 4096 ? it->min : 4096;
            out->run_dmin = omin;
            out->run_dmax = omax;
        }
        uint32_t a, b;
        item_width(it, &a, &b);
        omin = sat_add(omin, a);
        omax = sat_add(omax, b);
    }
    if (best >= 0) {
        const item *it = &S->it[best];
        out->found = 1;
        out->ci = ci;
        out->n = it->n;
        memcpy(out->lit, it->lit, sizeof out->lit);
        memcpy(out->len, it->len, sizeof out->len);
        out->dmin = (int32_t)bmin;
        out->dmax = (int32_t)bmax;
        out->rel_end = it->kind == IT_LB;
        int follows = !it->trunc; /* the next items follow the literal */
        if (it->kind == IT_LB) {
            item lb = *it;
            lb_settle(&lb, ci);
            out->n = lb.n;
            memcpy(out->lit, lb.lit, sizeof out->lit);
            memcpy(out->len, lb.len, sizeof out->len);
            out->dmin = (int32_t)(bmin + (lb.emin - it->emin));
            out->dmax = (int32_t)(bmax + (lb.emax - it->emax));
            /* The byte check comes from inside the lookbehind, or, when the
             * literal ends right at the assertion, from what follows it. */
            out->has_need = lb.has_need;
            memcpy(out->need, lb.need, 32);
            follows = !lb.has_need && lb.emin == 0 && lb.emax == 0;
        }
        /* The byte check after the literal (see os_anchor); after a prefix
         * set, the rest of its item comes first. */
        size_t k = (size_t)best + 1;
        const item *nx = k < S->n && follows ? &S->it[k] : NULL;
        const item *nx2 = k + 1 < S->n ? &S->it[k + 1] : NULL;
        const item *needer = NULL;
        if (nx && nx->kind == IT_CLASS && nx->exact && nx2) {
            memcpy(out->skip, nx->set, 32);
            out->skip_min = nx->min;
            out->skip_max = nx->max;
            out->has_skip = 1;
            needer = nx2;
        } else if (nx) {
            needer = nx;
        }
        if (needer && needer->kind == IT_CLASS && needer->min >= 1) {
            memcpy(out->need, needer->set, 32);
            out->has_need = 1;
            /* The class repeats at least min times (its set is exact or a
             * superset): that many need bytes follow in a row. */
            out->need_run = needer->min < 255 ? needer->min : 255;
        } else if (needer && needer->kind == IT_LITS && lits_minlen(needer) >= 1) {
            for (size_t i = 0; i < needer->n; i++)
                set_add(out->need, needer->lit[i][0]);
            if (ci)
                set_close_case(out->need);
            out->has_need = 1;
        }
        if (out->has_skip) {
            int disjoint = out->has_need;
            for (int i = 0; disjoint && i < 32; i++)
                if (out->skip[i] & out->need[i])
                    disjoint = 0;
            if (!disjoint)
                out->has_skip = out->has_need = 0;
        }
    }
    free(S);
}

int os_pattern_min_width(const uint8_t *pat, size_t len, int ci, uint32_t *out) {
    int alt = prescan(pat, len, &ci);
    if (alt < 0)
        return 0;
    seq *S = malloc(sizeof *S);
    if (!S)
        return 0;
    parser P = {pat, pat + len, ci, 0};
    uint32_t best = OS_ANCHOR_INF;
    int ok = 1;
    for (;;) {
        S->n = 0;
        int r = parse_seq(&P, S);
        if (r == R_STOP || r == R_CLOSE) {
            ok = 0;
            break;
        }
        uint32_t w = 0;
        for (size_t k = 0; k < S->n; k++) {
            uint32_t a, b;
            item_width(&S->it[k], &a, &b);
            w = sat_add(w, a);
        }
        if (w < best)
            best = w;
        if (r == R_END)
            break;
    }
    free(S);
    if (ok)
        *out = best;
    return ok;
}
