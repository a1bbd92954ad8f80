/* One Redis connection and the library's own I/O loop.
 *
 * hiredis 0.14.1's socket timeout bounds each read(), not a command: a server
 * that drips a byte every 80 ms keeps a 100 ms-timeout call busy forever. So
 * we own the loop: send()/recv() with MSG_DONTWAIT (the socket itself stays
 * blocking for ck_client_run's hiredis calls), poll() against one absolute
 * CLOCK_MONOTONIC deadline, and hiredis only as the RESP codec. The first
 * read of a reply may block instead, bounded by the socket's SO_RCVTIMEO
 * (ck__conn_read_timeout). MSG_NOSIGNAL keeps SIGPIPE out of the host. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define CK__RECV_CHUNK 16384

const char *ck__fail_str(ck__fail f)
{
    switch (f) {
    case CK__FAIL_NONE:      return "ok";
    case CK__FAIL_TIMEOUT:   return "timed out";
    case CK__FAIL_IO:        return "connection failed";
    case CK__FAIL_TOO_LARGE: return "reply larger than max_reply_bytes";
    case CK__FAIL_PROTOCOL:  return "protocol error";
    case CK__FAIL_NOMEM:     return "out of memory";
    }
    return "unknown";
}

/* Wait for `events` on fd until the deadline. Returns revents, 0 on timeout,
 * -1 on a poll error. */
static int ck__wait(int fd, short events, int64_t deadline_ns)
{
    struct pollfd p;

    p.fd = fd;
    p.events = events;
    for (;;) {
        int64_t left = deadline_ns - ck__now_ns();
        int ms, r;

        if (left <= 0)
            return 0;
        /* round up so that we never wake before the deadline and spin */
        ms = left / 1000000 >= INT_MAX ? INT_MAX : (int)((left + 999999) / 1000000);
        p.revents = 0;
        r = poll(&p, 1, ms);
        if (r > 0)
            return p.revents;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int ck__set_blocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Non-blocking connect of one address, bounded by the deadline. */
static int ck__connect_addr(int family, const struct sockaddr *sa, socklen_t salen,
                            int64_t deadline_ns, ck__fail *why, int *sys_err)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = 0;
    socklen_t elen = sizeof err;

    if (fd < 0) {
        *sys_err = errno;
        *why = CK__FAIL_IO;
        return -1;
    }
    if (connect(fd, sa, salen) != 0) {
        int rev;

        if (errno != EINPROGRESS) { /* refused, unreachable, or a unix backlog full */
            *sys_err = errno;
            close(fd);
            *why = CK__FAIL_IO;
            return -1;
        }
        rev = ck__wait(fd, POLLOUT, deadline_ns);
        if (rev <= 0) {
            *sys_err = rev == 0 ? ETIMEDOUT : errno;
            close(fd);
            *why = rev == 0 ? CK__FAIL_TIMEOUT : CK__FAIL_IO;
            return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            *sys_err = err != 0 ? err : errno;
            close(fd);
            *why = CK__FAIL_IO;
            return -1;
        }
    }
    if (family != AF_UNIX) {
        int one = 1;
        /* requests are small: never let Nagle hold one back */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    if (ck__set_blocking(fd) != 0) {
        *sys_err = errno;
        close(fd);
        *why = CK__FAIL_IO;
        return -1;
    }
    return fd;
}

static int ck__connect_fd(const ck__url *u, int64_t deadline_ns, ck__fail *why, int *sys_err)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int fd = -1;

    if (u->is_unix) {
        struct sockaddr_un sa;

        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, u->path, strlen(u->path) + 1); /* length checked by the parser */
        return ck__connect_addr(AF_UNIX, (const struct sockaddr *)&sa, sizeof sa, deadline_ns,
                                why, sys_err);
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", u->port);
    /* getaddrinfo() is not bounded by the deadline (documented); a numeric
     * address resolves without any I/O. */
    if (getaddrinfo(u->host, port, &hints, &res) != 0 || res == NULL) {
        *why = CK__FAIL_IO;
        *sys_err = EHOSTUNREACH; /* name did not resolve */
        return -1;
    }
    *why = CK__FAIL_IO;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        if (ck__now_ns() >= deadline_ns) {
            *why = CK__FAIL_TIMEOUT;
            *sys_err = ETIMEDOUT;
            break;
        }
        fd = ck__connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ns, why,
                              sys_err);
    }
    freeaddrinfo(res);
    return fd;
}

