/*
 * redact_scan.c: the multi-literal scanner (see redact_scan.h).
 *
 * The SIMD loops use target attributes and are chosen at run time, because
 * the extension is built for the baseline ISA (x86-64: SSE2 only). On
 * aarch64, Advanced SIMD (NEON) is part of the baseline: it is always there.
 * The scalar loop is the fallback for every other CPU.
 *
 * OS_REDACT_SCAN=scalar|ssse3|avx2|neon forces one loop when the CPU has it
 * (the differential tests run every one of them); OS_REDACT_SCALAR_SCAN=1
 * is the older spelling of OS_REDACT_SCAN=scalar.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "redact_scan.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OS_SCAN_X86 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define OS_SCAN_NEON 1
#endif

enum { IMPL_SCALAR, IMPL_SSSE3, IMPL_AVX2, IMPL_NEON, IMPL_COUNT };
static const char *const impl_names[IMPL_COUNT] = {"scalar", "ssse3", "avx2", "neon"};

static int impl_supported(int impl) {
    switch (impl) {
    case IMPL_SCALAR:
        return 1;
#ifdef OS_SCAN_X86
    case IMPL_SSSE3:
        __builtin_cpu_init();
        return __builtin_cpu_supports("ssse3");
    case IMPL_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
#endif
#ifdef OS_SCAN_NEON
    case IMPL_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

/* The fastest loop this CPU has, unless the environment forces another. */
static int choose_impl(void) {
    const char *force = getenv("OS_REDACT_SCAN");
    if (force && *force)
        for (int i = 0; i < IMPL_COUNT; i++)
            if (strcmp(force, impl_names[i]) == 0 && impl_supported(i))
                return i;
    const char *scalar = getenv("OS_REDACT_SCALAR_SCAN");
    if (scalar && *scalar && strcmp(scalar, "0") != 0)
        return IMPL_SCALAR;
    static const int order[] = {IMPL_AVX2, IMPL_NEON, IMPL_SSSE3};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (impl_supported(order[i]))
            return order[i];
    return IMPL_SCALAR;
}

const char *os_scanner_impl_name(const os_scanner *sc) { return impl_names[sc->impl]; }

/* Rough byte frequencies in log text (relative). */
static double byte_freq(uint8_t c) {
    /* English letter frequencies, per mille x 10. */
    static const unsigned short letter[26] = {817, 149, 278, 425, 1270, 223, 202, 609, 697,
                                              15,  77,  403, 241, 675,  751, 193, 10,  599,
                                              633, 906, 276, 98,  236,  15,  197, 7};
    if (c == ' ')
        return 2000;
    if (c >= 'a' && c <= 'z')
        return letter[c - 'a'];
    if (c >= 'A' && c <= 'Z')
        return letter[c - 'A'] / 4.0 + 20;
    if (c >= '0' && c <= '9')
        return 500;
    switch (c) {
    case ':':
    case '-':
    case '.':
        return 400;
    case '/':
    case '\n':
        return 300;
    case '=':
    case '"':
        return 250;
    case ',':
        return 150;
    case '_':
        return 120;
    case '[':
    case ']':
        return 100;
    case '(':
    case ')':
    case '{':
    case '}':
        return 60;
    case '\'':
        return 40;
    default:
        return c >= 0x80 ? 5 : 20;
    }
}

static double lit_byte_freq(const os_scan_lit *l, size_t i) {
    uint8_t c = l->bytes[i];
    if (l->ci && c >= 'a' && c <= 'z')
        return byte_freq(c) + byte_freq((uint8_t)(c - 32));
    return byte_freq(c);
}

/* Words so common in logs that a fingerprint inside one of them would fire
 * all the time, whatever its letters' frequencies say. */
