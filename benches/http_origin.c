/*
 * http_origin: the origin for benches/load.sh. Not part of Harmony.
 *
 *   http_origin PORT        (listens on 127.0.0.1:PORT)
 *
 * Answers every request head it reads with the same bytes nginx's
 * `return 200 "hello world\n"` sends (status line, Server, Date, Content-Type,
 * Content-Length, Connection: keep-alive, body), so a proxy in front of it
 * does exactly the work it does in front of nginx, while the load core spends
 * less on the origin: the benchmark should be bounded by the proxy under
 * test, not by the core that runs wrk and the origin.
 *
 * One thread, one level-triggered epoll set. A request is a head ending in an
 * empty line; pipelined heads each get an answer. Bodies are not supported
 * (the benchmark sends GETs): a head announcing one (Content-Length other
 * than 0, Transfer-Encoding) closes the connection. Heads longer than 8 KiB
 * close it too. Writes are blocking (responses are small). Bounded by the
 * benchmark's lifetime: the bench kills it by PID.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536
#define HEAD_MAX 8192

struct conn {
    char *buf; /* unanswered bytes: at most HEAD_MAX */
    size_t len;
};

static struct conn conns[MAX_FD];
static char response[512];
static size_t response_len;
static time_t response_time = -1;

/* The response with the current Date (rebuilt once a second). */
static void refresh_response(void) {
    time_t now = time(NULL);
    if (now == response_time) return;
    response_time = now;
    char date[64];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: %s\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 12\r\n"
                     "Connection: keep-alive\r\n\r\nhello world\n",
                     date);
    response_len = n > 0 ? (size_t)n : 0;
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd].buf);
    conns[fd].buf = NULL;
    conns[fd].len = 0;
}

/* True if the head [h, h+n) announces a body (which we do not read). */
static int has_body(const char *h, size_t n) {
    for (const char *p = h; p < h + n; p++) {
        if (*p != '\n') continue;
        size_t rest = (size_t)(h + n - (p + 1));
        if (rest >= 18 && strncasecmp(p + 1, "transfer-encoding:", 18) == 0) return 1;
        if (rest >= 15 && strncasecmp(p + 1, "content-length:", 15) == 0) {
            /* the head ends in CRLF CRLF, so strtoul stops inside it */
            if (strtoul(p + 16, NULL, 10) != 0) return 1;
        }
    }
    return 0;
}

/* Answer every complete head in the connection's buffer; -1 to close. */
static int serve(int fd) {
    struct conn *c = &conns[fd];
    size_t start = 0;
    for (;;) {
        char *end = memmem(c->buf + start, c->len - start, "\r\n\r\n", 4);
        if (!end) break;
        size_t head_len = (size_t)(end + 4 - (c->buf + start));
        if (has_body(c->buf + start, head_len)) return -1;
        for (size_t off = 0; off < response_len;) {
            ssize_t w = write(fd, response + off, response_len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return -1;
            off += (size_t)w;
        }
        start += head_len;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    return c->len >= HEAD_MAX ? -1 : 0;
}

int main(int argc, char **argv) {
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int port = argc == 2 ? atoi(argv[1]) : 0, one = 1;
    if (port <= 0 || port >= 65536) {
        fprintf(stderr, "usage: http_origin PORT\n");
        return 2;
    }
    la.sin_port = htons((unsigned short)port);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&la, sizeof la) || listen(ls, 1024)) {
        perror("http_origin: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) return 1;
        refresh_response();
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, NULL, NULL);
                if (c < 0) continue;
                char *buf = c < MAX_FD ? malloc(HEAD_MAX) : NULL;
                if (!buf) {
                    close(c);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conns[c].buf = buf;
                conns[c].len = 0;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                continue;
            }
            struct conn *c = &conns[fd];
            if (!c->buf) continue;
            ssize_t r = read(fd, c->buf + c->len, HEAD_MAX - c->len);
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (r <= 0) {
                drop(ep, fd);
                continue;
            }
            c->len += (size_t)r;
            if (serve(fd) < 0) drop(ep, fd);
        }
    }
}