static ck__fail ck__send_all(int fd, const char *buf, size_t len, int64_t deadline_ns)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rev = ck__wait(fd, POLLOUT, deadline_ns);
            if (rev == 0)
                return CK__FAIL_TIMEOUT;
            if (rev < 0 || (rev & (POLLERR | POLLNVAL)))
                return CK__FAIL_IO;
            continue;
        }
        return CK__FAIL_IO;
    }
    return CK__FAIL_NONE;
}

/* The length announced by a bulk string header at the reader's cursor, or -1.
 * Lets us refuse an oversized value after its first bytes instead of buffering
 * it whole. */
static long long ck__pending_bulk_len(const redisReader *r)
{
    const char *p = r->buf + r->pos, *end = r->buf + r->len;
    long long v = 0;

    if (p >= end || *p != '$')
        return -1;
    for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (LLONG_MAX - 9) / 10)
            return LLONG_MAX;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* hiredis 0.14.1 allocates an array reply's element table, 8 bytes per
 * element, as soon as it has read the "*N" header: "*999999999\r\n", twelve
 * bytes from a broken or hostile server, asks for 8 GB. Every element takes at
 * least 3 bytes on the wire ("+\r\n"), so an array announcing more than
 * max_bytes / 3 elements cannot fit within the reply bound anyway: our
 * createArray refuses it before hiredis allocates anything. The reader then
 * fails as out of memory, and g->tripped tells the caller which it was. */
static redisReplyObjectFunctions ck__guarded_fns;
static void *(*ck__hiredis_create_array)(const redisReadTask *, int);
static pthread_once_t ck__guard_once = PTHREAD_ONCE_INIT;

static void *ck__guarded_create_array(const redisReadTask *task, int elements)
{
    ck__reply_guard *g = task->privdata;

    if (g != NULL && elements > 0 && (size_t)elements > g->max_bytes / 3 + 1) {
        g->tripped = 1;
        return NULL;
    }
    return ck__hiredis_create_array(task, elements);
}

static void ck__guard_init(void)
{
    /* hiredis's default functions are static: borrow them from a reader */
    redisReader *r = redisReaderCreate();

    if (r == NULL || r->fn == NULL || r->fn->createArray == NULL) {
        redisReaderFree(r);
        return; /* left unguarded: ck__reader_guard changes nothing */
    }
    ck__guarded_fns = *r->fn;
    ck__hiredis_create_array = r->fn->createArray;
    ck__guarded_fns.createArray = ck__guarded_create_array;
    redisReaderFree(r);
}

void ck__reader_guard(redisReader *r, ck__reply_guard *g)
{
    pthread_once(&ck__guard_once, ck__guard_init);
    if (r == NULL || ck__hiredis_create_array == NULL)
        return;
    r->fn = &ck__guarded_fns;
    r->privdata = g;
}