static const char *const common_words[] = {
    "token",    "secret", "password", "passwd",  "key=",     "https",   "://",     "www",
    ".com",     "user",   "session",  "error",   "info",     "debug",   "warn",    "request",
    "response", "status", "api",      "id=",     "the",      "and",     "ing",     "ion",
    "tion",     "ent",    "for",      "com",     "org",      "net",     "json",    "time",
    "access",   "auth",   "ers",      "ter",     "con",      "pro",     "res",     "begin",
    "end",      "---",    "worker",   "work",    "server",   "service", "client",  "connect",
    "message",  "failed", "success",  "started", "complete", "retry",   "timeout", "cache",
    "query",    "host",   "port",     "path",    "name",     "data",    "value",   "default",
    "config",   "update", "delete",   "create",  "load",     "true",    "false",   "null",
    "event",    "trace",  "commit",   "deploy",  "ms ",      "ok",      NULL};

static double window_cost(const os_scan_lit *l, size_t k) {
    double cost = 1.0; /* proportional to the expected frequency */
    char w[4] = {0};
    for (size_t j = 0; j < l->fp_len; j++) {
        cost *= lit_byte_freq(l, k + j);
        uint8_t c = l->bytes[k + j];
        w[j] = (char)((c >= 'A' && c <= 'Z') ? (c | 0x20) : c);
    }
    for (size_t i = 0; common_words[i]; i++)
        if (strstr(common_words[i], w))
            cost *= 50.0;
    return cost;
}

static inline uint8_t fold_byte(uint8_t c) {
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

/* A hash of 3 bytes that ignores ASCII case (bit 5 is forced on, which
 * merely adds harmless collisions between some punctuation pairs). */
static inline unsigned fp_hash(const uint8_t *p) {
    uint32_t v = ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16) | 0x202020u;
    return (v * 2654435761u) >> 20;
}

