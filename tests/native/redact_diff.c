/*
 * redact_diff.c: a C-level differential test of the redaction engine.
 *
 *   redact_diff PATTERN_FILE [SCANNER...]
 *
 * For every pattern set of PATTERN_FILE (format below) and every input of a
 * fixed, seeded set of generated inputs (the same bytes on every platform),
 * the output is computed with every scan loop the CPU has (or the SCANNERs
 * named; each is forced through OS_REDACT_SCAN and checked to be in use) and
 * with several chunkings: the whole-buffer path (os_redactor_plan), one
 * feed, fixed chunk sizes from 1 byte up, and seeded random chunk sizes.
 * All of them must be byte-identical; the program exits 1 otherwise. A set
 * with a small max_hold ("hold=N") fails closed where a match grows past it,
 * which depends on how the stream is cut: there only the scanners must agree,
 * chunking by chunking.
 *
 * On stdout, one line per (set, input, chunking): the output's length and
 * FNV-1a hash,
 * which do not depend on the platform; scripts/test-aarch64 compares these
 * lines between x86-64 and aarch64 (under qemu). Progress and the scanners
 * run go to stderr.
 *
 * PATTERN_FILE: "== NAME [ci] [hold=N]" starts a set (ci: ignore case;
 * hold: max_hold, default 65536); "p PATTERN" adds a pattern, "l LITERAL" a
 * literal (the rest of the line, verbatim; \xHH escapes a byte); lines
 * starting with '#' and empty lines are ignored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact_api.h"

#define MAX_ENTRIES 64
#define REP "[REDACTED]"

typedef struct {
    char name[64];
    int ci, hold_given;
    size_t hold;
    size_t n_pat, n_lit;
    char *pat[MAX_ENTRIES], *lit[MAX_ENTRIES];
    size_t pat_len[MAX_ENTRIES], lit_len[MAX_ENTRIES];
} pset;

static void die(const char *msg) {
    fprintf(stderr, "redact_diff: %s\n", msg);
    exit(2);
}

/* --- inputs: a portable PRNG, so that every platform sees the same bytes */

static uint64_t rng_state;
static uint64_t rnd(void) {
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return (size_t)(rnd() % n); }

static const char *const fragments[] = {
    "ghp_",
    "gho_",
    "github_pat_",
    "glpat-",
    "npm_",
    "pypi-AgEIcHlwaS5vcmc",
    "xoxb-",
    "xoxp-",
    "https://hooks.slack.com/services/T",
    "SG.",
    "key-",
    "sk_live_",
    "rk_test_",
    "SK",
    "sk",
    "shpat_",
    "AKIA",
    "ASIA",
    "AIza",
    "AccountKey=",
    "eyJ",
    ".eyJ",
    "Bearer ",
    "bearer ",
    "://",
    "postgres://",
    "user:",
    "@",
    "?access_token=",
    "&sig=",
    "&token=",
    "password",
    "password=",
    "passwd: ",
    "secret = ",
    "api_key=",
    "-----BEGIN ",
    "RSA ",
    "PRIVATE KEY-----",
    "token: ",
    "Authorization: ",
    "task",
    "desk",
    "ask",
    "key",
    "skip",
    "http://",
    "=",
    "&",
    "?",
    "\n",
    " ",
    "  ",
    "\t",
    "\r\n",
    ":",
    "/",
    ".",
    "-",
    "_",
    "==",
    "A",
    "a",
    "0",
};

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static uint8_t *make_input(size_t size, uint64_t seed) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        die("out of memory");
    rng_state = seed;
    size_t n = 0, nf = sizeof fragments / sizeof *fragments;
    while (n < size) {
        size_t k = below(10);
        char piece[160];
        size_t len = 0;
        if (k < 5) {
            const char *f = fragments[below(nf)];
            len = strlen(f);
            memcpy(piece, f, len);
        } else if (k < 8) {
            /* a token-like run: often exactly a format's length */
            static const size_t lens[] = {1, 3, 8, 16, 20, 24, 32, 35, 36, 40, 43, 50, 82, 86, 120};
            len = lens[below(sizeof lens / sizeof *lens)];
            for (size_t i = 0; i < len; i++)
                piece[i] = alnum[below(sizeof alnum - 1)];
        } else if (k < 9) {
            len = 1 + below(12);
            for (size_t i = 0; i < len; i++)
                piece[i] = "abcdef0123456789 ._-/+"[below(22)];
        } else {
            len = 1 + below(4);
            for (size_t i = 0; i < len; i++)
                piece[i] = (char)below(256);
        }
        if (len > size - n)
            len = size - n;
        memcpy(b + n, piece, len);
        n += len;
    }
    return b;
}

