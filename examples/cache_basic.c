/* cache_basic: cache-aside in front of a database, with cached absences.
 *   cache_basic [redis-url]   (default $CACHEKIT_REDIS_URL, else redis://127.0.0.1:6379/0) */
#include <stdio.h>
#include <string.h>
#include <cachekit.h>

static int db_queries; /* the loader runs on the calling thread: one thread here */

/* The loader: SELECT name FROM users WHERE id = ? (a table in memory here). */
static ck_status load_user(void *user, const char *key, json_t **out)
{
    static const char *const rows[][2] = {{"1", "ada"}, {"2", "grace"}};

    (void)user;
    db_queries++;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (strcmp(rows[i][0], key) == 0)
            return (*out = json_pack("{s:s, s:s}", "id", key, "name", rows[i][1])) ? CK_OK
                                                                                     : CK_E_NOMEM;
    return CK_NOT_FOUND; /* cached as an absence for null_ttl_ms */
}

static int lookup(ck_cache *users, const char *id)
{
    static const char *const from[] = {"-", "L1", "redis", "database"};
    json_t *v = NULL;
    ck_get_info info;
    ck_status st = ck_cache_get(users, NULL, id, load_user, NULL, &v, &info);

    if (st == CK_OK) {
        printf("user %-3s -> %-6s (from %s%s)\n", id, json_string_value(json_object_get(v, "name")),
               from[info.source], info.degraded ? ", Redis down" : "");
        json_decref(v);
    } else if (st == CK_NOT_FOUND) {
        printf("user %-3s -> none   (from %s%s)\n", id, from[info.source],
               info.degraded ? ", Redis down" : "");
    } else {
        fprintf(stderr, "user %s: %s\n", id, ck_strerror(st));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const ids[] = {"1", "1", "404", "404", "2"};
    ck_options o;
    ck_cache_options co;
    ck_client *c;
    ck_cache *users;
    int rc = 0;

    ck_options_init(&o);
    o.url = argc > 1 ? argv[1] : NULL; /* NULL: $CACHEKIT_REDIS_URL or the default */
    if (ck_client_new(&o, &c) != CK_OK)
        return 1;
    ck_cache_options_init(&co);
    co.name = "users";
    co.ttl_ms = 60000;     /* a value lives a minute */
    co.null_ttl_ms = 5000; /* an absence five seconds */
    if (ck_cache_new(c, &co, &users) != CK_OK) {
        ck_client_free(c);
        return 1;
    }
    /* Start clean, so that every run prints the same. With Redis down this
     * fails and the lookups below still answer (fail-open: from the loader). */
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        ck_status st = ck_cache_invalidate(users, NULL, ids[i]);
        if (st != CK_OK)
            fprintf(stderr, "invalidate %s: %s\n", ids[i], ck_strerror(st));
    }
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == 0; i++)
        rc = lookup(users, ids[i]);
    if (rc == 0)
        printf("%zu lookups, %d database queries\n", sizeof ids / sizeof ids[0], db_queries);
    ck_cache_free(users);
    ck_client_free(c);
    return rc == 0 ? 0 : 1;
}
