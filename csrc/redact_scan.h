/*
 * redact_scan.h: a multi-literal scanner (Teddy-style fingerprint filter).
 *
 * Each literal contributes a 3-byte fingerprint (its rarest 3-byte window,
 * or the whole literal when shorter) to one of 8 buckets; SIMD nibble
 * lookups find positions whose 3 bytes may belong to a bucket, and only
 * those are verified against the bucket's literals.
 */
#ifndef OS_REDACT_SCAN_H
#define OS_REDACT_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "redact_anchor.h"

typedef struct {
    uint32_t owner; /* caller's id (the pattern index) */
    uint8_t len, fp_off, fp_len, ci;
    uint8_t bytes[OS_ANCHOR_MAXLEN]; /* folded to lower case when ci */
    /* Optional: the class of the byte right after the literal, which a
     * literal shorter than 3 bytes uses to complete its fingerprint. */
    uint8_t has_next;
    uint8_t next[32];
    /* Filled by the scanner: masked compare of the first 8 bytes. */
    uint64_t pm, pv;
} os_scan_lit;

typedef struct {
    uint8_t lo[3][16], hi[3][16]; /* bucket bits by low / high nibble */
    uint8_t exact[3][256];        /* bucket bits by byte (the scalar loop) */
    uint32_t bstart[9];           /* lits of bucket b: [bstart[b], bstart[b+1]) */
    os_scan_lit *lits;
    size_t nlits;
    uint32_t maxlen;
    int impl; /* 0 scalar, 1 ssse3, 2 avx2, 3 neon: see os_scanner_impl_name */
    /* Second filter behind the nibble masks: literal bits (index mod 64) by
     * a hash of the 3 case-folded fingerprint bytes, plus the literals whose
     * fingerprint is not 3 exact bytes, plus the literals of each bucket. */
    uint64_t fp_table[4096];
    uint64_t short_mask;
    uint64_t mask_lits[256]; /* literal bits of the buckets in a bucket mask */
} os_scanner;

/* Build from literals (copied); 0 or -ENOMEM. */
int os_scanner_init(os_scanner *sc, const os_scan_lit *lits, size_t n);
void os_scanner_free(os_scanner *sc);

/* The scan loop the scanner uses: "scalar", "ssse3", "avx2" or "neon"
 * (chosen from the CPU at init; OS_REDACT_SCAN forces a supported one). */
const char *os_scanner_impl_name(const os_scanner *sc);

/* Report every literal occurrence starting at t in [from, end) with
 * t + len <= end and t + len > seen_end (occurrences ending at or before
 * seen_end were reported by an earlier call). Calls hit(ctx, lit, t). */
typedef void (*os_scan_hit_fn)(void *ctx, const os_scan_lit *lit, size_t t);
void os_scan(const os_scanner *sc, const uint8_t *buf, size_t from, size_t end, size_t seen_end,
             os_scan_hit_fn hit, void *ctx);

/* A byte class for os_scan_run: exact membership as two nibble tables
 * (for c < 0x80 bit c >> 4 of lo7[c & 15], for c >= 0x80 bit (c >> 4) - 8
 * of hi8[c & 15]) and as a bitmap. */
typedef struct {
    uint8_t lo7[16], hi8[16];
    uint8_t set[32];
} os_scan_class;

void os_scan_class_init(os_scan_class *k, const uint8_t set[32]);

/* The length of the run of bytes of class k at the start of p[0, n),
 * counting at most cap: 16 bytes at a time with the scanner's SIMD loops. */
size_t os_scan_run(const os_scanner *sc, const os_scan_class *k, const uint8_t *p, size_t n,
                   size_t cap);

#endif
