/* The cache object and the hooks the token layer (token.c) uses. */
#ifndef CACHEKIT_CACHE_PRIV_H
#define CACHEKIT_CACHE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache_internal.h"
#include "l1.h"

struct ck__flight;

struct ck_cache {
    ck_client *c;
    ck_cache_options opt;      /* name points at `name`; no hmac_key */
    char *name, *prefix;
    unsigned char *hkey;       /* wiped on free */
    ck__keyspace ks;
    _Atomic uint64_t rng;      /* TTL jitter and backoff, not secrets */
    pthread_mutex_t mu;        /* the in-process flights */
    struct ck__flight *flights;

    /* Invalidation messages: every write publishes on chan, L1 or not (other
     * instances may keep one), as "<iid> <seq> <kind> <data>". */
    char chan[CK__IDENT_MAX * 2 + 8]; /* <prefix>:inv:<name> */
    size_t chan_len;
    char iid[17];              /* this cache object's id: random hex */
    _Atomic uint64_t seq;

    /* The L1 tier (l1_max_entries > 0), else l1 is NULL. */
    ck__l1 *l1;
    int64_t l1_ttl_ns, l1_stale_ns;
    _Atomic int l1_live;       /* chan is subscribed: L1 answers on its own */
    _Atomic int l1_skip_own;   /* our own messages need no applying: 0 after
                                  the first write whose outcome was unsure */
    ck__hub *hub;              /* the client's, set when registered */
    struct ck_cache *hub_next; /* the client's hub list (under the hub lock) */
    int hub_sent;              /* SUBSCRIBE sent on the hub's connection */
};

/* One lookup's names: validated scope and key, key digest, entry key. */
typedef struct ck__ref {
    const char *scope;  /* NULL = "any" */
    size_t scope_len;   /* strlen(scope); 0 for NULL */
    const char *key;
    size_t key_len;
    int hashed;         /* kh and entry are filled (ck__cache_check leaves them) */
    char kh[65];
    char entry[CK__RKEY_MAX];
    size_t entry_len;
} ck__ref;

/* A loader as the cache calls it: the public ck_loader_fn or the token
 * layer's adapter. `tags` (may be NULL) names the tag index keys of a
 * loaded value (malloc'd strings, at most CK__TAGS_MAX). */
typedef struct ck__loader {
    ck_status (*load)(const struct ck__loader *self, const char *key, json_t **out);
    ck_status (*tags)(const struct ck__loader *self, const json_t *value, char **keys, size_t *n);
} ck__loader;

const ck__logger *ck__cache_logger(const ck_cache *k);
int64_t ck__wall_ms(void);
/* Validate scope and key (CK_E_INVALID + a log line) and fill the ref:
 * ck__cache_check without the digest (the L1 lookup needs none),
 * ck__cache_prep with it. */
ck_status ck__cache_check(ck_cache *k, const char *fn, const char *scope, const char *key,
                          ck__ref *r);
ck_status ck__cache_prep(ck_cache *k, const char *fn, const char *scope, const char *key,
                         ck__ref *r);
ck_status ck__cache_get(ck_cache *k, ck__ref *r, const ck__loader *ld, json_t **out,
                        ck_get_info *info);
ck_status ck__cache_invalidate_tagkey(ck_cache *k, const char *tagkey);
void ck__free_keys(char **keys, size_t n);

#endif
