/* benchclient: the load side of scripts/bench, one epoll loop over many
 * connections, so that the client is never what limits the measurement.
 *
 * scripts/bench compiles this file with gcc at run time (cached by its hash)
 * and runs it once per scenario; it prints one line of `key=value` pairs.
 *
 *   benchclient read  HOST PORT CLIENTS BYTES TIMEOUT copy|discard
 *       CLIENTS connections send "0\n" and read BYTES each, copied into a
 *       buffer as a real client would, or discarded in the kernel (MSG_TRUNC:
 *       no copy, so that the client costs next to nothing). Prints the time
 *       from the first connect until the last client is done.
 *   benchclient lat   HOST PORT CLIENTS PATH RATE SECONDS
 *       CLIENTS connections follow PATH from its end. A writer thread appends
 *       64-byte records (sequence number, CLOCK_MONOTONIC nanoseconds) at RATE
 *       records/s for SECONDS, one write() each; every client checks the
 *       sequence and measures write-to-receive latency.
 *   benchclient read|lat ... http
 *       The same over tailsrv --http: each client sends GET /stream?start=0 and
 *       takes the chunked body apart (dechunk); the figures count file bytes.
 *   benchclient churn HOST PORT LOOPS SECONDS
 *       LOOPS concurrent loops of connect, send "0\n", read 1 KiB, close, for
 *       SECONDS. The close is a reset (SO_LINGER 0): neither side keeps
 *       TIME_WAIT state, and the server learns at once that the client left.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECORD 64
#define HIST_US 1000000 /* latency histogram: 1 us buckets up to 1 s */
#define CHURN_READ 1024

static struct sockaddr_in server;

/* ---- http: the same clients over tailsrv --http ---------------------------- */

static int http_mode;
#define HTTP_REQUEST "GET /stream?start=0 HTTP/1.1\r\nHost: bench\r\n\r\n"

/* Where a client is in a chunked response. */
struct chunker {
    enum { HEAD, SIZE, DATA, END } state;
    int matched;     /* of the "\r\n\r\n" ending the head */
    int digits;      /* of the chunk size being read */
    long long size;  /* the chunk size being read */
    long long left;  /* file bytes left in the current chunk */
};

/* Keeps the file bytes of buf[0..n), moved to its start; returns their count. */
static size_t dechunk(struct chunker *c, unsigned char *buf, size_t n) {
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        if (c->state == DATA) {
            size_t take = n - i < (size_t)c->left ? n - i : (size_t)c->left;
            memmove(buf + out, buf + i, take);
            out += take;
            i += take;
            c->left -= (long long)take;
            if (!c->left) c->state = SIZE;
            continue;
        }
        unsigned char ch = buf[i++];
        if (c->state == HEAD) {
            c->matched = ch == "\r\n\r\n"[c->matched] ? c->matched + 1 : ch == '\r';
            if (c->matched == 4) c->state = SIZE;
        } else if (c->state == SIZE && isxdigit(ch)) {
            c->size = c->size * 16 + (isdigit(ch) ? ch - '0' : (ch | 32) - 'a' + 10);
            c->digits = 1;
        } else if (c->state == SIZE && ch == '\n' && c->digits) { /* else the CRLF after data */
            c->left = c->size;
            c->state = c->size ? DATA : END;
            c->size = c->digits = 0;
        }
    }
    return out;
}

/* One non-blocking read of file bytes: the count (framing read and dropped),
 * or recv's -1/0. Discarding, the data goes by MSG_TRUNC and the framing a
 * byte at a time: a few bytes per chunk of up to 4 MiB. */
