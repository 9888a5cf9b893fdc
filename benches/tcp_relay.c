/*
 * tcp_relay: the "speed of light" reference for benches/load.sh and
 * benches/dicom.sh. Not part of Harmony.
 *
 *   tcp_relay LISTEN_PORT BACKEND_PORT      (both on 127.0.0.1)
 *
 * One thread, one epoll set (level-triggered). Every accepted connection
 * gets its own new connection to the backend (TCP_NODELAY on both), and the
 * bytes read on one side are written to the other as they are: no parsing,
 * no buffering beyond one read, no headers, no logging. That is the least
 * work any user-space proxy can do per request, so its figures are the
 * ceiling for a proxy on this machine: what is left is the kernel's cost of
 * the two extra loopback hops.
 *
 * Writes are blocking (a benchmark's request/response traffic never fills a
 * socket buffer in both directions at once); a read of 0 or an error closes
 * both sides. Bounded by the benchmark's lifetime: the bench kills it by PID.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536

static int peer[MAX_FD];
static char buf[256 * 1024];

static int loopback(int port, struct sockaddr_in *a) {
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return port > 0 && port < 65536;
}

static void add(int ep, int fd) {
    struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

static void close_pair(int fd) {
    int p = peer[fd];
    close(fd);
    peer[fd] = -1;
    if (p >= 0) {
        close(p);
        peer[p] = -1;
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in la, ba;
    int one = 1;
    if (argc != 3 || !loopback(atoi(argv[1]), &la) || !loopback(atoi(argv[2]), &ba)) {
        fprintf(stderr, "usage: tcp_relay LISTEN_PORT BACKEND_PORT\n");
        return 2;
    }
    for (int i = 0; i < MAX_FD; i++) peer[i] = -1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&la, sizeof la) || listen(ls, 1024)) {
        perror("tcp_relay: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    add(ep, ls);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) return 1;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, NULL, NULL);
                if (c < 0) continue;
                int b = socket(AF_INET, SOCK_STREAM, 0);
                if (c >= MAX_FD || b < 0 || b >= MAX_FD ||
                    connect(b, (struct sockaddr *)&ba, sizeof ba)) {
                    close(c);
                    if (b >= 0) close(b);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer[c] = b;
                peer[b] = c;
                add(ep, c);
                add(ep, b);
                continue;
            }
            if (peer[fd] < 0) continue; /* closed earlier in this batch */
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (r <= 0) {
                close_pair(fd);
                continue;
            }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(peer[fd], buf + off, (size_t)(r - off));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    close_pair(fd);
                    break;
                }
                off += w;
            }
        }
    }
}
