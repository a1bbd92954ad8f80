/* The fuzz harnesses (tests/fuzz/fuzz_<name>.c) under the ordinary compiler:
 * each one's LLVMFuzzerTestOneInput runs on every file of its seed corpus
 * tests/fuzz/corpus/<name>/, which also holds the inputs that once found a
 * bug. `make fuzz` explores further with libFuzzer; this keeps the seeds and
 * regressions in `make check`, SANITIZE=1, valgrind and meson test.
 * The corpus is found through $CACHEKIT_FUZZ_CORPUS (meson sets it), else
 * next to this file (the Makefile runs the tests from the source root). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <check.h>
#include <cachekit.h>

/* Each harness, its entry point renamed. */
#define LLVMFuzzerTestOneInput ckt_fuzz_one_url
#include "fuzz/fuzz_url.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ckt_fuzz_one_codec
#include "fuzz/fuzz_codec.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ckt_fuzz_one_reply
#include "fuzz/fuzz_reply.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ckt_fuzz_one_keys
#include "fuzz/fuzz_keys.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput ckt_fuzz_one_format
#include "fuzz/fuzz_format.c"
#undef LLVMFuzzerTestOneInput

typedef int (*ckt_fuzz_fn)(const uint8_t *data, size_t size);

static void ckt_corpus_dir(const char *name, char *out, size_t outlen)
{
    const char *env = getenv("CACHEKIT_FUZZ_CORPUS");

    if (env != NULL && *env != '\0') {
        snprintf(out, outlen, "%s/%s", env, name);
    } else {
        /* __FILE__ is tests/check_fuzz_replay.c relative to the source root */
        const char *slash = strrchr(__FILE__, '/');
        int dirlen = slash != NULL ? (int)(slash - __FILE__) : 1;
        snprintf(out, outlen, "%.*s/fuzz/corpus/%s", dirlen, slash != NULL ? __FILE__ : ".",
                 name);
    }
}

static uint8_t *ckt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;

    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    for (;;) {
        if (n == cap) {
            cap = cap != 0 ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    ck_assert_msg(!ferror(f), "cannot read %s", path);
    fclose(f);
    *len = n;
    return buf;
}

static int ckt_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The input being replayed, named by the SIGABRT handler (a harness aborts
 * on a broken invariant); ASan's reports end with _exit instead: rerun with
 * CKT_FUZZ_VERBOSE=1 to see each input's name as it starts. */
static char ckt_current[2048];

static void ckt_on_abort(int sig)
{
    static const char pre[] = "fuzz replay: aborted on input ";
    (void)!write(2, pre, sizeof pre - 1);
    (void)!write(2, ckt_current, strlen(ckt_current));
    (void)!write(2, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Every regular file of the corpus, in name order (a failure names it). */
static void ckt_replay(const char *name, ckt_fuzz_fn fn)
{
    char dir[1024], path[2048];
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    DIR *d;

    ckt_corpus_dir(name, dir, sizeof dir);
    d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open the corpus %s: %s (set CACHEKIT_FUZZ_CORPUS)", dir,
                  strerror(errno));
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            cap = cap != 0 ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
            ck_assert_ptr_nonnull(names);
        }
        names[n] = strdup(e->d_name);
        ck_assert_ptr_nonnull(names[n]);
        n++;
    }
    closedir(d);
    ck_assert_msg(n > 0, "the corpus %s is empty", dir);
    qsort(names, n, sizeof *names, ckt_cmp_names);
    signal(SIGABRT, ckt_on_abort);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *data;

        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        data = ckt_read_file(path, &len);
        memcpy(ckt_current, path, sizeof ckt_current);
        if (getenv("CKT_FUZZ_VERBOSE") != NULL)
            fprintf(stderr, "replay %s\n", path);
        fn(data, len);
        free(data);
        free(names[i]);
    }
    free(names);
    signal(SIGABRT, SIG_DFL);
}

START_TEST(test_replay_url)
{
    ckt_replay("url", ckt_fuzz_one_url);
}
END_TEST

START_TEST(test_replay_codec)
{
    ckt_replay("codec", ckt_fuzz_one_codec);
}
END_TEST

START_TEST(test_replay_reply)
{
    ckt_replay("reply", ckt_fuzz_one_reply);
}
END_TEST

START_TEST(test_replay_keys)
{
    ckt_replay("keys", ckt_fuzz_one_keys);
}
END_TEST

START_TEST(test_replay_format)
{
    ckt_replay("format", ckt_fuzz_one_format);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("fuzz_replay");
    TCase *tc = tcase_create("corpus");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_replay_url);
    tcase_add_test(tc, test_replay_codec);
    tcase_add_test(tc, test_replay_reply);
    tcase_add_test(tc, test_replay_keys);
    tcase_add_test(tc, test_replay_format);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
