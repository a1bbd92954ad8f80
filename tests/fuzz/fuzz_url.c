/* The Redis URL parser (lib/url.c): hostile strings, as a host would pass
 * from its configuration.
 *
 * Input: one mode byte, one byte sizing the error buffer, then the text.
 *   mode % 3 == 0: the text is the whole URL;
 *   mode % 3 == 1: "redis://user:<secret>@" + text;
 *   mode % 3 == 2: "unix://user:<secret>@" + text.
 * Checked: no crash, leak or read past the string; the error message fits
 * the caller's buffer, is NUL-terminated, starts with one of the two fixed
 * prefixes and never contains the password; an accepted URL has fields in
 * their documented ranges; a rejected one leaves nothing allocated. */
#include "fuzz.h"
#include "internal.h"

#include <sys/un.h>

#define CKT_FZ_URL_SECRET "Pw7s3cr3tXq"

static void ckt_fz_url_check_ok(const ck__url *u)
{
    if (u->is_unix) {
        CKT_FUZZ_CHECK(u->path != NULL && u->path[0] == '/' && strlen(u->path) >= 2);
        CKT_FUZZ_CHECK(strlen(u->path) < sizeof(((struct sockaddr_un *)0)->sun_path));
        CKT_FUZZ_CHECK(u->host == NULL);
    } else {
        size_t n;
        CKT_FUZZ_CHECK(u->host != NULL && u->path == NULL);
        n = strlen(u->host);
        CKT_FUZZ_CHECK(n >= 1 && n <= 255);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)u->host[i];
            CKT_FUZZ_CHECK(ch > 0x20 && ch < 0x7f && ch != '@' && ch != '/' && ch != '[' &&
                           ch != ']');
        }
        CKT_FUZZ_CHECK(u->port >= 1 && u->port <= 65535);
    }
    CKT_FUZZ_CHECK(u->db >= 0 && u->db <= 1000000);
    /* an ACL user never goes without a password */
    CKT_FUZZ_CHECK(u->user == NULL || u->pass != NULL);
    CKT_FUZZ_CHECK(u->pass == NULL || u->pass[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckt_fuzz_in in = { data, size };
    int mode = ckt_fuzz_u8(&in) % 3;
    size_t errlen = ckt_fuzz_u8(&in) % 200, tlen;
    char *text = ckt_fuzz_rest(&in, &tlen), *url, *err = ckt_fuzz_buf(errlen);
    const char *head = mode == 1 ? "redis://user:" CKT_FZ_URL_SECRET "@"
                     : mode == 2 ? "unix://user:" CKT_FZ_URL_SECRET "@"
                                 : "";
    size_t hlen = strlen(head);
    ck__url u;
    ck_status st;

    url = malloc(hlen + tlen + 1);
    if (url == NULL)
        abort();
    memcpy(url, head, hlen);
    memcpy(url + hlen, text, tlen + 1);

    st = ck__url_parse(url, &u, errlen > 0 ? err : NULL, errlen);
    CKT_FUZZ_CHECK(st == CK_OK || st == CK_E_INVALID || st == CK_E_NOMEM);
    if (errlen > 0) {
        CKT_FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
        if (st == CK_OK) {
            CKT_FUZZ_CHECK(err[0] == '\0');
        } else {
            /* the reason is one of ours: a fixed prefix (as much as fits) */
            const char *pre = st == CK_E_NOMEM ? "out of memory" : "invalid redis url: ";
            size_t n = strlen(err);
            CKT_FUZZ_CHECK(n == errlen - 1 || n > strlen(pre) ||
                           (st == CK_E_NOMEM && n == strlen(pre)));
            CKT_FUZZ_CHECK(strncmp(err, pre, n < strlen(pre) ? n : strlen(pre)) == 0);
            if (mode != 0 && strstr(text, CKT_FZ_URL_SECRET) == NULL)
                CKT_FUZZ_CHECK(strstr(err, CKT_FZ_URL_SECRET) == NULL);
        }
    }
    if (st == CK_OK) {
        ckt_fz_url_check_ok(&u);
        ck__url_clear(&u);
    } else {
        CKT_FUZZ_CHECK(u.host == NULL && u.path == NULL && u.user == NULL && u.pass == NULL);
    }
    /* the NULL error buffer is accepted too */
    st = ck__url_parse(url, &u, NULL, 0);
    if (st == CK_OK)
        ck__url_clear(&u);

    free(url);
    free(text);
    free(err);
    return 0;
}
