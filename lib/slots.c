/* Concurrency slots: at most max_active holders of a key at once; a holder
 * that stops touching its slot for stale_ms loses it, so a crashed holder
 * never leaks one. State: a sorted set holder -> expiry (us, Redis TIME) and
 * a hash holder -> stale_ms, both under `<prefix>:r:{<key>}:slots...`,
 * pruned and re-expired by the script on every call (rate_scripts.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rate_internal.h"

enum { CK__SLOT_ACQUIRE, CK__SLOT_TOUCH, CK__SLOT_RELEASE };

/* Run the slots script; *reply on CK_OK (a non-error reply). */
static ck_status ck__slots_eval(ck_client *c, const char *fn, const char *key, size_t keylen,
                                int op, const char *holder, int max_active, int stale_ms,
                                redisReply **reply, int *ambiguous)
{
    char maxbuf[16], stalebuf[16];
    const char *args[4];
    size_t lens[4];
    ck__rate_keys k;
    redisReply *r = NULL;
    ck_status st;

    *reply = NULL;
    args[0] = op == CK__SLOT_ACQUIRE ? "a" : op == CK__SLOT_TOUCH ? "t" : "r";
    lens[0] = 1;
    args[1] = holder;
    lens[1] = strlen(holder);
    args[2] = maxbuf;
    lens[2] = (size_t)snprintf(maxbuf, sizeof maxbuf, "%d", max_active);
    args[3] = stalebuf;
    lens[3] = (size_t)snprintf(stalebuf, sizeof stalebuf, "%d", stale_ms);
    st = ck__rate_keys_build(&k, ck__client_options(c)->prefix, key, keylen, 0);
    if (st != CK_OK)
        return st;
    st = ck__eval(c, &ck__slots_script, 2, k.keys, k.lens, op == CK__SLOT_ACQUIRE ? 4 : 2, args,
                  lens, CK__CMD_WRITE, &r, ambiguous);
    ck__rate_keys_free(&k);
    if (st == CK_OK && r->type == REDIS_REPLY_ERROR) {
        char e[160];

        st = ck__reply_status(r, 1);
        if (st == CK_OK || st == CK_E_CORRUPT)
            st = CK_E_PROTOCOL;
        ck__log_sanitize(e, sizeof e, r->str, r->len);
        ck__log(ck__client_logger(c), CK_LOG_ERROR, "%s: redis error: %s", fn, e);
        freeReplyObject(r);
        return st;
    }
    *reply = r;
    return st;
}

static const char *ck__slots_check(const char *key, size_t *keylen, const char *holder)
{
    size_t hl;
    const char *bad = ck__rate_check_key(key, keylen, 0);

    return bad != NULL ? bad : ck__rate_check_key(holder, &hl, 1);
}

ck_status ck_slots_acquire(ck_client *c, const char *key, int max_active, const char *holder_id,
                           int stale_ms, ck_rate_result *out)
{
    const ck_options *o;
    const char *bad;
    size_t keylen = 0;
    redisReply *r;
    int amb = 0;
    ck_status st;

    if (c == NULL)
        return CK_E_INVALID;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
        out->rule = -1;
    }
    bad = ck__slots_check(key, &keylen, holder_id);
    if (bad == NULL && out == NULL)
        bad = "out is NULL";
    if (bad == NULL && max_active <= 0)
        bad = "max_active <= 0";
    if (bad == NULL && stale_ms <= 0)
        bad = "stale_ms <= 0";
    if (bad != NULL) {
        ck__rate_log_invalid(c, "ck_slots_acquire", bad, key);
        return CK_E_INVALID;
    }
    st = ck__slots_eval(c, "ck_slots_acquire", key, keylen, CK__SLOT_ACQUIRE, holder_id,
                        max_active, stale_ms, &r, &amb);
    if (st == CK_OK) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
            r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER &&
            r->element[2]->type == REDIS_REPLY_INTEGER && r->element[3]->type == REDIS_REPLY_INTEGER) {
            out->allowed = r->element[0]->integer != 0;
            out->rule = out->allowed ? -1 : 0;
            out->limit = max_active;
            out->remaining = r->element[1]->integer;
            out->retry_after_ms = r->element[2]->integer;
            out->reset_after_ms = r->element[3]->integer;
        } else {
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "ck_slots_acquire: unexpected reply");
            st = CK_E_PROTOCOL;
        }
        freeReplyObject(r);
    } else if (amb) {
        ck__log(ck__client_logger(c), CK_LOG_INFO,
                "ck_slots_acquire: the reply was lost after the script was sent (it may have "
                "run); not resent");
    }
    if (st != CK_OK) {
        o = ck__client_options(c);
        ck__count(c, CK__ST_DEGRADED, 1);
        out->limit = max_active;
        out->degraded = 1;
        out->remaining = -1;
        out->reset_after_ms = -1;
        if (o->fail_mode == CK_FAIL_LOCAL) {
            ck__slots_local_acquire(o->prefix, key, keylen, max_active, holder_id, stale_ms,
                                    o->local_instances, out);
        } else if (o->fail_mode == CK_FAIL_CLOSED) {
            out->allowed = 0;
            out->retry_after_ms = o->breaker_cooldown_ms > 0 ? o->breaker_cooldown_ms : 1;
        } else {
            out->allowed = 1;
        }
        if (st == CK_E_UNAVAILABLE)
            st = o->fail_mode == CK_FAIL_CLOSED ? CK_E_UNAVAILABLE : CK_OK;
    }
    ck__count(c, out->allowed ? CK__ST_RATE_ALLOWED : CK__ST_RATE_DENIED, 1);
    return st;
}

static ck_status ck__slots_simple(ck_client *c, const char *fn, int op, const char *key,
                                  const char *holder_id)
{
    const ck_options *o;
    const char *bad;
    size_t keylen = 0;
    redisReply *r;
    ck_status st;

    if (c == NULL)
        return CK_E_INVALID;
    if ((bad = ck__slots_check(key, &keylen, holder_id)) != NULL) {
        ck__rate_log_invalid(c, fn, bad, key);
        return CK_E_INVALID;
    }
    o = ck__client_options(c);
    if (o->fail_mode == CK_FAIL_LOCAL) {
        /* keep the local table in step, so that it is right if Redis fails later */
        if (op == CK__SLOT_TOUCH)
            ck__slots_local_touch(o->prefix, key, keylen, holder_id);
        else
            ck__slots_local_release(o->prefix, key, keylen, holder_id);
    }
    st = ck__slots_eval(c, fn, key, keylen, op, holder_id, 0, 0, &r, NULL);
    if (st == CK_OK) {
        if (r->type != REDIS_REPLY_INTEGER) {
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "%s: unexpected reply", fn);
            st = CK_E_PROTOCOL;
        } else if (r->integer == 0) {
            st = op == CK__SLOT_TOUCH ? CK_E_LOCK_LOST : CK_NOT_FOUND;
        }
        freeReplyObject(r);
    } else if (st == CK_E_UNAVAILABLE) {
        ck__count(c, CK__ST_DEGRADED, 1);
    }
    return st;
}

ck_status ck_slots_touch(ck_client *c, const char *key, const char *holder_id)
{
    return ck__slots_simple(c, "ck_slots_touch", CK__SLOT_TOUCH, key, holder_id);
}

ck_status ck_slots_release(ck_client *c, const char *key, const char *holder_id)
{
    return ck__slots_simple(c, "ck_slots_release", CK__SLOT_RELEASE, key, holder_id);
}
