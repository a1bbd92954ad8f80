/* The cache object and the hooks the token layer (token.c) uses. */
#ifndef CACHEKIT_CACHE_PRIV_H
#define CACHEKIT_CACHE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache_internal.h"

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
};

/* One lookup's names: validated scope and key, key digest, entry key. */
typedef struct ck__ref {
    const char *scope;  /* NULL = "any" */
    const char *key;
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
ck_status ck__cache_prep(ck_cache *k, const char *fn, const char *scope, const char *key,
                         ck__ref *r);
ck_status ck__cache_get(ck_cache *k, const ck__ref *r, const ck__loader *ld, json_t **out,
                        ck_get_info *info);
ck_status ck__cache_invalidate_tagkey(ck_cache *k, const char *tagkey);
void ck__free_keys(char **keys, size_t n);

#endif