static ssize_t recv_body(int fd, struct chunker *c, unsigned char *buf, size_t len, int flags) {
    if (!http_mode) return recv(fd, buf, len, flags);
    if (c->state == DATA && (flags & MSG_TRUNC)) {
        ssize_t got = recv(fd, NULL, len < (size_t)c->left ? len : (size_t)c->left, flags);
        if (got > 0 && !(c->left -= got)) c->state = SIZE;
        return got;
    }
    ssize_t got = recv(fd, buf, (flags & MSG_TRUNC) ? 1 : len, flags & ~MSG_TRUNC);
    if (got <= 0) return got;
    ssize_t body = (ssize_t)dechunk(c, buf, (size_t)got);
    return body ? body : (errno = EAGAIN, -2); /* framing only: nothing for the caller */
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void raise_fd_limit(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static void set_nonblocking(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A blocking connect that sends the header, then made non-blocking. */
static int connect_client(const char *header) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) die("connect");
    if (write(fd, header, strlen(header)) != (ssize_t)strlen(header)) die("send header");
    set_nonblocking(fd);
    return fd;
}

static int epoll_add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* ---- read ---------------------------------------------------------------- */

static char sink[1 << 20];

static int run_read(int clients, long long bytes, double timeout, int discard) {
    int flags = MSG_DONTWAIT | (discard ? MSG_TRUNC : 0);
    int ep = epoll_create1(0);
    long long *left = calloc(clients, sizeof *left);
    int *fds = calloc(clients, sizeof *fds);
    struct chunker *chunkers = calloc(clients, sizeof *chunkers);
    uint64_t start = now_ns();
    for (int i = 0; i < clients; i++) {
        fds[i] = connect_client(http_mode ? HTTP_REQUEST : "0\n");
        left[i] = bytes;
        epoll_add(ep, fds[i], EPOLLIN, i);
    }
    int done = 0;
    long long total = 0;
    uint64_t deadline = start + (uint64_t)(timeout * 1e9);
    struct epoll_event events[1024];
    while (done < clients && now_ns() < deadline) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            int i = (int)events[e].data.u64;
            for (;;) {
                ssize_t got = recv_body(fds[i], &chunkers[i], (unsigned char *)sink,
                                        sizeof sink, flags);
                if (got == -2) continue;
                if (got < 0 && errno == EAGAIN) break;
                if (got <= 0) { fprintf(stderr, "client %d: connection lost\n", i); return 1; }
                total += got;
                left[i] -= got;
                if (left[i] <= 0) {
                    close(fds[i]);
                    done++;
                    break;
                }
            }
        }
    }
    double elapsed = (now_ns() - start) / 1e9;
    printf("clients=%d done=%d bytes=%lld seconds=%.6f\n", clients, done, total, elapsed);
    return done == clients ? 0 : 1;
}

/* ---- lat ----------------------------------------------------------------- */

struct follower {
    int fd;
    struct chunker chunker;
    int have;          /* bytes of the current record received so far */
    uint64_t expect;   /* next sequence number */
    uint64_t received; /* records received (first one excluded) */
    int caught_up;     /* has record 0 */
    unsigned char record[RECORD];
};

struct writer {
    int fd;
    double rate;
    uint64_t count;
};

static void make_record(unsigned char *buf, uint64_t seq) {
    uint64_t ts = now_ns();
    memset(buf, '.', RECORD - 1);
    buf[RECORD - 1] = '\n';
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &ts, 8);
}

static void append_record(int fd, uint64_t seq) {
    unsigned char buf[RECORD];
    make_record(buf, seq);
    if (write(fd, buf, RECORD) != RECORD) die("write record");
}

/* Appends records 1..count at a steady rate, one write() each. */
static void *write_records(void *arg) {
    struct writer *w = arg;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t start = (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
    for (uint64_t i = 1; i <= w->count; i++) {
        uint64_t at = start + (uint64_t)((i - 1) * 1e9 / w->rate);
        t.tv_sec = at / 1000000000u;
        t.tv_nsec = at % 1000000000u;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
        append_record(w->fd, i);
    }
    return NULL;
}

static uint32_t *hist;
static uint64_t lat_max_ns, out_of_order;

/* Takes what the socket has; returns -1 when the connection is lost. */
static int follow(struct follower *f, int measure) {
    unsigned char buf[16384];
    for (;;) {
        ssize_t got = recv_body(f->fd, &f->chunker, buf, sizeof buf, MSG_DONTWAIT);
        if (got == -2) continue;
        if (got < 0 && errno == EAGAIN) return 0;
        if (got <= 0) return -1;
        uint64_t now = now_ns();
        for (ssize_t off = 0; off < got;) {
            int take = RECORD - f->have;
            if (take > got - off) take = (int)(got - off);
            memcpy(f->record + f->have, buf + off, take);
            f->have += take;
            off += take;
            if (f->have < RECORD) break;
            f->have = 0;
            uint64_t seq, ts;
            memcpy(&seq, f->record, 8);
            memcpy(&ts, f->record + 8, 8);
            if (seq != f->expect) out_of_order++;
            f->expect = seq + 1;
            if (!measure || seq == 0) continue;
            f->received++;
            uint64_t lat = now - ts;
            if (lat > lat_max_ns) lat_max_ns = lat;
            uint64_t us = lat / 1000;
            hist[us < HIST_US ? us : HIST_US - 1]++;
        }
    }
}

static double percentile(uint64_t total, double p) {
    uint64_t rank = (uint64_t)(p * total), seen = 0;
    for (int us = 0; us < HIST_US; us++) {
        seen += hist[us];
        if (seen > rank) return us;
    }
    return HIST_US;
}

static int run_lat(int clients, const char *path, double rate, double seconds) {
    int file = open(path, O_WRONLY | O_APPEND);
    if (file < 0) die(path);
    hist = calloc(HIST_US, sizeof *hist);
    struct follower *fs = calloc(clients, sizeof *fs);
    int ep = epoll_create1(0);
    /* BENCH_LAT_HEADER: where followers start (coldcatchup: at the end of a big file). */
    const char *header = getenv("BENCH_LAT_HEADER");
    for (int i = 0; i < clients; i++) {
        fs[i].fd = connect_client(http_mode ? HTTP_REQUEST : header ? header : "0\n");
        epoll_add(ep, fs[i].fd, EPOLLIN, i);
    }
    /* Record 0 proves every client is connected and caught up before timing. */
    append_record(file, 0);
    struct epoll_event events[1024];
    int ready = 0;
    uint64_t limit = now_ns() + 30000000000u;
    while (ready < clients && now_ns() < limit) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            struct follower *f = &fs[events[e].data.u64];
            if (follow(f, 0) < 0) die("connection lost");
            if (!f->caught_up && f->expect == 1 && f->have == 0) {
                f->caught_up = 1;
                ready++;
            }
        }
    }
    if (ready < clients) {
        fprintf(stderr, "only %d of %d clients caught up\n", ready, clients);
        return 1;
    }

    struct writer w = {.fd = file, .rate = rate, .count = (uint64_t)(rate * seconds)};
    pthread_t thread;
    pthread_create(&thread, NULL, write_records, &w);
    uint64_t want = w.count * clients, got = 0, lost = 0;
    uint64_t grace = now_ns() + (uint64_t)((seconds + 5) * 1e9);
    while (got < want && now_ns() < grace) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            struct follower *f = &fs[events[e].data.u64];
            uint64_t before = f->received;
            if (follow(f, 1) < 0) {
                lost++;
                epoll_ctl(ep, EPOLL_CTL_DEL, f->fd, NULL);
            }
            got += f->received - before;
        }
    }
    pthread_join(thread, NULL);
    printf("clients=%d records=%llu received=%llu missing=%llu out_of_order=%llu lost=%llu "
           "p50_us=%.0f p99_us=%.0f max_us=%.0f\n",
           clients, (unsigned long long)w.count, (unsigned long long)got,
           (unsigned long long)(want - got), (unsigned long long)out_of_order,
           (unsigned long long)lost, percentile(got, 0.50), percentile(got, 0.99),
           lat_max_ns / 1e3);
    return 0;
}