/* --- pattern file */

static size_t unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\\' && s[i + 1] == 'x' && s[i + 2] && s[i + 3]) {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            s[o++] = (char)strtoul(hex, NULL, 16);
            i += 3;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = 0;
    return o;
}

static size_t load_sets(const char *path, pset *sets, size_t max) {
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open the pattern file");
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0 || line[0] == '#')
            continue;
        if (strncmp(line, "== ", 3) == 0) {
            if (n == max)
                die("too many sets");
            pset *s = &sets[n++];
            memset(s, 0, sizeof *s);
            s->hold = 65536;
            char *save = NULL;
            char *tok = strtok_r(line + 3, " ", &save);
            snprintf(s->name, sizeof s->name, "%s", tok ? tok : "?");
            while ((tok = strtok_r(NULL, " ", &save))) {
                if (strcmp(tok, "ci") == 0)
                    s->ci = 1;
                else if (strncmp(tok, "hold=", 5) == 0)
                    s->hold = strtoul(tok + 5, NULL, 10), s->hold_given = 1;
            }
            continue;
        }
        if (n == 0 || len < 3 || line[1] != ' ' || (line[0] != 'p' && line[0] != 'l'))
            die("bad line in the pattern file");
        pset *s = &sets[n - 1];
        char *text = strdup(line + 2);
        if (!text)
            die("out of memory");
        size_t tl = unescape(text);
        if (line[0] == 'p') {
            if (s->n_pat == MAX_ENTRIES)
                die("too many patterns");
            s->pat[s->n_pat] = text;
            s->pat_len[s->n_pat++] = tl;
        } else {
            if (s->n_lit == MAX_ENTRIES)
                die("too many literals");
            s->lit[s->n_lit] = text;
            s->lit_len[s->n_lit++] = tl;
        }
    }
    fclose(f);
    return n;
}

/* --- running the engine */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} obuf;

static void take(os_redactor *r, obuf *o) {
    size_t n;
    const uint8_t *p = os_redactor_output(r, &n);
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 4096;
        o->p = realloc(o->p, o->cap);
        if (!o->p)
            die("out of memory");
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
    os_redactor_consume(r, n);
}

