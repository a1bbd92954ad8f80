/* rate_limit: several rules on one key, all or nothing, and the HTTP headers.
 *   rate_limit [redis-url]   (default $CACHEKIT_REDIS_URL, else redis://127.0.0.1:6379/0) */
#include <stdio.h>
#include <string.h>
#include <cachekit.h>

int main(int argc, char **argv)
{
    /* 5 requests per second (GCRA: a burst of 5, then one every 200 ms) and
     * 1000 a calendar day in UTC. Keep a key's rules in the same order: rule
     * i keeps its state under index i. */
    static const ck_rate_rule rules[] = {
        {CK_RL_GCRA, 5, 1000, 0},
        {CK_RL_CALENDAR_DAY, 1000, 0, 0},
    };
    const char *key = "api-key:demo"; /* whatever you limit: an API key, a user, an IP */
    ck_options o;
    ck_client *c;
    ck_status st;
    int allowed = 0, denied = 0;

    ck_options_init(&o);
    o.url = argc > 1 ? argv[1] : NULL; /* NULL: $CACHEKIT_REDIS_URL or the default */
    o.fail_mode = CK_FAIL_OPEN;        /* the default: admit while Redis is down */
    if (ck_client_new(&o, &c) != CK_OK)
        return 1;
    if ((st = ck_rate_reset(c, key)) != CK_OK) /* start clean: every run prints the same */
        fprintf(stderr, "reset: %s\n", ck_strerror(st));

    for (int i = 1; i <= 8; i++) {
        ck_rate_result r;
        char headers[256];

        st = ck_rate_check(c, key, rules, 2, 1, &r);
        if (st != CK_OK && st != CK_E_UNAVAILABLE) { /* UNAVAILABLE: CK_FAIL_CLOSED only */
            fprintf(stderr, "check: %s\n", ck_strerror(st));
            break;
        }
        if (ck_rate_format_headers(&r, headers, sizeof headers) >= (int)sizeof headers)
            fprintf(stderr, "headers truncated\n");
        for (char *p = headers; (p = strstr(p, "\r\n")) != NULL; p += 2)
            memcpy(p, p[2] ? "; " : "\0\0", 2); /* one line each, for the terminal */
        if (r.allowed)
            allowed++;
        else
            denied++;
        printf("request %d: %s  %s\n", i, r.allowed ? "200" : "429", headers);
        if (r.degraded)
            printf("  (Redis down: admitted by the fail mode)\n");
    }
    printf("%d allowed, %d denied\n", allowed, denied);
    ck_client_free(c);
    return allowed + denied == 8 ? 0 : 1;
}
