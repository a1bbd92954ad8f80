/* libcachekit: status codes, version, logging. Included by every other header. */
#ifndef CACHEKIT_COMMON_H
#define CACHEKIT_COMMON_H

#include "cachekit/version.h"

#if defined(__GNUC__) && __GNUC__ >= 4
#  define CACHEKIT_API __attribute__((visibility("default")))
#else
#  define CACHEKIT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Result of every libcachekit call. Values >= 0 are outcomes (not failures),
 * values < 0 are errors. Details of an error go to the log callback, never
 * into the handle (a client is shared between threads).
 */
typedef enum ck_status {
    CK_OK = 0,
    CK_NOT_FOUND = 1,      /**< key known absent: loader said so, or a cached null */
    CK_MISS = 2,           /**< not cached and no loader was given */
    CK_BUSY = 3,           /**< lock held elsewhere after waiting wait_ms */
    CK_E_INVALID = -1,     /**< bad argument (NULL, empty key, limit <= 0, ...) */
    CK_E_NOMEM = -2,       /**< an allocation failed */
    CK_E_UNAVAILABLE = -3, /**< Redis unreachable, timed out, busy, or breaker open */
    CK_E_PROTOCOL = -4,    /**< unexpected reply from Redis */
    CK_E_CORRUPT = -5,     /**< cached payload could not be decoded (entry dropped) */
    CK_E_LOADER = -6,      /**< the host loader failed */
    CK_E_LOCK_LOST = -7    /**< lock expired or is owned by someone else */
} ck_status;

/**
 * A short English description of `s`.
 * @return a static string, never NULL ("unknown status" for values outside the enum).
 * Thread safety: any thread.
 */
CACHEKIT_API const char *ck_strerror(ck_status s);

/**
 * The version string of the library that is linked ("0.1.0").
 * @return a static string. Thread safety: any thread.
 */
CACHEKIT_API const char *ck_version(void);

/**
 * @return the version of the library that is linked, as CK_VERSION_NUMBER encodes it.
 * A host can assert ck_version_number() == CK_VERSION_NUMBER at start-up to
 * catch a header/library mismatch (the option structs are caller-sized).
 */
CACHEKIT_API int ck_version_number(void);

/** Log levels: a message is passed to the log function when its level is at or
 *  below ck_options.log_level. */
enum { CK_LOG_ERROR = 0, CK_LOG_WARN = 1, CK_LOG_INFO = 2, CK_LOG_DEBUG = 3 };

/**
 * Log hook. `msg` is preformatted, has no trailing newline and is valid only
 * during the call. It never contains a password, token or HMAC key.
 * May be called from several threads at once and from the library's timer
 * thread; it must not call back into libcachekit.
 */
typedef void (*ck_log_fn)(void *user, int level, const char *msg);

#ifdef __cplusplus
}
#endif

#endif