/* ---- churn --------------------------------------------------------------- */

struct loop {
    int fd;
    int got;
    int connected;
    unsigned source; /* rotates the local address: 127.1.x.y, port chosen at connect */
};

static void churn_open(int ep, struct loop *l, int index) {
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (l->fd < 0) die("socket");
    int one = 1;
    setsockopt(l->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in local = {.sin_family = AF_INET};
    l->source = (l->source + 1) % 4096;
    local.sin_addr.s_addr = htonl(0x7f010000u | ((index * 4096 + l->source) & 0xffff));
    if (bind(l->fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
    l->got = 0;
    l->connected = 0;
    if (connect(l->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS)
        die("connect");
    epoll_add(ep, l->fd, EPOLLOUT, index);
}

static void churn_close(struct loop *l) {
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    setsockopt(l->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(l->fd);
}

static int run_churn(int loops, double seconds) {
    int ep = epoll_create1(0);
    struct loop *ls = calloc(loops, sizeof *ls);
    char buf[CHURN_READ];
    uint64_t done = 0, start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < loops; i++) churn_open(ep, &ls[i], i);
    struct epoll_event events[256];
    while (now_ns() < end) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            int i = (int)events[e].data.u64;
            struct loop *l = &ls[i];
            if (!l->connected) {
                if (events[e].events & (EPOLLERR | EPOLLHUP)) die("churn connect");
                if (write(l->fd, "0\n", 2) != 2) die("churn header");
                l->connected = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
                epoll_ctl(ep, EPOLL_CTL_MOD, l->fd, &ev);
                continue;
            }
            ssize_t got = recv(l->fd, buf, CHURN_READ - l->got, MSG_DONTWAIT);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) die("churn read");
            l->got += (int)got;
            if (l->got < CHURN_READ) continue;
            churn_close(l);
            done++;
            churn_open(ep, l, i);
        }
    }
    double elapsed = (now_ns() - start) / 1e9;
    printf("loops=%d connections=%llu seconds=%.6f\n", loops, (unsigned long long)done, elapsed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: benchclient read|lat|churn HOST PORT ...\n");
        return 2;
    }
    raise_fd_limit();
    server.sin_family = AF_INET;
    server.sin_port = htons(atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &server.sin_addr) != 1) die("address");
    http_mode = !strcmp(argv[argc - 1], "http");
    argc -= http_mode;
    if (!strcmp(argv[1], "read") && argc == 8)
        return run_read(atoi(argv[4]), atoll(argv[5]), atof(argv[6]), !strcmp(argv[7], "discard"));
    if (!strcmp(argv[1], "lat") && argc == 8)
        return run_lat(atoi(argv[4]), argv[5], atof(argv[6]), atof(argv[7]));
    if (!strcmp(argv[1], "churn") && argc == 6)
        return run_churn(atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "benchclient: bad arguments\n");
    return 2;
}
