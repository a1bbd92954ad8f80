/* Test support: a one-thread TCP fault proxy (see ckt.h).
 *
 * Client->server bytes are forwarded at once (except in BLACKHOLE); the
 * server->client direction goes through a per-connection queue so that DELAY
 * and DRIP can hold bytes back. The mode is read on every loop turn, so a
 * switch applies to connections that are already open. */
#define _GNU_SOURCE
#include "ckt.h"

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAXPAIRS 64

typedef struct pair {
    int cfd, sfd;
    char *q;          /* server->client bytes not yet forwarded */
    size_t qlen, qcap;
    int64_t next_ms;  /* when the queue (DELAY) or its next byte (DRIP) may go */
} pair;

struct ckt_proxy {
    int lfd, target, port;
    char url[64];
    int wake[2];
    pthread_t th;
    _Atomic int mode, arg, stop;
    _Atomic unsigned accepts;
    _Atomic uint64_t bytes_in;
    pair pairs[MAXPAIRS];
    int npairs;
};

static void hard_close(int fd)
{
    struct linger lg = { 1, 0 }; /* close sends RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void drop_pair(ckt_proxy *p, int i, int reset)
{
    pair *pr = &p->pairs[i];
    if (reset) {
        hard_close(pr->cfd);
        hard_close(pr->sfd);
    } else {
        close(pr->cfd);
        close(pr->sfd);
    }
    free(pr->q);
    p->pairs[i] = p->pairs[--p->npairs];
}

static int connect_target(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void queue_add(pair *pr, const char *b, size_t n)
{
    if (pr->qlen + n > pr->qcap) {
        size_t cap = (pr->qlen + n) * 2;
        char *nq = realloc(pr->q, cap);
        if (nq == NULL)
            return;
        pr->q = nq;
        pr->qcap = cap;
    }
    memcpy(pr->q + pr->qlen, b, n);
    pr->qlen += n;
}

static void queue_send(pair *pr, size_t n)
{
    ssize_t w = send(pr->cfd, pr->q, n, MSG_NOSIGNAL);
    if (w > 0) {
        memmove(pr->q, pr->q + w, pr->qlen - (size_t)w);
        pr->qlen -= (size_t)w;
    }
}

/* Forward what the queue allows now; returns ms until it may send more. */
static int flush_queue(pair *pr, int mode, int arg, int64_t now)
{
    if (pr->qlen == 0)
        return 1000;
    switch (mode) {
    case CKT_PASS:
        queue_send(pr, pr->qlen);
        return 1000;
    case CKT_DELAY:
        if (now >= pr->next_ms) {
            queue_send(pr, pr->qlen);
            return 1000;
        }
        return (int)(pr->next_ms - now);
    case CKT_DRIP:
        if (now >= pr->next_ms) {
            queue_send(pr, 1);
            pr->next_ms = now + arg;
        }
        return pr->qlen ? (int)(pr->next_ms - now > 0 ? pr->next_ms - now : 0) : 1000;
    default:
        return 1000;
    }
}

static void *proxy_main(void *arg)
{
    ckt_proxy *p = arg;
    struct pollfd pf[2 + 2 * MAXPAIRS];
    char buf[16384];

    while (!atomic_load(&p->stop)) {
        int mode = atomic_load(&p->mode), marg = atomic_load(&p->arg);
        int64_t now = ckt_now_ms();
        int timeout = 50, n = 0;

        if (mode == CKT_RESET)
            while (p->npairs > 0)
                drop_pair(p, p->npairs - 1, 1);
        for (int i = 0; i < p->npairs; i++) {
            int t = flush_queue(&p->pairs[i], mode, marg, now);
            if (t < timeout)
                timeout = t;
        }

        pf[n++] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
        pf[n++] = (struct pollfd){ .fd = p->wake[0], .events = POLLIN };
        for (int i = 0; i < p->npairs; i++) {
            pf[n++] = (struct pollfd){ .fd = p->pairs[i].cfd, .events = POLLIN };
            pf[n++] = (struct pollfd){ .fd = p->pairs[i].sfd, .events = POLLIN };
        }
        if (poll(pf, (nfds_t)n, timeout) < 0)
            continue;
        if (pf[1].revents & POLLIN) {
            char c[64];
            (void)!read(p->wake[0], c, sizeof c);
        }
        mode = atomic_load(&p->mode);
        marg = atomic_load(&p->arg);
        now = ckt_now_ms();

        /* Pairs first (indices in pf match p->pairs before any change). */
        for (int i = p->npairs - 1; i >= 0; i--) {
            pair *pr = &p->pairs[i];
            short cre = pf[2 + 2 * i].revents, sre = pf[3 + 2 * i].revents;
            int dead = 0;
            if (cre & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(pr->cfd, buf, sizeof buf, 0);
                if (r <= 0)
                    dead = 1;
                else {
                    atomic_fetch_add(&p->bytes_in, (uint64_t)r);
                    if (mode != CKT_BLACKHOLE && send(pr->sfd, buf, (size_t)r, MSG_NOSIGNAL) != r)
                        dead = 1;
                }
            }
            if (!dead && (sre & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t r = recv(pr->sfd, buf, sizeof buf, 0);
                if (r <= 0)
                    dead = 1;
                else if (mode != CKT_BLACKHOLE) {
                    if (pr->qlen == 0)
                        pr->next_ms = now + (mode == CKT_DELAY ? marg : 0);
                    queue_add(pr, buf, (size_t)r);
                    flush_queue(pr, mode, marg, now);
                }
            }
            if (dead)
                drop_pair(p, i, 0);
        }

        if (pf[0].revents & POLLIN) {
            int cfd = accept(p->lfd, NULL, NULL);
            if (cfd >= 0) {
                atomic_fetch_add(&p->accepts, 1);
                int sfd = mode == CKT_RESET ? -1 : connect_target(p->target);
                if (sfd < 0 || p->npairs == MAXPAIRS) {
                    hard_close(cfd);
                    if (sfd >= 0)
                        close(sfd);
                } else {
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    p->pairs[p->npairs++] = (pair){ .cfd = cfd, .sfd = sfd };
                }
            }
        }
    }
    while (p->npairs > 0)
        drop_pair(p, p->npairs - 1, 0);
    return NULL;
}

ckt_proxy *ckt_proxy_start(int target_port)
{
    ckt_proxy *p = calloc(1, sizeof *p);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;
    ck_assert(p != NULL);
    p->target = target_port;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert(p->lfd >= 0);
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ck_assert(bind(p->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    ck_assert(listen(p->lfd, 64) == 0);
    ck_assert(getsockname(p->lfd, (struct sockaddr *)&a, &alen) == 0);
    p->port = ntohs(a.sin_port);
    snprintf(p->url, sizeof p->url, "redis://127.0.0.1:%d", p->port);
    ck_assert(pipe(p->wake) == 0);
    ck_assert(pthread_create(&p->th, NULL, proxy_main, p) == 0);
    return p;
}

void ckt_proxy_set(ckt_proxy *p, ckt_proxy_mode mode, int arg)
{
    atomic_store(&p->arg, arg);
    atomic_store(&p->mode, (int)mode);
    (void)!write(p->wake[1], "x", 1);
}

void ckt_proxy_stop(ckt_proxy *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, 1);
    (void)!write(p->wake[1], "x", 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}

int ckt_proxy_port(const ckt_proxy *p) { return p->port; }
const char *ckt_proxy_url(const ckt_proxy *p) { return p->url; }
unsigned ckt_proxy_accepts(const ckt_proxy *p) { return atomic_load(&((ckt_proxy *)p)->accepts); }
uint64_t ckt_proxy_bytes_in(const ckt_proxy *p) { return atomic_load(&((ckt_proxy *)p)->bytes_in); }
