/* Shared by the fuzz harnesses (tests/fuzz/fuzz_<name>.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput and is built two ways:
 *   - with clang and -fsanitize=fuzzer,address,undefined by `make fuzz`
 *     (build-fuzz/fuzz_<name>), against the library compiled the same way;
 *   - with the ordinary compiler inside tests/check_fuzz_replay.c, which
 *     renames LLVMFuzzerTestOneInput per harness and replays every file of
 *     tests/fuzz/corpus/<name>/ (so `make check`, SANITIZE=1, valgrind and
 *     meson test all run the seeds and the regression inputs).
 * A harness reports a broken promise with CKT_FUZZ_CHECK, which aborts:
 * libFuzzer records that as a crash, the replay test as a failure.
 * Harness-local names carry the harness's name (ckt_fz_<name>_...), since
 * the replay test includes every harness into one file. */
#ifndef CKT_FUZZ_H
#define CKT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKT_FUZZ_CHECK(cond)                                                              \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* A cursor over the fuzzer's bytes; reading past the end yields zeros. */
typedef struct ckt_fuzz_in {
    const uint8_t *p;
    size_t n;
} ckt_fuzz_in;

static inline uint8_t ckt_fuzz_u8(ckt_fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t ckt_fuzz_u16(ckt_fuzz_in *in)
{
    uint16_t hi = ckt_fuzz_u8(in);
    return (uint16_t)(hi << 8 | ckt_fuzz_u8(in));
}

static inline uint64_t ckt_fuzz_u64(ckt_fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | ckt_fuzz_u8(in);
    return v;
}

/* The next `len` bytes (fewer at the end) as a malloc'd NUL-terminated
 * string of exactly that many bytes plus the NUL, so that ASan sees any
 * read past it. Embedded NULs stay: C callers see the prefix. */
static inline char *ckt_fuzz_bytes(ckt_fuzz_in *in, size_t len, size_t *got)
{
    char *s;

    if (len > in->n)
        len = in->n;
    s = malloc(len + 1);
    if (s == NULL)
        abort();
    if (len > 0)
        memcpy(s, in->p, len);
    s[len] = '\0';
    in->p += len;
    in->n -= len;
    if (got != NULL)
        *got = len;
    return s;
}

/* A string whose length (0..max) is a 16-bit prefix. */
static inline char *ckt_fuzz_str(ckt_fuzz_in *in, size_t max, size_t *got)
{
    size_t len = ckt_fuzz_u16(in) % (max + 1);
    return ckt_fuzz_bytes(in, len, got);
}

/* A string up to the next 0xff byte (or the end): mutations that insert or
 * delete bytes keep the later fields aligned. */
static inline char *ckt_fuzz_field(ckt_fuzz_in *in, size_t *got)
{
    const uint8_t *end = in->n > 0 ? memchr(in->p, 0xff, in->n) : NULL;
    size_t len = end != NULL ? (size_t)(end - in->p) : in->n;
    char *s = ckt_fuzz_bytes(in, len, got);
    if (end != NULL)
        (void)ckt_fuzz_u8(in); /* the separator */
    return s;
}

/* The rest of the input. */
static inline char *ckt_fuzz_rest(ckt_fuzz_in *in, size_t *got)
{
    return ckt_fuzz_bytes(in, in->n, got);
}

/* A buffer of exactly `len` bytes (at least one allocated, so that len 0 can
 * be checked for "nothing written"), filled with a canary byte. */
static inline char *ckt_fuzz_buf(size_t len)
{
    char *b = malloc(len > 0 ? len : 1);
    if (b == NULL)
        abort();
    memset(b, 0x5a, len > 0 ? len : 1);
    return b;
}

#endif