/* The byte set a literal accepts at fingerprint position j. */
static void fp_set(const os_scan_lit *l, size_t j, uint8_t set[32]) {
    memset(set, 0, 32);
    if (j < l->fp_len) {
        uint8_t c = l->bytes[l->fp_off + j];
        set[c >> 3] |= (uint8_t)(1u << (c & 7));
        if (l->ci && c >= 'a' && c <= 'z') {
            c = (uint8_t)(c - 32);
            set[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
    } else if (j == l->fp_len && l->fp_off + l->fp_len == l->len && l->has_next) {
        memcpy(set, l->next, 32);
    } else {
        memset(set, 0xff, 32);
    }
}

/* Nibble masks of a bucket: which low / high nibbles are accepted at each
 * of the 3 positions. A byte passes when both of its nibbles do. */
typedef struct {
    uint16_t lo[3], hi[3];
    size_t n;
} bucket_masks;

static double bucket_cost(const bucket_masks *b, const double prob[256]) {
    if (b->n == 0)
        return 0.0;
    double fp = 1.0;
    for (size_t j = 0; j < 3; j++) {
        double p = 0.0;
        for (int c = 0; c < 256; c++)
            if ((b->lo[j] >> (c & 15) & 1) && (b->hi[j] >> (c >> 4) & 1))
                p += prob[c];
        fp *= p;
    }
    /* A candidate costs a fixed part plus one compare per literal. */
    return fp * (2.0 + (double)b->n);
}

static void bucket_add(bucket_masks *b, const os_scan_lit *l) {
    for (size_t j = 0; j < 3; j++) {
        uint8_t set[32];
        fp_set(l, j, set);
        for (int c = 0; c < 256; c++)
            if (set[c >> 3] >> (c & 7) & 1) {
                b->lo[j] |= (uint16_t)(1u << (c & 15));
                b->hi[j] |= (uint16_t)(1u << (c >> 4));
            }
    }
    b->n++;
}

typedef struct {
    os_scan_lit lit;
    double own;
    int bucket;
} lit_order;

static int by_own_desc(const void *x, const void *y) {
    double a = ((const lit_order *)x)->own, b = ((const lit_order *)y)->own;
    return a < b ? 1 : a > b ? -1 : 0;
}

static int by_bucket(const void *x, const void *y) {
    return ((const lit_order *)x)->bucket - ((const lit_order *)y)->bucket;
}

int os_scanner_init(os_scanner *sc, const os_scan_lit *lits, size_t n) {
    memset(sc, 0, sizeof *sc);
    sc->lits = malloc((n ? n : 1) * sizeof *sc->lits);
    lit_order *ord = malloc((n ? n : 1) * sizeof *ord);
    if (!sc->lits || !ord) {
        free(sc->lits);
        free(ord);
        sc->lits = NULL;
        return -ENOMEM;
    }
    sc->nlits = n;
    double prob[256], total = 0.0;
    for (int c = 0; c < 256; c++)
        total += byte_freq((uint8_t)c);
    for (int c = 0; c < 256; c++)
        prob[c] = byte_freq((uint8_t)c) / total;
    for (size_t i = 0; i < n; i++) {
        os_scan_lit *l = &ord[i].lit;
        *l = lits[i];
        if (l->ci)
            for (size_t j = 0; j < l->len; j++)
                if (l->bytes[j] >= 'A' && l->bytes[j] <= 'Z')
                    l->bytes[j] |= 0x20;
        if (l->len > sc->maxlen)
            sc->maxlen = l->len;
        l->fp_len = l->len < 3 ? l->len : 3;
        double best = 0.0;
        for (size_t k = 0; k + l->fp_len <= l->len; k++) {
            double cost = window_cost(l, k);
            if (k == 0 || cost < best)
                best = cost, l->fp_off = (uint8_t)k;
        }
        l->pm = l->pv = 0;
        for (size_t j = 0; j < 8 && j < l->len; j++) {
            uint8_t c = l->bytes[j];
            uint8_t m = (l->ci && c >= 'a' && c <= 'z') ? 0xdf : 0xff;
            l->pm |= (uint64_t)m << (8 * j);
            l->pv |= (uint64_t)(c & m) << (8 * j);
        }
        bucket_masks alone = {{0}, {0}, 0};
        bucket_add(&alone, l);
        ord[i].own = bucket_cost(&alone, prob);
    }
    /* Greedy bucket assignment: the noisiest literals first, each into the
     * bucket where it adds the least expected verification work. */
    qsort(ord, n, sizeof *ord, by_own_desc);
    bucket_masks bm[8];
    memset(bm, 0, sizeof bm);
    for (size_t i = 0; i < n; i++) {
        int best_b = 0;
        double best_delta = 0.0;
        for (int b = 0; b < 8; b++) {
            bucket_masks t = bm[b];
            bucket_add(&t, &ord[i].lit);
            double delta = bucket_cost(&t, prob) - bucket_cost(&bm[b], prob);
            if (b == 0 || delta < best_delta)
                best_b = b, best_delta = delta;
        }
        bucket_add(&bm[best_b], &ord[i].lit);
        ord[i].bucket = best_b;
    }
    qsort(ord, n, sizeof *ord, by_bucket);
    size_t k = 0;
    for (int b = 0; b < 8; b++) {
        sc->bstart[b] = (uint32_t)k;
        while (k < n && ord[k].bucket == b)
            sc->lits[k] = ord[k].lit, k++;
    }
    sc->bstart[8] = (uint32_t)k;
    free(ord);
    for (int b = 0; b < 8; b++)
        for (size_t i = sc->bstart[b]; i < sc->bstart[b + 1]; i++) {
            const os_scan_lit *l = &sc->lits[i];
            uint64_t bit = 1ull << (i & 63);
            for (unsigned m = 0; m < 256; m++)
                if (m >> b & 1)
                    sc->mask_lits[m] |= bit;
            if (l->fp_len < 3)
                sc->short_mask |= bit;
            else
                sc->fp_table[fp_hash(l->bytes + l->fp_off)] |= bit;
        }
    for (int b = 0; b < 8; b++) {
        uint8_t bit = (uint8_t)(1u << b);
        for (size_t i = sc->bstart[b]; i < sc->bstart[b + 1]; i++) {
            for (size_t j = 0; j < 3; j++) {
                uint8_t set[32];
                fp_set(&sc->lits[i], j, set);
                for (int c = 0; c < 256; c++)
                    if (set[c >> 3] >> (c & 7) & 1) {
                        sc->lo[j][c & 15] |= bit;
                        sc->hi[j][c >> 4] |= bit;
                        sc->exact[j][c] |= bit;
                    }
            }
        }
    }
    sc->impl = choose_impl();
    return 0;
}

void os_scanner_free(os_scanner *sc) {
    free(sc->lits);
    sc->lits = NULL;
}

static int lit_at(const os_scan_lit *l, const uint8_t *p) {
    if (!l->ci)
        return memcmp(l->bytes, p, l->len) == 0;
    for (size_t i = 0; i < l->len; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != l->bytes[i])
            return 0;
    }
    return 1;
}

typedef struct {
    const os_scanner *sc;
    const uint8_t *buf;
    size_t from, end, seen_end;
    os_scan_hit_fn hit;
    void *ctx;
} scan_job;

/* The literals of a candidate position whose fingerprint hash matches. */
__attribute__((noinline)) static void verify_lits(const scan_job *J, size_t c, uint64_t lm) {
    const os_scanner *sc = J->sc;
    while (lm) {
        unsigned bit = (unsigned)__builtin_ctzll(lm);
        lm &= lm - 1;
        for (size_t i = bit; i < sc->nlits; i += 64) {
            const os_scan_lit *l = &sc->lits[i];
            if (c < (size_t)l->fp_off + J->from)
                continue;
            size_t t = c - l->fp_off;
            if (t + l->len > J->end || t + l->len <= J->seen_end)
                continue;
            if (t + 8 <= J->end) {
                uint64_t w;
                memcpy(&w, J->buf + t, 8);
                if ((w & l->pm) != l->pv)
                    continue;
                if (l->len <= 8) {
                    J->hit(J->ctx, l, t);
                    continue;
                }
            }
            if (lit_at(l, J->buf + t))
                J->hit(J->ctx, l, t);
        }
    }
}

/* A position the nibble filter let through: most are rejected here by the
 * exact fingerprint hash, at a few instructions each. */
static inline void verify(const scan_job *J, size_t c, unsigned mask) {
    const os_scanner *sc = J->sc;
    uint64_t lm = sc->mask_lits[mask];
    if (c + 3 <= J->end)
        lm &= sc->fp_table[fp_hash(J->buf + c)] | sc->short_mask;
    if (lm)
        verify_lits(J, c, lm);
}

/* The last positions, whose fingerprint runs past the end (any byte may
 * follow there): the nibble masks byte by byte. */
static void scan_tail(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    for (; c < J->end; c++) {
        unsigned m = 0xff;
        for (size_t j = 0; j < 3 && m; j++) {
            if (c + j >= J->end)
                break; /* past the end: any byte may follow */
            uint8_t b = p[c + j];
            m &= sc->lo[j][b & 15] & sc->hi[j][b >> 4];
        }
        if (m)
            verify(J, c, m);
    }
}

/* The loops below find candidates a block at a time: the filter marks the
 * positions whose 3 bytes pass (a bit per position in words[], their bucket
 * bits in mv[]) without branching on them, then verify_block checks the
 * marked positions in a separate scalar loop. Kept apart, the filter keeps
 * its tables in registers and the checks run without vector state to save;
 * the fingerprint hash is computed for every candidate without a branch and
 * only the positions that pass it (a compacted list) go on to the literal
 * compares. Every position of a block has its 3 fingerprint bytes in the
 * data (p + 3 <= end). */
#define SCAN_BLOCK 512

typedef struct {
    uint32_t words[SCAN_BLOCK / 32];
    uint8_t mv[SCAN_BLOCK];
} scan_marks;

static void verify_block(const scan_job *J, size_t base, const scan_marks *M, size_t nbytes) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf + base;
    uint16_t off[SCAN_BLOCK];
    uint64_t lms[SCAN_BLOCK];
    size_t n = 0;
    for (size_t w = 0; w < nbytes / 32; w++) {
        uint32_t bits = M->words[w];
        while (bits) {
            unsigned i = (unsigned)(w * 32) + (unsigned)__builtin_ctz(bits);
            bits &= bits - 1;
            uint64_t lm = sc->mask_lits[M->mv[i]] & (sc->fp_table[fp_hash(p + i)] | sc->short_mask);
            off[n] = (uint16_t)i;
            lms[n] = lm;
            n += lm != 0;
        }
    }
    for (size_t k = 0; k < n; k++)
        verify_lits(J, base + off[k], lms[k]);
}

