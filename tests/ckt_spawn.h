/* Starting a private redis-server, without <check.h>: shared by the check
 * suites' harness (ckt_redis.c, which asserts on these results) and the
 * soak (tests/soak/soak.c), which runs outside check's runner. */
#ifndef CKT_SPAWN_H
#define CKT_SPAWN_H

#include <sys/types.h>
#include <hiredis/hiredis.h>

/* A loopback port that was free a moment ago (bound, then closed), never
 * 6379; 0 when no socket could be bound. */
int ckt_free_port(void);
/* A connection to 127.0.0.1:port with that connect and I/O timeout, or NULL. */
redisContext *ckt_connect_port(int port, int timeout_ms);
/* One command (argv NULL-terminated) on a fresh connection to port (2 s
 * timeouts): the reply (freeReplyObject it), or NULL. */
redisReply *ckt_cmd_port(int port, const char *const *argv);
/* Fork and exec redis-server with argv (NULL-terminated, argv[0]
 * "redis-server"), stdio on /dev/null. The server is killed when the thread
 * that called this ends (PR_SET_PDEATHSIG): call it from a thread that lives
 * as long as the server should. Returns its pid, or -1 (errno) if fork
 * failed. */
pid_t ckt_spawn_redis(const char *const *argv);
/* Wait up to ~5 s until the server `pid` answers PING on port (any reply:
 * with requirepass it is NOAUTH): 0. -1 when it exited first (a taken port)
 * or never answered (then it is killed); either way it is reaped. */
int ckt_await_redis(pid_t pid, int port);

#endif