/* Read one reply, bounded by deadline and size. */
static ck__fail ck__read_reply(ck__conn *cn, int64_t deadline_ns, size_t max_bytes,
                               redisReply **out, size_t *received, int wait_first)
{
    redisContext *ctx = cn->ctx;
    size_t got = 0;
    int block = 0; /* the next recv() may block (the first one only) */
    char buf[CK__RECV_CHUNK];

    *out = NULL;
    cn->guard.max_bytes = max_bytes;
    for (;;) {
        void *reply = NULL;
        ssize_t n;

        if (redisReaderGetReply(ctx->reader, &reply) != REDIS_OK) {
            if (cn->guard.tripped)
                return CK__FAIL_TOO_LARGE;
            return ctx->reader->err == REDIS_ERR_OOM ? CK__FAIL_NOMEM : CK__FAIL_PROTOCOL;
        }
        if (reply != NULL) {
            *out = reply;
            return CK__FAIL_NONE;
        }
        if (ck__pending_bulk_len(ctx->reader) > (long long)max_bytes)
            return CK__FAIL_TOO_LARGE;
        if (wait_first) {
            /* right after the send nothing can be there yet: a recv()
             * would only say EAGAIN, so wait first (one syscall saved).
             * While the whole timeout is ahead (less 1 ms), a blocking
             * recv() waits and reads in one syscall: its SO_RCVTIMEO ends
             * it at most 1 ms and the kernel's rounding up (one tick) past
             * the deadline, and then the loop finds the deadline passed */
            wait_first = 0;
            block = cn->rcvtimeo_ns > 0 && deadline_ns - ck__now_ns() >= cn->rcvtimeo_ns - 1000000;
            if (!block) {
                int rev = ck__wait(ctx->fd, POLLIN, deadline_ns);
                if (rev == 0)
                    return CK__FAIL_TIMEOUT;
                if (rev < 0 || (rev & POLLNVAL))
                    return CK__FAIL_IO;
            }
        }
        n = recv(ctx->fd, buf, sizeof buf, block ? 0 : MSG_DONTWAIT);
        block = 0;
        if (n > 0) {
            got += (size_t)n;
            *received += (size_t)n;
            /* everything this reply buffered so far counts, whatever its shape */
            if (got > max_bytes + 64)
                return CK__FAIL_TOO_LARGE;
            if (redisReaderFeed(ctx->reader, buf, (size_t)n) != REDIS_OK)
                return CK__FAIL_PROTOCOL;
            continue;
        }
        if (n == 0)
            return CK__FAIL_IO; /* EOF: the server closed */
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rev = ck__wait(ctx->fd, POLLIN, deadline_ns);
            if (rev == 0)
                return CK__FAIL_TIMEOUT;
            if (rev < 0 || (rev & POLLNVAL))
                return CK__FAIL_IO;
            continue; /* POLLIN or POLLHUP/POLLERR: recv tells which */
        }
        return CK__FAIL_IO;
    }
}