/* Without SIMD: the exact per-byte bucket tables (a subset of what the
 * nibble masks let through), 8 positions per step without a branch, and one
 * test of their union. A candidate is then the same as for the SIMD loops:
 * the verification sees the same bucket bits or fewer, and decides exactly. */
static size_t scan_scalar(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    const uint8_t *t0 = sc->exact[0], *t1 = sc->exact[1], *t2 = sc->exact[2];
    scan_marks M;
    while (c + 8 + 2 <= J->end) {
        size_t k = 0;
        unsigned any_block = 0;
        memset(M.words, 0, sizeof M.words);
        for (; k < SCAN_BLOCK && c + k + 8 + 2 <= J->end; k += 8) {
            const uint8_t *q = p + c + k;
            uint8_t m[8];
            unsigned any = 0;
            for (int i = 0; i < 8; i++) {
                m[i] = (uint8_t)(t0[q[i]] & t1[q[i + 1]] & t2[q[i + 2]]);
                any |= m[i];
            }
            if (__builtin_expect(any != 0, 0)) {
                unsigned bits = 0;
                for (int i = 0; i < 8; i++)
                    bits |= (unsigned)(m[i] != 0) << i;
                memcpy(M.mv + k, m, 8);
                M.words[k / 32] |= bits << (k % 32);
                any_block = 1;
            }
        }
        if (any_block)
            verify_block(J, c, &M, (k + 31) / 32 * 32);
        c += k;
    }
    return c;
}

