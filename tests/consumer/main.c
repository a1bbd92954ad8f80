/* A consumer of an installed (pkg-config) or vendored (meson subproject)
 * libcachekit: checks that the header and the library it links agree, and
 * that the client API links. No Redis needed: connections are lazy. */
#include <stdio.h>
#include <string.h>

#include <cachekit.h>

int main(void)
{
    ck_options o;
    ck_client *c = NULL;
    ck_status st;

    printf("consumer: libcachekit %s, built against header %s\n", ck_version(),
           CK_VERSION_STRING);
    if (ck_version_number() != CK_VERSION_NUMBER) {
        fprintf(stderr, "consumer: ck_version_number() = 0x%06x, header says 0x%06x\n",
                (unsigned)ck_version_number(), (unsigned)CK_VERSION_NUMBER);
        return 1;
    }
    if (strcmp(ck_version(), CK_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: ck_version() = %s, header says %s\n", ck_version(),
                CK_VERSION_STRING);
        return 1;
    }

    ck_options_init(&o);
    o.url = "redis://127.0.0.1:1/0"; /* nothing listens there; never dialled */
    st = ck_client_new(&o, &c);
    if (st != CK_OK) {
        fprintf(stderr, "consumer: ck_client_new: %s\n", ck_strerror(st));
        return 1;
    }
    ck_client_free(c);
    printf("consumer: ok (%s)\n", ck_strerror(CK_OK));
    return 0;
}
