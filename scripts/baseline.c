/* baseline.c: the least a server of this kind can do, to tell what the machine
 * allows from what tailsrv costs. One epoll loop; inotify IN_MODIFY on the file;
 * on every event one fstat and one sendfile per client. No header parsing (every
 * client starts at byte 0, as the bench's clients ask), no error handling, no
 * slow-client handling: a yardstick for the lat scenarios, not a server.
 *
 *   gcc -O2 -o /tmp/baseline scripts/baseline.c
 *   scripts/bench --pin --only lat1 --server 'c=/tmp/baseline {port} {path}' \
 *                 --server 'py=tailsrv -p {port} --log-level warning {path}'
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#define MAXC 20000
static off_t off[MAXC]; static char live[MAXC];
int main(int argc, char **argv) {
    int port = atoi(argv[1]); const char *path = argv[2];
    int file = open(path, O_RDONLY);
    int in = inotify_init1(IN_NONBLOCK); inotify_add_watch(in, path, IN_MODIFY);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(ls, (void*)&a, sizeof a) || listen(ls, 4096)) { perror("listen"); return 1; }
    int ep = epoll_create1(0); struct epoll_event ev = {.events = EPOLLIN};
    ev.data.fd = ls; epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.fd = in; epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev);
    struct epoll_event evs[64]; char buf[4096];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) { int c; while ((c = accept4(ls, 0, 0, SOCK_NONBLOCK)) >= 0) {
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                off[c] = 0; live[c] = 2; ev.data.fd = c; ev.events = EPOLLIN; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev); } }
            else if (fd == in || live[fd]) {
                if (fd != in) { if (read(fd, buf, sizeof buf) <= 0) { live[fd] = 0; close(fd); continue; } }
                else while (read(in, buf, sizeof buf) > 0) {}
                struct stat st; fstat(file, &st);
                for (int c = 0; c < MAXC; c++) if (live[c] && off[c] < st.st_size) {
                    ssize_t s = sendfile(c, file, &off[c], st.st_size - off[c]); (void)s; }
            }
        }
    }
}
