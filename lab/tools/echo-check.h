/* Shared by vsock-host.c and vsock-guest.c: send a pattern through a connected stream while
 * reading its echo back and checking every byte. */
#ifndef ECHO_CHECK_H
#define ECHO_CHECK_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned char echo_pattern(unsigned long i) { return (unsigned char)(i * 13 + (i >> 11)); }

/* Write BYTES of the pattern to S from a child (then shut the write side), read the echo in
 * this process; *got: bytes read back, *bad: a byte differed or a read failed. 0 when all
 * BYTES came back intact and the writer finished. */
static int echo_check(int s, unsigned long bytes, unsigned long *got, int *bad) {
    pid_t w = fork();
    if (w == 0) {
        unsigned char buf[16384];
        for (unsigned long off = 0; off < bytes;) {
            unsigned long n = bytes - off < sizeof buf ? bytes - off : sizeof buf;
            for (unsigned long i = 0; i < n; i++) buf[i] = echo_pattern(off + i);
            ssize_t k = write(s, buf, n);
            if (k < 0) { if (errno == EINTR) continue; _exit(1); }
            off += k;
        }
        shutdown(s, SHUT_WR);
        _exit(0);
    }
    unsigned char buf[16384];
    *got = 0;
    *bad = 0;
    for (;;) {
        ssize_t n = read(s, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) { if (errno == EINTR) continue; *bad = 1; break; }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != echo_pattern(*got + i)) *bad = 1;
        *got += n;
    }
    int st;
    waitpid(w, &st, 0);
    return *bad || *got != bytes || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
}

#endif