void ck__conn_read_timeout(ck__conn *cn, int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    /* ck_client_run's hiredis reads block on the same socket: each starts
     * after its call's deadline was set to now + ms, so this timeout never
     * ends one before the library's timer shuts the socket down */
    if (setsockopt(cn->ctx->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0)
        cn->rcvtimeo_ns = ck__ms_to_ns(ms);
}

/* Decimal digits of v. */
static size_t ck__digits(size_t v)
{
    size_t d = 1;

    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* "<mark><v>\r\n" at p; returns the end. */
static char *ck__resp_head(char *p, char mark, size_t v)
{
    size_t d = ck__digits(v);

    *p++ = mark;
    for (size_t i = d; i-- > 0; v /= 10)
        p[i] = (char)('0' + v % 10);
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

char *ck__resp_format(char *stack, size_t cap, int n, const int *argc,
                      const char *const *const *argv, const size_t *const *argvlen, size_t *len)
{
    size_t total = 0;
    char *buf, *p;

    for (int i = 0; i < n; i++) {
        if (argc[i] < 0)
            return NULL;
        total += 3 + ck__digits((size_t)argc[i]);
        for (int j = 0; j < argc[i]; j++) {
            size_t l = argvlen[i][j];
            /* far beyond any command Redis takes (512 MB a string), and
             * total cannot wrap */
            if (l >= (size_t)1 << 40 || total >= (size_t)1 << 41)
                return NULL;
            total += 5 + ck__digits(l) + l;
        }
    }
    buf = total <= cap ? stack : malloc(total);
    if (buf == NULL)
        return NULL;
    p = buf;
    for (int i = 0; i < n; i++) {
        p = ck__resp_head(p, '*', (size_t)argc[i]);
        for (int j = 0; j < argc[i]; j++) {
            size_t l = argvlen[i][j];
            p = ck__resp_head(p, '$', l);
            if (l > 0)
                memcpy(p, argv[i][j], l);
            p += l;
            *p++ = '\r';
            *p++ = '\n';
        }
    }
    *len = total;
    return buf;
}

ck__fail ck__conn_pipeline(ck__conn *cn, int n, const int *argc, const char *const *const *argv,
                           const size_t *const *argvlen, int64_t deadline_ns,
                           size_t max_reply_bytes, redisReply **replies, ck__io *io)
{
    char stack[1024], *cmd;
    size_t total = 0;
    ck__fail f;
    int i;

    io->sent = 0;
    io->received = 0;
    for (i = 0; i < n; i++)
        replies[i] = NULL;
    /* all commands in one buffer: one write, one round trip */
    cmd = ck__resp_format(stack, sizeof stack, n, argc, argv, argvlen, &total);
    if (cmd == NULL)
        return CK__FAIL_NOMEM;
    f = ck__send_all(cn->ctx->fd, cmd, total, deadline_ns);
    if (cmd != stack)
        free(cmd);
    if (f != CK__FAIL_NONE)
        return f;
    io->sent = 1;
    for (i = 0; i < n; i++) {
        f = ck__read_reply(cn, deadline_ns, max_reply_bytes, &replies[i], &io->received, i == 0);
        if (f != CK__FAIL_NONE) {
            while (i-- > 0) {
                freeReplyObject(replies[i]);
                replies[i] = NULL;
            }
            return f;
        }
    }
    return CK__FAIL_NONE;
}

int ck__conn_reusable(ck__conn *cn, int ask_socket)
{
    struct pollfd p;

    if (cn->ctx->err != 0 || cn->ctx->reader->pos < cn->ctx->reader->len)
        return 0;
    if (!ask_socket)
        return 1;
    /* A healthy idle connection has nothing to read: readable means EOF (the
     * server closed it, e.g. CLIENT KILL or timeout) or stray bytes (a late
     * reply) — both make it unusable. */
    p.fd = cn->ctx->fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 0;
}

void ck__conn_free(ck__conn *cn)
{
    if (cn == NULL)
        return;
    redisFree(cn->ctx); /* closes the fd; sends nothing */
    free(cn);
}

static int ck__info_evicting(const redisReply *r)
{
    static const char field[] = "maxmemory_policy:";
    const char *p, *end;

    if (r == NULL || r->type != REDIS_REPLY_STRING || r->str == NULL)
        return 0;
    end = r->str + r->len;
    for (p = r->str; p + sizeof field - 1 <= end; p++) {
        if (memcmp(p, field, sizeof field - 1) == 0) {
            p += sizeof field - 1;
            return !((size_t)(end - p) >= 10 && memcmp(p, "noeviction", 10) == 0);
        }
        p = memchr(p, '\n', (size_t)(end - p));
        if (p == NULL)
            break;
    }
    return 0;
}

ck_status ck__conn_open(const ck__url *u, int64_t deadline_ns, const ck__logger *lg,
                        int *want_info, int *evicting, ck__conn **out, ck__fail *why,
                        int *sys_err)
{
    const char *argv[4][3];
    size_t lens[4][3];
    const char *const *av[4];
    const size_t *lv[4];
    int argc[4], n = 0, i, fd, i_auth = -1, i_select = -1, i_name, i_info = -1;
    char dbbuf[16], name[32];
    redisReply *rep[4];
    ck__conn *cn;
    ck__io io;
    ck_status st = CK_OK;

    *out = NULL;
    *why = CK__FAIL_NONE;
    *sys_err = 0;
    fd = ck__connect_fd(u, deadline_ns, why, sys_err);
    if (fd < 0)
        return CK_E_UNAVAILABLE;
    cn = calloc(1, sizeof *cn);
    if (cn == NULL || (cn->ctx = redisConnectFd(fd)) == NULL) {
        if (cn == NULL || cn->ctx == NULL)
            close(fd);
        free(cn);
        *why = CK__FAIL_NOMEM;
        return CK_E_NOMEM;
    }
    if (cn->ctx->err != 0) {
        ck__conn_free(cn);
        *why = CK__FAIL_IO;
        return CK_E_UNAVAILABLE;
    }
    /* the handshake's replies and the L1 subscriber's messages are small;
     * each command's read sets its own bound */
    cn->guard.max_bytes = (size_t)1 << 20;
    ck__reader_guard(cn->ctx->reader, &cn->guard);
    /* The handshake is pipelined: one round trip whatever it contains. */
    if (u->pass != NULL) {
        i_auth = n;
        argv[n][0] = "AUTH"; lens[n][0] = 4;
        if (u->user != NULL) {
            argv[n][1] = u->user; lens[n][1] = strlen(u->user);
            argv[n][2] = u->pass; lens[n][2] = strlen(u->pass);
            argc[n++] = 3;
        } else {
            argv[n][1] = u->pass; lens[n][1] = strlen(u->pass);
            argc[n++] = 2;
        }
    }
    if (u->db != 0) {
        i_select = n;
        snprintf(dbbuf, sizeof dbbuf, "%d", u->db);
        argv[n][0] = "SELECT"; lens[n][0] = 6;
        argv[n][1] = dbbuf; lens[n][1] = strlen(dbbuf);
        argc[n++] = 2;
    }
    snprintf(name, sizeof name, "ck:%ld", (long)getpid());
    i_name = n;
    argv[n][0] = "CLIENT"; lens[n][0] = 6;
    argv[n][1] = "SETNAME"; lens[n][1] = 7;
    argv[n][2] = name; lens[n][2] = strlen(name);
    argc[n++] = 3;
    if (*want_info) {
        i_info = n;
        argv[n][0] = "INFO"; lens[n][0] = 4;
        argv[n][1] = "memory"; lens[n][1] = 6;
        argc[n++] = 2;
    }
    for (i = 0; i < n; i++) {
        av[i] = argv[i];
        lv[i] = lens[i];
    }
    *why = ck__conn_pipeline(cn, n, argc, av, lv, deadline_ns, 1 << 20, rep, &io);
    if (*why != CK__FAIL_NONE) {
        ck__conn_free(cn);
        return *why == CK__FAIL_NOMEM ? CK_E_NOMEM : CK_E_UNAVAILABLE;
    }
    if (i_auth >= 0 && rep[i_auth]->type == REDIS_REPLY_ERROR) {
        char e[96], user[72];
        ck__log_sanitize(e, sizeof e, rep[i_auth]->str, rep[i_auth]->len);
        ck__log_sanitize(user, sizeof user, u->user != NULL ? u->user : "default",
                         u->user != NULL ? strlen(u->user) : 7);
        /* never the password: only the user name and the server's words */
        ck__log(lg, CK_LOG_ERROR, "redis authentication failed for user %s: %s", user, e);
        st = CK_E_UNAVAILABLE;
    } else if (i_select >= 0 && rep[i_select]->type == REDIS_REPLY_ERROR) {
        char e[96];
        ck__log_sanitize(e, sizeof e, rep[i_select]->str, rep[i_select]->len);
        ck__log(lg, CK_LOG_ERROR, "redis SELECT %d failed: %s", u->db, e);
        st = CK_E_UNAVAILABLE;
    } else if (rep[i_name]->type == REDIS_REPLY_ERROR && rep[i_name]->len >= 6 &&
               memcmp(rep[i_name]->str, "NOAUTH", 6) == 0) {
        ck__log(lg, CK_LOG_ERROR, "redis requires a password and the url gives none");
        st = CK_E_UNAVAILABLE;
    } else if (rep[i_name]->type == REDIS_REPLY_ERROR) {
        /* CLIENT SETNAME refused (an ACL without it): harmless */
        ck__log(lg, CK_LOG_DEBUG, "CLIENT SETNAME refused; connections stay unnamed");
    }
    if (st == CK_OK && i_info >= 0) {
        *want_info = 0;
        if (rep[i_info]->type == REDIS_REPLY_ERROR)
            ck__log(lg, CK_LOG_DEBUG, "INFO memory refused; cannot check maxmemory_policy");
        else
            *evicting = ck__info_evicting(rep[i_info]);
    }
    for (i = 0; i < n; i++)
        freeReplyObject(rep[i]);
    if (st != CK_OK) {
        *why = CK__FAIL_IO;
        ck__conn_free(cn);
        return st;
    }
    *out = cn;
    return CK_OK;
}
