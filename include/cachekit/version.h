/* libcachekit version: this header is the single source of truth. The
 * Makefile and meson.build read these macros; the soname follows them. */
#ifndef CACHEKIT_VERSION_H
#define CACHEKIT_VERSION_H

#define CK_VERSION_MAJOR 0
#define CK_VERSION_MINOR 1
#define CK_VERSION_PATCH 0
#define CK_VERSION_STRING "0.1.0"
/** 0xMMmmpp: compare with ck_version_number() to detect a header/library mismatch. */
#define CK_VERSION_NUMBER ((CK_VERSION_MAJOR << 16) | (CK_VERSION_MINOR << 8) | CK_VERSION_PATCH)

#endif