#ifdef OS_SCAN_X86
__attribute__((target("ssse3"))) static size_t scan_ssse3(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    const __m128i nib = _mm_set1_epi8(0x0f), zero = _mm_setzero_si128();
    __m128i lo[3], hi[3];
    for (int j = 0; j < 3; j++) {
        lo[j] = _mm_loadu_si128((const __m128i *)sc->lo[j]);
        hi[j] = _mm_loadu_si128((const __m128i *)sc->hi[j]);
    }
    scan_marks M;
    while (c + 32 + 2 <= J->end) {
        size_t k = 0;
        uint32_t any = 0;
        for (; k < SCAN_BLOCK && c + k + 32 + 2 <= J->end; k += 32) {
            uint32_t word = 0;
            for (int half = 0; half < 2; half++) {
                const uint8_t *q = p + c + k + 16 * (size_t)half;
                __m128i m = _mm_set1_epi8((char)0xff);
                for (int j = 0; j < 3; j++) {
                    __m128i v = _mm_loadu_si128((const __m128i *)(q + j));
                    m = _mm_and_si128(m, _mm_shuffle_epi8(lo[j], _mm_and_si128(v, nib)));
                    m = _mm_and_si128(
                        m, _mm_shuffle_epi8(hi[j], _mm_and_si128(_mm_srli_epi16(v, 4), nib)));
                }
                _mm_storeu_si128((__m128i *)(M.mv + k + 16 * (size_t)half), m);
                word |= (~(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(m, zero)) & 0xffffu)
                        << (16 * half);
            }
            M.words[k / 32] = word;
            any |= word;
        }
        if (any)
            verify_block(J, c, &M, k);
        c += k;
    }
    return c;
}

__attribute__((target("avx2"))) static size_t scan_avx2(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    const __m256i nib = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i lo[3], hi[3];
    for (int j = 0; j < 3; j++) {
        lo[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sc->lo[j]));
        hi[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sc->hi[j]));
    }
    scan_marks M;
    while (c + 32 + 2 <= J->end) {
        size_t k = 0;
        uint32_t any = 0;
        for (; k < SCAN_BLOCK && c + k + 32 + 2 <= J->end; k += 32) {
            const uint8_t *q = p + c + k;
            __m256i v0 = _mm256_loadu_si256((const __m256i *)q);
            __m256i v1 = _mm256_loadu_si256((const __m256i *)(q + 1));
            __m256i v2 = _mm256_loadu_si256((const __m256i *)(q + 2));
            __m256i m = _mm256_and_si256(
                _mm256_shuffle_epi8(lo[0], _mm256_and_si256(v0, nib)),
                _mm256_shuffle_epi8(hi[0], _mm256_and_si256(_mm256_srli_epi16(v0, 4), nib)));
            m = _mm256_and_si256(m, _mm256_shuffle_epi8(lo[1], _mm256_and_si256(v1, nib)));
            m = _mm256_and_si256(
                m, _mm256_shuffle_epi8(hi[1], _mm256_and_si256(_mm256_srli_epi16(v1, 4), nib)));
            m = _mm256_and_si256(m, _mm256_shuffle_epi8(lo[2], _mm256_and_si256(v2, nib)));
            m = _mm256_and_si256(
                m, _mm256_shuffle_epi8(hi[2], _mm256_and_si256(_mm256_srli_epi16(v2, 4), nib)));
            _mm256_storeu_si256((__m256i *)(M.mv + k), m);
            uint32_t word = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(m, zero));
            M.words[k / 32] = word;
            any |= word;
        }
        if (any)
            verify_block(J, c, &M, k);
        c += k;
    }
    return c;
}
#endif

