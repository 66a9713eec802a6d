/* The L2 end of the vsock scenario (static, in the L2 initramfs as /bin/vsock-guest).
 *
 *   vsock-guest echo PORT N        listen on vsock PORT, serve N connections at once (one
 *                                  process each), each echoing what it reads until EOF
 *   vsock-guest send CID PORT BYTES connect to CID:PORT, send BYTES of a pattern while reading
 *                                  the echo back, check every byte; prints
 *                                  "LAB-VSOCK-GUEST-SEND-OK <bytes>" or a failure line
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "echo-check.h"


static int echo(int fd) {
    char buf[65536];
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) return 0;
        /* A host peer that went away resets its stream: not this server's failure. */
        if (n < 0) { if (errno == EINTR) continue; return errno != ECONNRESET; }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0) { if (errno == EINTR) continue; return errno != EPIPE && errno != ECONNRESET; }
            off += w;
        }
    }
}

static int cmd_echo(unsigned port, int n) {
    int l = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 64)) {
        printf("LAB-VSOCK-GUEST-ERROR listen %u: %s\n", port, strerror(errno));
        return 1;
    }
    printf("LAB-VSOCK-LISTENING %u\n", port);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        int c = accept(l, NULL, NULL);
        if (c < 0) { if (errno == EINTR) { i--; continue; } return 1; }
        if (fork() == 0) { close(l); _exit(echo(c)); }
        close(c);
    }
    int bad = 0, st;
    while (wait(&st) > 0) bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("LAB-VSOCK-GUEST-ECHOED %d connections, %d failed\n", n, bad);
    return bad != 0;
}

static int cmd_send(unsigned cid, unsigned port, unsigned long bytes) {
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a)) {
        printf("LAB-VSOCK-GUEST-ERROR connect %u:%u: %s\n", cid, port, strerror(errno));
        return 1;
    }
    unsigned long got;
    int bad;
    if (!echo_check(s, bytes, &got, &bad)) {
        printf("LAB-VSOCK-GUEST-SEND-OK %lu\n", got);
        return 0;
    }
    printf("LAB-VSOCK-GUEST-SEND-FAILED got %lu of %lu bad=%d\n", got, bytes, bad);
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "echo")) return cmd_echo(atoi(argv[2]), atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "send"))
        return cmd_send(atoi(argv[2]), atoi(argv[3]), strtoul(argv[4], NULL, 0));
    fprintf(stderr, "usage: vsock-guest echo PORT N | send CID PORT BYTES\n");
    return 2;
}
