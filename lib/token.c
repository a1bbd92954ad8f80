/* The typed token layer: an API token's record through a ck_cache.
 * Records are tagged by tenant, so that a tenant's tokens can be dropped at
 * once. In the hashed key modes the stored record carries no token (the
 * caller's argument fills ck_token.token on a hit); in plain mode the layout
 * is Dify's ApiTokenCache: key <name>:<scope>:<token>, the bare record, and
 * the tenant index tenant_tokens:<tenant_id>. */
#include <stdlib.h>
#include <string.h>

#include "cache_priv.h"

void ck_token_free(ck_token *t)
{
    if (t == NULL)
        return;
    free(t->id);
    free(t->app_id);
    free(t->tenant_id);
    free(t->type);
    if (t->token != NULL) { /* a secret: do not leave it in freed memory */
        volatile char *p = t->token;
        for (size_t i = 0; p[i] != '\0'; i++)
            p[i] = 0;
        free(t->token);
    }
    free(t);
}

/* The tenant's tag index key (malloc'd), or NULL for a bad tenant id. */
static char *ck__tenant_key(ck_cache *k, const char *tenant_id)
{
    char *key;
    if (!ck__valid_tag(tenant_id) || strlen(tenant_id) > CK__TAG_MAX - 8)
        return NULL;
    key = malloc(CK__RKEY_MAX);
    if (key == NULL)
        return NULL;
    if (k->opt.key_hash == CK_KEY_PLAIN) {
        strcpy(key, "tenant_tokens:");
        strcat(key, tenant_id);
    } else {
        char tag[CK__TAG_MAX + 8], th[65];
        strcpy(tag, "tenant:");
        strcat(tag, tenant_id);
        ck__digest(&k->ks, 't', tag, strlen(tag), th);
        ck__key_tag(&k->ks, th, key);
    }
    return key;
}

typedef struct ck__token_loader {
    ck__loader base;
    ck_cache *k;
    ck_token_loader_fn fn;
    void *user;
    const char *scope;
} ck__token_loader;

static ck_status ck__token_load(const ck__loader *ld, const char *key, json_t **out)
{
    const ck__token_loader *tl = (const ck__token_loader *)ld;
    ck_token *t = NULL;
    ck_status st = tl->fn(tl->user, key, tl->scope, &t);

    *out = NULL;
    if (st != CK_OK) {
        ck_token_free(t);
        return st;
    }
    if (t == NULL || t->id == NULL) {
        st = CK_E_LOADER;
    } else {
        st = ck__token_to_json(t, tl->k->opt.key_hash == CK_KEY_PLAIN, out);
        if (st == CK_E_INVALID) {
            ck__log(ck__cache_logger(tl->k), CK_LOG_WARN,
                    "cache %s: the token loader returned a record with a string that is not "
                    "UTF-8: not cached", tl->k->name);
            st = CK_E_LOADER;
        }
    }
    ck_token_free(t);
    return st;
}

static ck_status ck__token_tags(const ck__loader *ld, const json_t *v, char **keys, size_t *n)
{
    const ck__token_loader *tl = (const ck__token_loader *)ld;
    const char *tenant = json_string_value(json_object_get(v, "tenant_id"));

    *n = 0;
    if (tenant == NULL)
        return CK_OK;
    keys[0] = ck__tenant_key(tl->k, tenant);
    if (keys[0] == NULL)
        return CK_OK; /* an odd tenant id: cached untagged, logged by nobody */
    *n = 1;
    return CK_OK;
}

ck_status ck_token_get(ck_cache *k, const char *token, const char *scope,
                       ck_token_loader_fn loader, void *user, ck_token **out)
{
    ck__token_loader tl = { { ck__token_load, ck__token_tags }, k, loader, user, scope };
    ck_get_info info;
    json_t *v = NULL;
    ck__ref r;
    ck_status st;
    char why[96];

    if (out != NULL)
        *out = NULL;
    if (k == NULL || out == NULL)
        return CK_E_INVALID;
    st = ck__cache_check(k, "ck_token_get", scope, token, &r);
    if (st != CK_OK)
        return st;
    memset(&info, 0, sizeof info);
    st = ck__cache_get(k, &r, loader != NULL ? &tl.base : NULL, &v, &info);
    if (st != CK_OK) {
        json_decref(v);
        return st;
    }
    st = ck__token_from_json(v, token, out, why, sizeof why);
    if (st == CK_E_CORRUPT) {
        ck__log(ck__cache_logger(k), CK_LOG_WARN, "cache %s: cached token record: %s", k->name,
                why);
        /* drop it so that the next lookup loads a good one */
        (void)ck_cache_invalidate(k, scope, token);
    } else if (st == CK_OK && k->opt.key_hash != CK_KEY_PLAIN) {
        /* the stored record has no token: the caller's argument is it */
        free((*out)->token);
        (*out)->token = strdup(token);
        if ((*out)->token == NULL) {
            ck_token_free(*out);
            *out = NULL;
            st = CK_E_NOMEM;
        }
    }
    json_decref(v);
    return st;
}

ck_status ck_token_invalidate_tenant(ck_cache *k, const char *tenant_id)
{
    char *key;
    ck_status st;

    if (k == NULL)
        return CK_E_INVALID;
    key = ck__tenant_key(k, tenant_id);
    if (key == NULL) {
        ck__log(ck__cache_logger(k), CK_LOG_ERROR,
                "ck_token_invalidate_tenant: tenant_id must be 1-248 bytes without control "
                "characters");
        return CK_E_INVALID;
    }
    st = ck__cache_invalidate_tagkey(k, key);
    free(key);
    return st;
}
