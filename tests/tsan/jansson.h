/* <jansson.h> for the `make tsan` build only (-Itests/tsan comes first
 * there): jansson's own header, then its two refcount functions replaced.
 *
 * jansson's inline json_decref() decrements with __ATOMIC_RELEASE alone and
 * frees the value when the count reaches 0, without an acquire: the thread
 * that drops the last reference is not ordered after another thread's reads
 * of the value before its own json_decref. On x86 the hardware orders them;
 * in the C11 model (and so for ThreadSanitizer) they race, and TSan reports
 * every value two threads share (the L1 tier, waiters of one load) when the
 * last reference goes. Both inline functions also test the count with a
 * plain read next to the atomic update.
 *
 * This replaces the two functions, in this build only, with the usual
 * correct form (relaxed load; acq_rel decrement), so that TSan checks
 * libcachekit's use of shared values against a jansson that orders them.
 * It still reports any access made after the accessing thread's own
 * json_decref, which is the bug we are looking for. */
#ifndef CKT_TSAN_JANSSON_H
#define CKT_TSAN_JANSSON_H

/* a system header from here on: #include_next is a GCC extension */
#pragma GCC system_header

#define json_incref ckt_tsan_jansson_incref_unused
#define json_decref ckt_tsan_jansson_decref_unused
#include_next <jansson.h>
#undef json_incref
#undef json_decref

#if !JSON_HAVE_ATOMIC_BUILTINS
#error "jansson without __atomic builtins: its refcounts are not thread-safe at all"
#endif

static JSON_INLINE json_t *json_incref(json_t *json)
{
    if (json && __atomic_load_n(&json->refcount, __ATOMIC_RELAXED) != (size_t)-1)
        __atomic_add_fetch(&json->refcount, 1, __ATOMIC_RELAXED);
    return json;
}

static JSON_INLINE void json_decref(json_t *json)
{
    if (json && __atomic_load_n(&json->refcount, __ATOMIC_RELAXED) != (size_t)-1 &&
        __atomic_sub_fetch(&json->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        json_delete(json);
}

#endif