/* chunk: 0 = whole-buffer path, SIZE_MAX = random sizes, else fixed size */
static obuf run(const os_pattern_set *set, const pset *ps, const uint8_t *in, size_t len,
                size_t chunk, uint64_t seed) {
    obuf o = {NULL, 0, 0};
    os_redactor *r = os_redactor_new(set, (const uint8_t *)REP, strlen(REP), ps->hold);
    if (!r)
        die("os_redactor_new failed");
    if (chunk == 0) {
        size_t n = 0;
        if (os_redactor_plan(r, in, len, &n))
            die("os_redactor_plan failed");
        o.p = malloc(n ? n : 1);
        if (!o.p)
            die("out of memory");
        os_redactor_write_plan(r, in, o.p);
        o.n = o.cap = n;
    } else {
        rng_state = seed;
        for (size_t at = 0; at < len;) {
            size_t n = chunk == SIZE_MAX ? 1 + below(below(4) ? 300 : 70000) : chunk;
            if (n > len - at)
                n = len - at;
            if (os_redactor_feed(r, in + at, n))
                die("os_redactor_feed failed");
            take(r, &o);
            at += n;
        }
        if (os_redactor_finish(r))
            die("os_redactor_finish failed");
        take(r, &o);
    }
    os_redactor_free(r);
    return o;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int main(int argc, char **argv) {
    if (argc < 2)
        die("usage: redact_diff PATTERN_FILE [SCANNER...]");
    static pset sets[32];
    size_t nsets = load_sets(argv[1], sets, 32);
    const char *all[] = {"scalar", "ssse3", "avx2", "neon"};
    const char **scanners = argc > 2 ? (const char **)argv + 2 : all;
    size_t nscan = argc > 2 ? (size_t)argc - 2 : 4;
    /* Inputs: sizes around the engine's thresholds (the 4 KiB seam, the
     * in-place feed above 16 KiB, 256 KiB pieces). */
    static const size_t sizes[] = {0, 1, 100, 5000, 70000, 600000};
    static const size_t chunks[] = {0, 1, 7, 64, 4096, 65536, (size_t)-2, SIZE_MAX};
    const size_t nsizes = sizeof sizes / sizeof *sizes, nchunks = sizeof chunks / sizeof *chunks;
    int bad = 0;
    for (size_t si = 0; si < nsets; si++) {
        const pset *ps = &sets[si];
        os_pattern_set *set[8] = {NULL};
        const char *used[8] = {NULL};
        size_t nused = 0;
        for (size_t k = 0; k < nscan && nused < 8; k++) {
            setenv("OS_REDACT_SCAN", scanners[k], 1);
            os_pattern_set *s = NULL;
            size_t ei, eo;
            char msg[256];
            int rc = os_pattern_set_new((const char *const *)ps->pat, ps->pat_len, ps->n_pat,
                                        (const char *const *)ps->lit, ps->lit_len, ps->n_lit,
                                        ps->ci ? OS_REDACT_IGNORE_CASE : 0, &s, &ei, &eo, msg,
                                        sizeof msg);
            if (rc) {
                fprintf(stderr, "redact_diff: set %s entry %zu: %s (rc %d)\n", ps->name, ei, msg,
                        rc);
                return 2;
            }
            if (strcmp(os_pattern_set_scanner(s), scanners[k]) != 0) {
                if (argc > 2) {
                    fprintf(stderr, "redact_diff: scanner %s not available here\n", scanners[k]);
                    return 2;
                }
                os_pattern_set_free(s); /* this CPU does not have it */
                continue;
            }
            set[nused] = s;
            used[nused++] = scanners[k];
        }
        unsetenv("OS_REDACT_SCAN");
        if (si == 0) {
            fprintf(stderr, "redact_diff: scanners:");
            for (size_t k = 0; k < nused; k++)
                fprintf(stderr, " %s", used[k]);
            fprintf(stderr, "\n");
        }
        for (size_t ii = 0; ii < nsizes; ii++) {
            size_t len = sizes[ii];
            uint8_t *in = make_input(len, 1000 + ii);
            obuf whole = run(set[0], ps, in, len, 65536, 0);
            for (size_t c = 0; c < nchunks; c++) {
                size_t chunk = chunks[c];
                /* byte-at-a-time feeds only on the smaller inputs */
                if (chunk == 1 && len > 70000)
                    continue;
                if (chunk == (size_t)-2)
                    chunk = 1 + ii * 997; /* odd, input-dependent */
                obuf ref = run(set[0], ps, in, len, chunk, 77 + ii);
                for (size_t k = 0; k <= nused; k++) {
                    /* k == nused: this chunking against 64 KiB feeds */
                    if (k == nused && ps->hold_given)
                        break;
                    obuf o = k < nused ? run(set[k], ps, in, len, chunk, 77 + ii) : whole;
                    if (o.n != ref.n || (o.n && memcmp(o.p, ref.p, o.n) != 0)) {
                        size_t at = 0;
                        while (at < o.n && at < ref.n && o.p[at] == ref.p[at])
                            at++;
                        fprintf(stderr,
                                "redact_diff: MISMATCH set %s input %zu chunk %zu: %s gives "
                                "%zu bytes, %s %zu, first difference at %zu\n",
                                ps->name, len, chunk, k < nused ? used[k] : "64 KiB feeds", o.n,
                                used[0], ref.n, at);
                        bad = 1;
                    }
                    if (k < nused)
                        free(o.p);
                }
                printf("set %s input %zu chunk %zu output %zu fnv %016llx\n", ps->name, len, chunk,
                       ref.n, (unsigned long long)fnv1a(ref.p, ref.n));
                free(ref.p);
            }
            free(whole.p);
            free(in);
        }
        for (size_t k = 0; k < nused; k++)
            os_pattern_set_free(set[k]);
        fprintf(stderr, "redact_diff: set %s done\n", ps->name);
    }
    if (bad)
        fprintf(stderr, "redact_diff: FAILED\n");
    return bad;
}