#ifdef OS_SCAN_NEON
/* The SSSE3 loop with NEON table lookups (vqtbl1q_u8 is pshufb for indices
 * below 16), 32 positions per step; the positions that pass come from a
 * 4-bits-per-byte mask made by a narrowing shift. */
static size_t scan_neon(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    const uint8x16_t nib = vdupq_n_u8(0x0f);
    uint8x16_t lo[3], hi[3];
    for (int j = 0; j < 3; j++) {
        lo[j] = vld1q_u8(sc->lo[j]);
        hi[j] = vld1q_u8(sc->hi[j]);
    }
#define OS_NEON_MASK(m, at)                                                                       \
    do {                                                                                          \
        uint8x16_t v0 = vld1q_u8(p + (at)), v1 = vld1q_u8(p + (at) + 1),                          \
                   v2 = vld1q_u8(p + (at) + 2);                                                   \
        m = vandq_u8(vqtbl1q_u8(lo[0], vandq_u8(v0, nib)), vqtbl1q_u8(hi[0], vshrq_n_u8(v0, 4))); \
        m = vandq_u8(m, vqtbl1q_u8(lo[1], vandq_u8(v1, nib)));                                    \
        m = vandq_u8(m, vqtbl1q_u8(hi[1], vshrq_n_u8(v1, 4)));                                    \
        m = vandq_u8(m, vqtbl1q_u8(lo[2], vandq_u8(v2, nib)));                                    \
        m = vandq_u8(m, vqtbl1q_u8(hi[2], vshrq_n_u8(v2, 4)));                                    \
    } while (0)
    scan_marks M;
    while (c + 32 + 2 <= J->end) {
        size_t k = 0;
        uint32_t any = 0;
        for (; k < SCAN_BLOCK && c + k + 32 + 2 <= J->end; k += 32) {
            uint8x16_t ma, mb;
            OS_NEON_MASK(ma, c + k);
            OS_NEON_MASK(mb, c + k + 16);
            M.words[k / 32] = 0;
            if (__builtin_expect(vmaxvq_u8(vorrq_u8(ma, mb)) == 0, 1))
                continue;
            vst1q_u8(M.mv + k, ma);
            vst1q_u8(M.mv + k + 16, mb);
            uint32_t word = 0;
            for (int half = 0; half < 2; half++) {
                uint8x16_t m = half ? mb : ma;
                uint64_t nb = vget_lane_u64(
                    vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(vtstq_u8(m, m)), 4)), 0);
                while (nb) {
                    unsigned i = (unsigned)__builtin_ctzll(nb) >> 2;
                    nb &= ~(0xfull << (4 * i));
                    word |= 1u << (16 * half + i);
                }
            }
            M.words[k / 32] = word;
            any |= word;
        }
        if (any)
            verify_block(J, c, &M, k);
        c += k;
    }
#undef OS_NEON_MASK
    return c;
}
#endif

void os_scan_class_init(os_scan_class *k, const uint8_t set[32]) {
    memset(k, 0, sizeof *k);
    memcpy(k->set, set, 32);
    for (int c = 0; c < 256; c++)
        if (set[c >> 3] >> (c & 7) & 1) {
            if (c < 0x80)
                k->lo7[c & 15] |= (uint8_t)(1u << (c >> 4));
            else
                k->hi8[c & 15] |= (uint8_t)(1u << ((c >> 4) - 8));
        }
}

