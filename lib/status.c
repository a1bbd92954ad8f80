/* ck_strerror and the version functions: static strings, no state. */
#include "internal.h"

const char *ck_strerror(ck_status s)
{
    switch (s) {
    case CK_OK:            return "ok";
    case CK_NOT_FOUND:     return "not found (known absent)";
    case CK_MISS:          return "not cached and no loader given";
    case CK_BUSY:          return "lock held elsewhere";
    case CK_E_INVALID:     return "invalid argument";
    case CK_E_NOMEM:       return "out of memory";
    case CK_E_UNAVAILABLE: return "redis unavailable (unreachable, timed out, busy or breaker open)";
    case CK_E_PROTOCOL:    return "unexpected reply from redis";
    case CK_E_CORRUPT:     return "cached payload could not be decoded";
    case CK_E_LOADER:      return "loader failed";
    case CK_E_LOCK_LOST:   return "lock lost (expired or owned by someone else)";
    }
    return "unknown status";
}

const char *ck_version(void)
{
    return CK_VERSION_STRING;
}

int ck_version_number(void)
{
    return CK_VERSION_NUMBER;
}
