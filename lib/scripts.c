/* The script registry: EVALSHA with a SHA1 computed once (libcrypto), and on
 * NOSCRIPT (after SCRIPT FLUSH, a restart or a failover) SCRIPT LOAD and one
 * more EVALSHA on the same lease. Never plain EVAL per call: Redis evicts
 * EVAL-loaded scripts past 500, and the body would travel every time. */
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CK__EVAL_MAX_ARGS 64

void ck__sha1_hex(const void *data, size_t len, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA_DIGEST_LENGTH];

    SHA1(data, len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

/* Scripts are static and few; one lock for their lazy SHA is plenty.
 * ck__eval's fast path reads sha[0] without the lock, so sha[0] is what
 * publishes the SHA: bytes 1..40 are written first, then sha[0] with a
 * release store that the fast path's acquire load pairs with. (Writing
 * sha[0] first let another thread send a half-written SHA.) */
static pthread_mutex_t ck__script_mu = PTHREAD_MUTEX_INITIALIZER;

static int ck__script_ready(ck__script *s)
{
    return __atomic_load_n(&s->sha[0], __ATOMIC_ACQUIRE) != '\0';
}

void ck__script_init(ck__script *s)
{
    pthread_mutex_lock(&ck__script_mu);
    if (s->sha[0] == '\0') {
        char sha[41];
        ck__sha1_hex(s->src, strlen(s->src), sha);
        memcpy(s->sha + 1, sha + 1, sizeof sha - 1);
        __atomic_store_n(&s->sha[0], sha[0], __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&ck__script_mu);
}

static int ck__is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && ck__classify_error(r->str, r->len, 0) == CK__ERR_NOSCRIPT;
}

ck_status ck__eval(ck_client *c, ck__script *s, int nkeys, const char **keys,
                   const size_t *keylens, int nargs, const char **args,
                   const size_t *arglens, unsigned flags, redisReply **out, int *ambiguous)
{
    const char *argv[3 + CK__EVAL_MAX_ARGS];
    size_t lens[3 + CK__EVAL_MAX_ARGS];
    char nk[12];
    int argc = 0, amb = 0;
    ck__lease l;
    ck_status st;

    *out = NULL;
    if (ambiguous != NULL)
        *ambiguous = 0;
    if (nkeys < 0 || nargs < 0 || nkeys + nargs > CK__EVAL_MAX_ARGS)
        return CK_E_INVALID;
    if (!ck__script_ready(s))
        ck__script_init(s);
    argv[argc] = "EVALSHA"; lens[argc++] = 7;
    argv[argc] = s->sha;    lens[argc++] = 40;
    lens[argc] = (size_t)snprintf(nk, sizeof nk, "%d", nkeys);
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = keylens[i];
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens[i];
    }

    st = ck__lease_run(c, nkeys > 0 ? keys[0] : NULL, argc, argv, lens, flags, &l, out, &amb);
    if (st == CK_OK && ck__is_noscript(*out)) {
        /* The script did not run: loading it and sending it again is safe. */
        const char *load[3] = {"SCRIPT", "LOAD", s->src};
        size_t loadlens[3] = {6, 4, strlen(s->src)};
        redisReply *lr = NULL;

        freeReplyObject(*out);
        *out = NULL;
        ck__log(ck__client_logger(c), CK_LOG_DEBUG, "script %s not cached by redis; loading it",
                s->name);
        st = ck__lease_exec(&l, 3, load, loadlens, 0, &lr, NULL);
        if (st == CK_OK && lr->type == REDIS_REPLY_ERROR) {
            char e[96];
            ck__log_sanitize(e, sizeof e, lr->str, lr->len);
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "SCRIPT LOAD of %s failed: %s", s->name, e);
            st = CK_E_PROTOCOL;
        } else if (st == CK_OK && (lr->type != REDIS_REPLY_STRING || lr->len != 40 ||
                                   memcmp(lr->str, s->sha, 40) != 0)) {
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "SCRIPT LOAD of %s returned another SHA1",
                    s->name);
            st = CK_E_PROTOCOL;
        }
        freeReplyObject(lr);
        if (st == CK_OK)
            st = ck__lease_exec(&l, argc, argv, lens, flags, out, &amb);
    }
    ck__lease_put(&l);
    if (ambiguous != NULL)
        *ambiguous = amb;
    return st;
}
