/* The L1 end of the vsock scenario (static, in the L1 initramfs as /bin/vsock-host): a client
 * of the vmm's hybrid vsock socket, and a listener for guest-initiated connections.
 *
 *   vsock-host stream SOCK PORT BYTES N  N streams at once to guest PORT through the unix socket
 *                                        SOCK ("CONNECT PORT\n", "OK <port>\n"), each sending
 *                                        BYTES of a pattern while reading the echo back and
 *                                        checking every byte; prints
 *                                        "LAB-VSOCK-HOST-ECHO-OK N x BYTES, <MiB/s>" or a failure
 *   vsock-host vanish SOCK PORT          a stream that sends a little and closes abruptly
 *   vsock-host serve PATH N              listen on the unix socket PATH, echo N connections
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "echo-check.h"


static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int unix_connect(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a)) return -1;
    return s;
}

/* CONNECT PORT and the OK line; the stream fd or -1. */
static int vsock_open(const char *sock, unsigned port) {
    int s = unix_connect(sock);
    if (s < 0) { fprintf(stderr, "connect %s: %s\n", sock, strerror(errno)); return -1; }
    char line[64];
    int n = snprintf(line, sizeof line, "CONNECT %u\n", port);
    if (write(s, line, n) != n) return -1;
    int i = 0;
    while (i < (int)sizeof line - 1) {
        ssize_t k = read(s, line + i, 1);
        if (k <= 0) { fprintf(stderr, "no OK line (read %zd)\n", k); return -1; }
        if (line[i++] == '\n') break;
    }
    line[i] = 0;
    if (strncmp(line, "OK ", 3)) { fprintf(stderr, "answer: %s\n", line); return -1; }
    return s;
}

static int one_stream(const char *sock, unsigned port, unsigned long bytes) {
    int s = vsock_open(sock, port);
    if (s < 0) return 1;
    unsigned long got;
    int bad;
    if (echo_check(s, bytes, &got, &bad)) {
        fprintf(stderr, "stream: got %lu of %lu, bad=%d\n", got, bytes, bad);
        return 1;
    }
    return 0;
}

static int cmd_stream(const char *sock, unsigned port, unsigned long bytes, int n) {
    double t0 = now();
    for (int i = 0; i < n; i++)
        if (fork() == 0) _exit(one_stream(sock, port, bytes));
    int bad = 0, st;
    while (wait(&st) > 0) bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    double t = now() - t0;
    if (bad) {
        printf("LAB-VSOCK-HOST-ECHO-FAILED %d of %d streams\n", bad, n);
        return 1;
    }
    printf("LAB-VSOCK-HOST-ECHO-OK %d x %lu, %.1f MiB/s each way (%.2f s)\n", n, bytes,
           n * (double)bytes / t / (1 << 20), t);
    return 0;
}

static int cmd_vanish(const char *sock, unsigned port) {
    int s = vsock_open(sock, port);
    if (s < 0) return 1;
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    if (write(s, junk, sizeof junk) != sizeof junk) return 1;
    close(s);
    printf("LAB-VSOCK-HOST-VANISHED\n");
    return 0;
}

static int cmd_serve(const char *path, int n) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    unlink(path);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 16)) {
        printf("LAB-VSOCK-HOST-ERROR listen %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int c = accept(l, NULL, NULL);
        if (c < 0) { if (errno == EINTR) { i--; continue; } return 1; }
        char buf[65536];
        unsigned long total = 0;
        for (;;) {
            ssize_t k = read(c, buf, sizeof buf);
            if (k <= 0) break;
            total += k;
            for (ssize_t off = 0; off < k;) {
                ssize_t w = write(c, buf + off, k - off);
                if (w <= 0) break;
                off += w;
            }
        }
        close(c);
        printf("LAB-VSOCK-HOST-SERVED %lu bytes on %s\n", total, path);
    }
    return 0;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "LAB-VSOCK-HOST-TIMEOUT\n";
    write(1, msg, sizeof msg - 1);
    _exit(3);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    /* Never hang a lab run: every mode is done well within this. */
    signal(SIGALRM, on_alarm);
    alarm(getenv("VSOCK_HOST_TIMEOUT") ? atoi(getenv("VSOCK_HOST_TIMEOUT")) : 240);
    if (argc == 6 && !strcmp(argv[1], "stream"))
        return cmd_stream(argv[2], atoi(argv[3]), strtoul(argv[4], NULL, 0), atoi(argv[5]));
    if (argc == 4 && !strcmp(argv[1], "vanish")) return cmd_vanish(argv[2], atoi(argv[3]));
    if (argc == 4 && !strcmp(argv[1], "serve")) return cmd_serve(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: vsock-host stream SOCK PORT BYTES N | vanish SOCK PORT | serve PATH N\n");
    return 2;
}
