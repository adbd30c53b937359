/*
 * redact_scan.c: the multi-literal scanner (see redact_scan.h).
 *
 * The SIMD loops use target attributes and are chosen at run time, because
 * the extension is built for the baseline ISA (x86-64: SSE2 only).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "redact_scan.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OS_SCAN_X86 1
#endif

/* Rough byte frequencies in log text (higher = more common); the
 * fingerprint of a literal is its window with the smallest sum. */
static unsigned byte_freq(uint8_t c) {
    static const char by_rank[] = "etaoinsrhldcumfpgwybvkxjqz";
    if (c == ' ') return 2000;
    if (c >= 'a' && c <= 'z') {
        const char *p = strchr(by_rank, c);
        return 1000 - (unsigned)(p - by_rank) * 36;
    }
    if (c >= 'A' && c <= 'Z') return 60;
    if (c >= '0' && c <= '9') return 300;
    switch (c) {
    case '.': case ':': case '/': case '-': case '=': return 200;
    case ',': case '"': case '\n': case '_': case '[': case ']': return 100;
    case '(': case ')': case '\'': case '{': case '}': return 60;
    default: return c >= 0x80 ? 5 : 20;
    }
}

static unsigned lit_byte_freq(const os_scan_lit *l, size_t i) {
    uint8_t c = l->bytes[i];
    if (l->ci && c >= 'a' && c <= 'z') return byte_freq(c) + byte_freq((uint8_t)(c - 32));
    return byte_freq(c);
}

static int fp_cmp(const os_scan_lit *a, const os_scan_lit *b) {
    size_t n = a->fp_len < b->fp_len ? a->fp_len : b->fp_len;
    int r = memcmp(a->bytes + a->fp_off, b->bytes + b->fp_off, n);
    return r ? r : (int)a->fp_len - (int)b->fp_len;
}

static int fp_qsort_cmp(const void *x, const void *y) {
    return fp_cmp((const os_scan_lit *)x, (const os_scan_lit *)y);
}

int os_scanner_init(os_scanner *sc, const os_scan_lit *lits, size_t n) {
    memset(sc, 0, sizeof *sc);
    sc->lits = malloc((n ? n : 1) * sizeof *sc->lits);
    if (!sc->lits) return -ENOMEM;
    memcpy(sc->lits, lits, n * sizeof *lits);
    sc->nlits = n;
    for (size_t i = 0; i < n; i++) {
        os_scan_lit *l = &sc->lits[i];
        if (l->ci)
            for (size_t j = 0; j < l->len; j++)
                if (l->bytes[j] >= 'A' && l->bytes[j] <= 'Z') l->bytes[j] |= 0x20;
        if (l->len > sc->maxlen) sc->maxlen = l->len;
        l->fp_len = l->len < 3 ? l->len : 3;
        unsigned best = ~0u;
        for (size_t k = 0; k + l->fp_len <= l->len; k++) {
            unsigned s = 0;
            for (size_t j = 0; j < l->fp_len; j++) s += lit_byte_freq(l, k + j);
            if (s < best) best = s, l->fp_off = (uint8_t)k;
        }
    }
    /* Literals with similar fingerprints share a bucket: fewer false
     * positives from the nibble cross product. */
    qsort(sc->lits, n, sizeof *sc->lits, fp_qsort_cmp);
    for (size_t b = 0; b <= 8; b++) sc->bstart[b] = (uint32_t)((n * b + 7) / 8);
    for (size_t b = 0; b < 8; b++) {
        uint8_t bit = (uint8_t)(1u << b);
        for (size_t i = sc->bstart[b]; i < sc->bstart[b + 1]; i++) {
            const os_scan_lit *l = &sc->lits[i];
            for (size_t j = 0; j < 3; j++) {
                if (j >= l->fp_len) {
                    for (size_t x = 0; x < 16; x++) sc->lo[j][x] |= bit, sc->hi[j][x] |= bit;
                    continue;
                }
                uint8_t c = l->bytes[l->fp_off + j];
                sc->lo[j][c & 15] |= bit;
                sc->hi[j][c >> 4] |= bit;
                if (l->ci && c >= 'a' && c <= 'z') {
                    uint8_t u = (uint8_t)(c - 32);
                    sc->lo[j][u & 15] |= bit;
                    sc->hi[j][u >> 4] |= bit;
                }
            }
        }
    }
#ifdef OS_SCAN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) sc->impl = 2;
    else if (__builtin_cpu_supports("ssse3")) sc->impl = 1;
#endif
    if (getenv("OS_REDACT_SCALAR_SCAN")) sc->impl = 0;
    return 0;
}