static size_t run_bytes(const os_scan_class *k, const uint8_t *p, size_t n, size_t i) {
    while (i < n && (k->set[p[i] >> 3] >> (p[i] & 7) & 1))
        i++;
    return i;
}

#ifdef OS_SCAN_X86
__attribute__((target("ssse3"))) static size_t run_ssse3(const os_scan_class *k, const uint8_t *p,
                                                         size_t n) {
    const __m128i nib = _mm_set1_epi8(0x0f), top = _mm_set1_epi8((char)0x80);
    const __m128i lo7 = _mm_loadu_si128((const __m128i *)k->lo7);
    const __m128i hi8 = _mm_loadu_si128((const __m128i *)k->hi8);
    const __m128i bits = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i lo = _mm_and_si128(v, nib);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
        /* pshufb gives 0 for an index with bit 7 set: each byte reads one
         * of the two tables, by its own bit 7. */
        __m128i row =
            _mm_or_si128(_mm_shuffle_epi8(lo7, _mm_or_si128(lo, _mm_and_si128(v, top))),
                         _mm_shuffle_epi8(hi8, _mm_or_si128(lo, _mm_andnot_si128(v, top))));
        __m128i out =
            _mm_cmpeq_epi8(_mm_and_si128(row, _mm_shuffle_epi8(bits, hi)), _mm_setzero_si128());
        unsigned m = (unsigned)_mm_movemask_epi8(out);
        if (m)
            return i + (unsigned)__builtin_ctz(m);
    }
    return run_bytes(k, p, n, i);
}
#endif

#ifdef OS_SCAN_NEON
static size_t run_neon(const os_scan_class *k, const uint8_t *p, size_t n) {
    static const uint8_t bitv[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t nib = vdupq_n_u8(0x0f), top = vdupq_n_u8(0x80);
    const uint8x16_t lo7 = vld1q_u8(k->lo7), hi8 = vld1q_u8(k->hi8), bits = vld1q_u8(bitv);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint8x16_t v = vld1q_u8(p + i);
        uint8x16_t lo = vandq_u8(v, nib);
        uint8x16_t row = vbslq_u8(vcltq_u8(v, top), vqtbl1q_u8(lo7, lo), vqtbl1q_u8(hi8, lo));
        uint8x16_t in = vtstq_u8(row, vqtbl1q_u8(bits, vshrq_n_u8(v, 4)));
        uint64_t out =
            ~vget_lane_u64(vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(in), 4)), 0);
        if (out)
            return i + ((unsigned)__builtin_ctzll(out) >> 2);
    }
    return run_bytes(k, p, n, i);
}
#endif

size_t os_scan_run(const os_scanner *sc, const os_scan_class *k, const uint8_t *p, size_t n,
                   size_t cap) {
    if (n > cap)
        n = cap;
        /* The SIMD measures read 16 bytes at a time, all of them inside p[0, n). */
#ifdef OS_SCAN_X86
    if (sc->impl == IMPL_AVX2 || sc->impl == IMPL_SSSE3)
        return run_ssse3(k, p, n);
#endif
#ifdef OS_SCAN_NEON
    if (sc->impl == IMPL_NEON)
        return run_neon(k, p, n);
#endif
    return run_bytes(k, p, n, 0);
}

void os_scan(const os_scanner *sc, const uint8_t *buf, size_t from, size_t end, size_t seen_end,
             os_scan_hit_fn hit, void *ctx) {
    if (sc->nlits == 0 || from >= end)
        return;
    scan_job J = {sc, buf, from, end, seen_end, hit, ctx};
    size_t c = from;
#ifdef OS_SCAN_X86
    if (sc->impl == IMPL_AVX2)
        c = scan_avx2(&J, c);
    else if (sc->impl == IMPL_SSSE3)
        c = scan_ssse3(&J, c);
#endif
#ifdef OS_SCAN_NEON
    if (sc->impl == IMPL_NEON)
        c = scan_neon(&J, c);
#endif
    if (sc->impl == IMPL_SCALAR)
        c = scan_scalar(&J, c);
    scan_tail(&J, c);
}
