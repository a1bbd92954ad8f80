/* Key validation and layout. User strings reach Redis keys only after a
 * check (identifiers) or a hash (keys and tags, except in plain mode), and
 * every key is built with explicit lengths, never a format over user data. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <string.h>

#include "cache_internal.h"

static int ck__ident_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

size_t ck__ident_len(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return 0;
    for (n = 0; s[n] != '\0'; n++)
        if (n >= max || !ck__ident_char((unsigned char)s[n]))
            return 0;
    return n;
}

int ck__valid_ident(const char *s, size_t max)
{
    return ck__ident_len(s, max) > 0;
}

int ck__valid_name(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return 0;
    for (n = 0; s[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (n >= max || ch < 0x20 || ch == 0x7f || ch == '{' || ch == '}')
            return 0;
    }
    return n > 0;
}

int ck__valid_tag(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    for (n = 0; s[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (n >= CK__TAG_MAX || ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return n > 0;
}

size_t ck__cache_key_len(const char *s, int plain)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strnlen(s, CK__KEY_MAX + 1); /* the hot path (L1 hits): no byte loop */
    if (n > CK__KEY_MAX)
        return 0;
    for (size_t i = 0; plain && i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return 0;
    }
    return n;
}

int ck__valid_cache_key(const char *s, int plain)
{
    return ck__cache_key_len(s, plain) > 0;
}

static pthread_once_t ck__sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *ck__sha;         /* kept for the life of the process */
static pthread_key_t ck__sha_ctx; /* one reusable digest context per thread */

static void ck__sha_ctx_free(void *m)
{
    EVP_MD_CTX_free(m);
}

static void ck__sha_fetch(void)
{
    if (pthread_key_create(&ck__sha_ctx, ck__sha_ctx_free) == 0)
        ck__sha = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void ck__digest(const ck__keyspace *ks, char domain, const char *s, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE], head[2];
    unsigned int mdlen = 0;

    head[0] = (unsigned char)domain;
    head[1] = 0;
    if (ks->mode == CK_KEY_HMAC_SHA256) {
        /* one-shot HMAC() (the HMAC_CTX calls are deprecated in OpenSSL 3) */
        unsigned char in[2 + CK__KEY_MAX + CK__TAG_MAX];
        if (len <= sizeof in - 2) {
            memcpy(in, head, 2);
            memcpy(in + 2, s, len);
            if (HMAC(EVP_sha256(), ks->hkey, (int)ks->hkey_len, in, len + 2, md, &mdlen) == NULL)
                mdlen = 0;
        }
    } else {
        /* one fetch of the implementation per process and one context per
         * thread: OpenSSL 3 otherwise looks EVP_sha256() up and allocates
         * a context on every digest */
        EVP_MD_CTX *m;
        pthread_once(&ck__sha_once, ck__sha_fetch);
        m = ck__sha != NULL ? pthread_getspecific(ck__sha_ctx) : NULL;
        if (m == NULL && ck__sha != NULL && (m = EVP_MD_CTX_new()) != NULL)
            pthread_setspecific(ck__sha_ctx, m);
        if (m == NULL || EVP_DigestInit_ex2(m, ck__sha, NULL) != 1 ||
            EVP_DigestUpdate(m, head, 2) != 1 || EVP_DigestUpdate(m, s, len) != 1 ||
            EVP_DigestFinal_ex(m, md, &mdlen) != 1)
            mdlen = 0;
    }
    if (mdlen != 32) { /* libcrypto failed: never fall back to the raw input */
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* Appends with bounds; keys are built only from validated identifiers,
 * digests and (plain mode) a validated key, so CK__RKEY_MAX always fits. */
typedef struct ck__kb { char *p; size_t n; } ck__kb;

static void ck__put(ck__kb *b, const char *s)
{
    size_t len = strlen(s);
    if (b->n + len >= CK__RKEY_MAX)
        len = CK__RKEY_MAX - 1 - b->n;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void ck__head(ck__kb *b, const ck__keyspace *ks)
{
    ck__put(b, ks->prefix);
    ck__put(b, ":c:");
    ck__put(b, ks->name);
    ck__put(b, ":");
}

static void ck__tail(ck__kb *b, const char *h)
{
    ck__put(b, "{");
    ck__put(b, h);
    ck__put(b, "}");
}

size_t ck__key_entry(const ck__keyspace *ks, const char *scope, const char *kh,
                     const char *key, char *buf)
{
    ck__kb b = { buf, 0 };
    buf[0] = '\0';
    if (ks->mode == CK_KEY_PLAIN) { /* Dify's ApiTokenCache: <name>:<scope>:<key> */
        ck__put(&b, ks->name);
        ck__put(&b, ":");
        ck__put(&b, scope != NULL ? scope : "any");
        ck__put(&b, ":");
        ck__put(&b, key);
        return b.n;
    }
    ck__head(&b, ks);
    ck__put(&b, scope != NULL ? scope : "any");
    ck__put(&b, ":");
    ck__tail(&b, kh);
    return b.n;
}

size_t ck__key_scopes(const ck__keyspace *ks, const char *kh, char *buf)
{
    ck__kb b = { buf, 0 };
    buf[0] = '\0';
    ck__head(&b, ks);
    ck__put(&b, "s:");
    ck__tail(&b, kh);
    return b.n;
}

size_t ck__key_lock(const ck__keyspace *ks, const char *scope, const char *kh, char *buf)
{
    ck__kb b = { buf, 0 };
    buf[0] = '\0';
    ck__head(&b, ks);
    ck__put(&b, "lk:");
    ck__put(&b, scope != NULL ? scope : "any");
    ck__put(&b, ":");
    ck__tail(&b, kh);
    return b.n;
}

size_t ck__key_tag(const ck__keyspace *ks, const char *th, char *buf)
{
    ck__kb b = { buf, 0 };
    buf[0] = '\0';
    ck__head(&b, ks);
    ck__put(&b, "t:");
    ck__tail(&b, th);
    return b.n;
}
