/* Internals of the cache and token layers: key building (keys.c) and the
 * stored formats (codec.c). Pure functions over explicit lengths, so the
 * tests and fuzzers can drive them without Redis. */
#ifndef CACHEKIT_CACHE_INTERNAL_H
#define CACHEKIT_CACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "internal.h"

#if !defined(JANSSON_THREAD_SAFE_REFCOUNT)
/* Values are shared between the threads that wait for one load; jansson
 * older than 2.11 counts references without atomics. */
#  error "libcachekit needs jansson >= 2.11 (thread-safe reference counts)"
#endif

#define CK__IDENT_MAX 64      /* cache names, scopes, the prefix */
#define CK__KEY_MAX 4096      /* a cache key (the caller's string) */
#define CK__TAG_MAX 256
#define CK__TAGS_MAX 16
#define CK__RKEY_MAX (CK__KEY_MAX + 3 * CK__IDENT_MAX + 128) /* a built Redis key */
#define CK__DEPTH_MAX 64      /* JSON nesting accepted from Redis */

/* 1..max bytes of [A-Za-z0-9_.-] */
int ck__valid_ident(const char *s, size_t max);
/* The length of a valid identifier, 0 for an invalid one. */
size_t ck__ident_len(const char *s, size_t max);
/* Lock names and rate keys: 1..max bytes, no '{', '}' or control chars. */
int ck__valid_name(const char *s, size_t max);
/* Tags: 1..CK__TAG_MAX bytes, no control characters. */
int ck__valid_tag(const char *s);
/* Cache keys: 1..CK__KEY_MAX bytes; in plain mode no control characters
 * either (they are the Redis key). */
int ck__valid_cache_key(const char *s, int plain);
/* The same check, answering the key's length (0: not valid). */
size_t ck__cache_key_len(const char *s, int plain);

typedef struct ck__keyspace {
    const char *prefix;        /* "ck" */
    const char *name;          /* the cache's name */
    ck_key_hash mode;
    const unsigned char *hkey; /* HMAC key (mode CK_KEY_HMAC_SHA256) */
    size_t hkey_len;
} ck__keyspace;

/* Hex digest (64 chars + NUL) of `s`, in a domain ('k' keys, 't' tags) so
 * that a key and a tag never hash alike: SHA-256 or HMAC-SHA-256 of
 * domain || 0x00 || s. In plain mode keys still get a digest for the index
 * keys. */
void ck__digest(const ck__keyspace *ks, char domain, const char *s, size_t len, char out[65]);

/* Redis keys (NUL-terminated in buf, which holds CK__RKEY_MAX bytes; the
 * length is returned). `scope` NULL means "any".
 *   entry   <prefix>:c:<name>:<scope>:{<kh>}     plain: <name>:<scope>:<key>
 *   scopes  <prefix>:c:<name>:s:{<kh>}
 *   lock    <prefix>:c:<name>:lk:<scope>:{<kh>}
 *   tag     <prefix>:c:<name>:t:{<th>}           plain tenant tags: see token.c */
size_t ck__key_entry(const ck__keyspace *ks, const char *scope, const char *kh,
                     const char *key, char *buf);
size_t ck__key_scopes(const ck__keyspace *ks, const char *kh, char *buf);
size_t ck__key_lock(const ck__keyspace *ks, const char *scope, const char *kh, char *buf);
size_t ck__key_tag(const ck__keyspace *ks, const char *th, char *buf);

/* ---- stored formats (codec.c) ----
 * Envelope: {"v": <value or null>, "x": <logical expiry, unix ms>, "t": [tags]},
 * written as {"x":..,"t":[..],"v":..} so that a reader can split it by hand
 * and parse only the value (any order is read); plain mode: the bare value,
 * "null" for an absence. */
char *ck__env_encode(const json_t *value, int64_t expiry_ms, const char *const *tags,
                     int plain, size_t *len);
/* CK_OK: *value is a new reference, or NULL for a cached absence; *expiry_ms
 * is 0 in plain mode. CK_E_CORRUPT: `why` says what was wrong (no payload
 * bytes in it). */
ck_status ck__env_decode(const char *s, size_t len, int plain, json_t **value,
                         int64_t *expiry_ms, char *why, size_t whylen);
/* The same answer from a full parse of the text alone, without the split
 * of ck__env_decode's fast path (the fuzz harness compares the two). */
ck_status ck__env_decode_full(const char *s, size_t len, int plain, json_t **value,
                              int64_t *expiry_ms, char *why, size_t whylen);
/* Nesting depth of JSON text, counted without parsing (strings skipped). */
int ck__json_depth(const char *s, size_t len);

/* Token records, in Dify's field names. with_token 0 leaves "token" out
 * (hashed modes: the raw token is stored nowhere). CK_OK and *out (a new
 * object), CK_E_INVALID when a string is not UTF-8 (JSON cannot carry it),
 * or CK_E_NOMEM. */
ck_status ck__token_to_json(const ck_token *t, int with_token, json_t **out);
/* A record from JSON; `token` (the caller's argument) fills ->token when
 * the record has none. CK_E_CORRUPT on wrong types. */
ck_status ck__token_from_json(const json_t *j, const char *token, ck_token **out,
                              char *why, size_t whylen);
/* ISO 8601 "YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|+HH:MM|-HH:MM]" (no zone = UTC)
 * to unix seconds. 0 on success, -1 if malformed. */
int ck__iso8601_parse(const char *s, int64_t *unix_s);
/* unix seconds to "YYYY-MM-DDTHH:MM:SS" (naive UTC, as Python's isoformat()
 * of Dify's naive_utc_now()). */
void ck__iso8601_format(int64_t unix_s, char out[32]);

#endif