void os_scanner_free(os_scanner *sc) {
    free(sc->lits);
    sc->lits = NULL;
}

static int lit_at(const os_scan_lit *l, const uint8_t *p) {
    if (!l->ci) return memcmp(l->bytes, p, l->len) == 0;
    for (size_t i = 0; i < l->len; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        if (c != l->bytes[i]) return 0;
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

static void verify(const scan_job *J, size_t c, unsigned mask) {
    const os_scanner *sc = J->sc;
    while (mask) {
        unsigned b = (unsigned)__builtin_ctz(mask);
        mask &= mask - 1;
        for (size_t i = sc->bstart[b]; i < sc->bstart[b + 1]; i++) {
            const os_scan_lit *l = &sc->lits[i];
            if (c < (size_t)l->fp_off + J->from) continue;
            size_t t = c - l->fp_off;
            if (t + l->len > J->end || t + l->len <= J->seen_end) continue;
            if (lit_at(l, J->buf + t)) J->hit(J->ctx, l, t);
        }
    }
}

static void scan_scalar(const scan_job *J, size_t c) {
    const os_scanner *sc = J->sc;
    const uint8_t *p = J->buf;
    for (; c < J->end; c++) {
        unsigned m = 0xff;
        for (size_t j = 0; j < 3 && m; j++) {
            if (c + j >= J->end) break; /* past the end: any byte may follow */
            uint8_t b = p[c + j];
            m &= sc->lo[j][b & 15] & sc->hi[j][b >> 4];
        }
        if (m) verify(J, c, m);
    }
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
    for (; c + 16 + 2 <= J->end; c += 16) {
        __m128i m = _mm_set1_epi8((char)0xff);
        for (int j = 0; j < 3; j++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + c + j));
            m = _mm_and_si128(m, _mm_shuffle_epi8(lo[j], _mm_and_si128(v, nib)));
            m = _mm_and_si128(m, _mm_shuffle_epi8(hi[j], _mm_and_si128(_mm_srli_epi16(v, 4), nib)));
        }
        unsigned bits = ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(m, zero)) & 0xffffu;
        if (bits) {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, m);
            while (bits) {
                unsigned i = (unsigned)__builtin_ctz(bits);
                bits &= bits - 1;
                verify(J, c + i, tmp[i]);
            }
        }
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
    for (; c + 32 + 2 <= J->end; c += 32) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(p + c));
        __m256i v1 = _mm256_loadu_si256((const __m256i *)(p + c + 1));
        __m256i v2 = _mm256_loadu_si256((const __m256i *)(p + c + 2));
        __m256i m = _mm256_and_si256(
            _mm256_shuffle_epi8(lo[0], _mm256_and_si256(v0, nib)),
            _mm256_shuffle_epi8(hi[0], _mm256_and_si256(_mm256_srli_epi16(v0, 4), nib)));
        m = _mm256_and_si256(m, _mm256_shuffle_epi8(lo[1], _mm256_and_si256(v1, nib)));
        m = _mm256_and_si256(
            m, _mm256_shuffle_epi8(hi[1], _mm256_and_si256(_mm256_srli_epi16(v1, 4), nib)));
        m = _mm256_and_si256(m, _mm256_shuffle_epi8(lo[2], _mm256_and_si256(v2, nib)));
        m = _mm256_and_si256(
            m, _mm256_shuffle_epi8(hi[2], _mm256_and_si256(_mm256_srli_epi16(v2, 4), nib)));
        unsigned bits = ~(unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(m, zero));
        if (bits) {
            uint8_t tmp[32];
            _mm256_storeu_si256((__m256i *)tmp, m);
            while (bits) {
                unsigned i = (unsigned)__builtin_ctz(bits);
                bits &= bits - 1;
                verify(J, c + i, tmp[i]);
            }
        }
    }
    return c;
}
#endif

void os_scan(const os_scanner *sc, const uint8_t *buf, size_t from, size_t end, size_t seen_end,
             os_scan_hit_fn hit, void *ctx) {
    if (sc->nlits == 0 || from >= end) return;
    scan_job J = {sc, buf, from, end, seen_end, hit, ctx};
    size_t c = from;
#ifdef OS_SCAN_X86
    if (sc->impl == 2) c = scan_avx2(&J, c);
    else if (sc->impl == 1) c = scan_ssse3(&J, c);
#endif
    scan_scalar(&J, c);
}
