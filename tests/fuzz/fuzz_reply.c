/* Reply classification (lib/reply.c) over what a server, or anything on the
 * wire pretending to be one, can send: bytes go through hiredis's
 * redisReader, as lib/conn.c feeds it, and every reply (and every element of
 * an array, at any depth) through ck__reply_status and ck__classify_error.
 *
 * The reader carries lib/conn.c's guard (ck__reader_guard, a 1 MiB bound):
 * without it, "*999999999\r\n" has hiredis allocate an 8 GB element table.
 *
 * Input: a flags byte (bit 0: the command was a write), a byte sizing the
 * chunks the bytes are fed in (1..64, to split lines and bulk bodies
 * anywhere), then the bytes.
 * Checked: no crash, leak or read past a reply; a non-error reply is CK_OK;
 * an error reply maps to exactly the status its first word calls for
 * (READONLY, MISCONF, LOADING, BUSY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN,
 * NOREPLICAS, OOM on a write and the ACL errors: CK_E_UNAVAILABLE;
 * WRONGTYPE: CK_E_CORRUPT; anything else, BUSYKEY or "OOM" on a read
 * included: CK_E_PROTOCOL), and the classes agree. */
#include "fuzz.h"
#include "internal.h"

/* The first word of an error (up to a space): the class the spec gives it. */
static ck__errclass ckt_fz_reply_expect(const char *s, size_t len, int is_write)
{
    static const char *const unavailable[] = {
        "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN",
        "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
    };
    static const char *const auth[] = { "WRONGPASS", "NOAUTH", "NOPERM" };
    const char *sp = len > 0 ? memchr(s, ' ', len) : NULL;
    size_t w = sp != NULL ? (size_t)(sp - s) : len, i;

#define CKT_FZ_IS(word) (w == strlen(word) && memcmp(s, word, w) == 0)
    for (i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++)
        if (CKT_FZ_IS(unavailable[i]))
            return CK__ERR_UNAVAILABLE;
    if (CKT_FZ_IS("OOM"))
        return is_write ? CK__ERR_UNAVAILABLE : CK__ERR_OTHER;
    if (CKT_FZ_IS("NOSCRIPT"))
        return CK__ERR_NOSCRIPT;
    if (CKT_FZ_IS("WRONGTYPE"))
        return CK__ERR_WRONGTYPE;
    for (i = 0; i < sizeof auth / sizeof auth[0]; i++)
        if (CKT_FZ_IS(auth[i]))
            return CK__ERR_AUTH;
#undef CKT_FZ_IS
    return CK__ERR_OTHER;
}

static void ckt_fz_reply_check(const redisReply *r, int is_write, int depth)
{
    ck_status st = ck__reply_status(r, is_write);

    CKT_FUZZ_CHECK(depth < 16);
    if (r->type != REDIS_REPLY_ERROR) {
        CKT_FUZZ_CHECK(st == CK_OK);
    } else {
        ck__errclass c = ck__classify_error(r->str, r->len, is_write);
        ck__errclass other = ck__classify_error(r->str, r->len, !is_write);
        ck_status want;

        CKT_FUZZ_CHECK(r->str != NULL && r->str[r->len] == '\0');
        CKT_FUZZ_CHECK(c == ckt_fz_reply_expect(r->str, r->len, is_write));
        /* only OOM depends on whether the command writes */
        if (c != other)
            CKT_FUZZ_CHECK(r->len >= 3 && memcmp(r->str, "OOM", 3) == 0);
        switch (c) {
        case CK__ERR_UNAVAILABLE:
        case CK__ERR_AUTH:
            want = CK_E_UNAVAILABLE;
            break;
        case CK__ERR_WRONGTYPE:
            want = CK_E_CORRUPT;
            break;
        default:
            want = CK_E_PROTOCOL;
            break;
        }
        CKT_FUZZ_CHECK(st == want);
    }
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            ckt_fz_reply_check(r->element[i], is_write, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckt_fuzz_in in = { data, size };
    int is_write = ckt_fuzz_u8(&in) & 1;
    size_t chunk = ckt_fuzz_u8(&in) % 64 + 1;
    redisReader *rd = redisReaderCreate();
    ck__reply_guard guard = { (size_t)1 << 20, 0 };
    int replies = 0, broken = 0;

    if (rd == NULL)
        abort();
    ck__reader_guard(rd, &guard);
    CKT_FUZZ_CHECK(ck__reply_status(NULL, is_write) == CK_E_PROTOCOL);
    CKT_FUZZ_CHECK(ck__classify_error(NULL, 0, is_write) == CK__ERR_OTHER);
    while (!broken && (in.n > 0 || replies == 0)) {
        size_t n = in.n < chunk ? in.n : chunk;
        void *reply = NULL;

        if (n > 0 && redisReaderFeed(rd, (const char *)in.p, n) != REDIS_OK)
            break;
        in.p += n;
        in.n -= n;
        /* every complete reply buffered so far */
        for (;;) {
            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                /* refused by the guard: reported as out of memory */
                CKT_FUZZ_CHECK(!guard.tripped || rd->err == REDIS_ERR_OOM);
                broken = 1; /* conn.c: CK__FAIL_PROTOCOL, the connection is dropped */
                break;
            }
            if (reply == NULL)
                break;
            ckt_fz_reply_check(reply, is_write, 0);
            freeReplyObject(reply);
            replies++;
        }
        if (n == 0)
            break;
    }
    redisReaderFree(rd);
    return 0;
}
