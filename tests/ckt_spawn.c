/* See ckt_spawn.h. */
#define _GNU_SOURCE
#include "ckt_spawn.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ckt_free_port(void)
{
    for (int tries = 0; tries < 10; tries++) {
        struct sockaddr_in a;
        socklen_t alen = sizeof a;
        int port = 0, fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return 0;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port != 6379)
            return port;
    }
    return 0;
}

redisContext *ckt_connect_port(int port, int timeout_ms)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx == NULL)
        return NULL;
    if (ctx->err) {
        redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    return ctx;
}

redisReply *ckt_cmd_port(int port, const char *const *argv)
{
    int argc = 0;
    redisReply *rep;
    redisContext *ctx = ckt_connect_port(port, 2000);
    if (ctx == NULL)
        return NULL;
    while (argv[argc] != NULL)
        argc++;
    rep = redisCommandArgv(ctx, argc, (const char **)argv, NULL);
    redisFree(ctx);
    return rep;
}

pid_t ckt_spawn_redis(const char *const *argv)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    /* The server dies with the test process, whatever kills it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    execvp("redis-server", (char *const *)argv);
    _exit(127);
}

int ckt_await_redis(pid_t pid, int port)
{
    const struct timespec ten_ms = { 0, 10 * 1000 * 1000 };

    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return -1;
        redisContext *ctx = ckt_connect_port(port, 200);
        if (ctx != NULL) {
            redisReply *rep = redisCommand(ctx, "PING");
            int ok = rep != NULL;
            if (rep != NULL)
                freeReplyObject(rep);
            redisFree(ctx);
            if (ok)
                return 0;
        }
        nanosleep(&ten_ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}
