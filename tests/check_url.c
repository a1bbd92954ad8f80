/* URL parsing: every accepted form, every rejection, and no password in any
 * error string. */
#include <stdlib.h>
#include <string.h>
#include <check.h>
#include <cachekit.h>
#include "internal.h"

static void ok(const char *s, ck__url *u)
{
    char err[160];
    ck_status st = ck__url_parse(s, u, err, sizeof err);

    ck_assert_msg(st == CK_OK, "'%s' rejected: %s", s, err);
}

static void bad(const char *s, const char *secret)
{
    char err[160];
    ck__url u;
    ck_status st = ck__url_parse(s, &u, err, sizeof err);

    ck_assert_msg(st == CK_E_INVALID, "'%s' accepted", s);
    ck_assert_uint_gt(strlen(err), 0);
    if (secret != NULL)
        ck_assert_msg(strstr(err, secret) == NULL, "error '%s' leaks the password", err);
    /* a rejected parse leaves nothing to free */
    ck_assert_ptr_null(u.host);
    ck_assert_ptr_null(u.pass);
}

START_TEST(test_tcp_forms)
{
    ck__url u;

    ok("redis://example.com", &u);
    ck_assert_str_eq(u.host, "example.com");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_ptr_null(u.user);
    ck_assert_ptr_null(u.pass);
    ck_assert_int_eq(u.is_unix, 0);
    ck__url_clear(&u);

    ok("redis://:s3cret@127.0.0.1:7000/2", &u);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.db, 2);
    ck_assert_ptr_null(u.user);
    ck_assert_str_eq(u.pass, "s3cret");
    ck__url_clear(&u);

    ok("redis://app:pw@h/", &u);
    ck_assert_str_eq(u.user, "app");
    ck_assert_str_eq(u.pass, "pw");
    ck_assert_int_eq(u.db, 0);
    ck__url_clear(&u);

    /* percent-encoding, and a raw '@' inside the password (last '@' wins) */
    ok("redis://us%40er:p%3Aw%2F@h:1", &u);
    ck_assert_str_eq(u.user, "us@er");
    ck_assert_str_eq(u.pass, "p:w/");
    ck__url_clear(&u);
    ok("redis://:p@ss@h", &u);
    ck_assert_str_eq(u.pass, "p@ss");
    ck_assert_str_eq(u.host, "h");
    ck__url_clear(&u);

    ok("redis://[::1]:6380/15", &u);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 15);
    ck__url_clear(&u);
    ok("redis://[::1]", &u);
    ck_assert_int_eq(u.port, 6379);
    ck__url_clear(&u);
}
END_TEST

START_TEST(test_unix_forms)
{
    ck__url u;

    ok("unix:///tmp/redis.sock", &u);
    ck_assert_int_eq(u.is_unix, 1);
    ck_assert_str_eq(u.path, "/tmp/redis.sock");
    ck_assert_int_eq(u.db, 0);
    ck__url_clear(&u);
    ok("unix:///tmp/redis.sock?db=3", &u);
    ck_assert_int_eq(u.db, 3);
    ck__url_clear(&u);
    ok("unix://:pw@/var/run/r.sock", &u);
    ck_assert_str_eq(u.pass, "pw");
    ck_assert_str_eq(u.path, "/var/run/r.sock");
    ck__url_clear(&u);
}
END_TEST

START_TEST(test_rejections)
{
    char longhost[400], longpath[200];

    bad(NULL, NULL);
    bad("", NULL);
    bad("http://h", NULL);
    bad("rediss://h", NULL);
    bad("redis://", NULL);
    bad("redis://:pw@", "pw");
    bad("redis://h:0", NULL);
    bad("redis://h:70000", NULL);
    bad("redis://h:abc", NULL);
    bad("redis://h:", NULL);
    bad("redis://h/x", NULL);
    bad("redis://h/-1", NULL);
    bad("redis://h/99999999999", NULL);
    bad("redis://h/1/2", NULL);
    bad("redis://[::1", NULL);
    bad("redis://[]:1", NULL);
    bad("redis://[::1]x", NULL);
    bad("redis://h h", NULL);
    bad("redis://h\n:1", NULL);
    bad("redis://u:%zz@h", NULL);
    bad("redis://u:ab%2@h", NULL);
    bad("redis://u:%00x@h", NULL);
    bad("redis://user@h", NULL);      /* an ACL user without password */
    bad("unix://", NULL);
    bad("unix://relative.sock", NULL);
    bad("unix:///", NULL);
    bad("unix:///s?db=x", NULL);
    bad("unix:///s?foo=1", NULL);
    bad("unix://host/s", NULL);
    memset(longhost, 'a', sizeof longhost);
    memcpy(longhost, "redis://", 8);
    longhost[sizeof longhost - 1] = '\0';
    bad(longhost, NULL);
    memset(longpath, 'p', sizeof longpath);
    memcpy(longpath, "unix:///", 8);
    longpath[sizeof longpath - 1] = '\0';
    bad(longpath, NULL);
}
END_TEST

START_TEST(test_password_never_in_errors)
{
    /* every rejection path that runs after the password was seen */
    static const char *const urls[] = {
        "redis://u:TopSecret99@h:0", "redis://u:TopSecret99@h:99999",
        "redis://u:TopSecret99@h/zz", "redis://u:TopSecret99@", "redis://u:TopSecret99@[::1",
        "unix://u:TopSecret99@/s?db=q", "rediss://u:TopSecret99@h", "redis://u:TopSecret99@h h",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++)
        bad(urls[i], "TopSecret99");
}
END_TEST

START_TEST(test_huge_input)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    ck__url u;
    char err[64];

    ck_assert_ptr_nonnull(s);
    memset(s, 'x', n);
    memcpy(s, "redis://", 8);
    s[n] = '\0';
    ck_assert_int_eq(ck__url_parse(s, &u, err, sizeof err), CK_E_INVALID);
    /* a tiny error buffer is still NUL-terminated */
    ck_assert_int_eq(ck__url_parse("nope", &u, err, 5), CK_E_INVALID);
    ck_assert_uint_eq(strlen(err), 4);
    ck_assert_int_eq(ck__url_parse("nope", &u, NULL, 0), CK_E_INVALID);
    free(s);
}
END_TEST

START_TEST(test_client_new_rejects_bad_url)
{
    ck_options o;
    ck_client *c = (ck_client *)&o;

    ck_options_init(&o);
    o.url = "redis://:Hunter2@h:0";
    ck_assert_int_eq(ck_client_new(&o, &c), CK_E_INVALID);
    ck_assert_ptr_null(c);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc = tcase_create("parse");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_tcp_forms);
    tcase_add_test(tc, test_unix_forms);
    tcase_add_test(tc, test_rejections);
    tcase_add_test(tc, test_password_never_in_errors);
    tcase_add_test(tc, test_huge_input);
    tcase_add_test(tc, test_client_new_rejects_bad_url);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
