/* A small fsx (static, in the L2 initramfs as /bin/fsx-lite): random writes, reads and
 * truncates on one file, each read checked against an in-memory copy of what the file must
 * hold; and a throughput pass.
 *
 *   fsx-lite check FILE OPS SEED   OPS random operations (file up to 1 MiB); prints
 *                                  "LAB-FSX-OK <ops> ops <bytes> bytes checked" or
 *                                  "LAB-FSX-FAIL op <n>: <what>" and exits 1
 *   fsx-lite speed FILE MIB        writes MIB MiB in 1 MiB writes, fsyncs, drops the page
 *                                  cache, reads it back checking every byte; prints
 *                                  "LAB-FSX-SPEED write <MiB/s> read <MiB/s> (<mib> MiB)"
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXLEN (1 << 20)

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int fail(long op, const char *what, long a, long b) {
    printf("LAB-FSX-FAIL op %ld: %s (%ld, %ld) errno=%d %s\n", op, what, a, b, errno, strerror(errno));
    return 1;
}

static int full_pread(int fd, unsigned char *p, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, off + done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += r;
    }
    return 0;
}

static int full_pwrite(int fd, const unsigned char *p, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, p + done, n - done, off + done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += r;
    }
    return 0;
}

static int check(const char *path, long ops, uint64_t seed) {
    unsigned char *model = calloc(MAXLEN, 1), *buf = malloc(MAXLEN);
    long len = 0, checked = 0;
    rng_state = seed | 1;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || !model || !buf) return fail(0, "open", 0, 0);
    for (long op = 1; op <= ops; op++) {
        int kind = rnd() % 10;
        if (kind < 5) { /* write */
            long off = rnd() % MAXLEN, n = 1 + rnd() % 65536;
            if (off + n > MAXLEN) n = MAXLEN - off;
            for (long i = 0; i < n; i++) buf[i] = (unsigned char)rnd();
            if (full_pwrite(fd, buf, n, off)) return fail(op, "write", off, n);
            memcpy(model + off, buf, n);
            if (off + n > len) len = off + n;
        } else if (kind < 9) { /* read */
            if (len == 0) continue;
            long off = rnd() % len, n = 1 + rnd() % 65536;
            if (off + n > len) n = len - off;
            if (full_pread(fd, buf, n, off)) return fail(op, "read", off, n);
            for (long i = 0; i < n; i++)
                if (buf[i] != model[off + i]) return fail(op, "read back a wrong byte at", off + i, buf[i]);
            checked += n;
        } else { /* truncate, down or up (the hole reads as zeros) */
            long n = rnd() % MAXLEN;
            if (ftruncate(fd, n)) return fail(op, "truncate", n, 0);
            if (n < len) memset(model + n, 0, len - n);
            len = n;
        }
    }
    /* The whole file at the end, after fsync, and its size. */
    if (fsync(fd)) return fail(ops, "fsync", 0, 0);
    if (lseek(fd, 0, SEEK_END) != len) return fail(ops, "size", lseek(fd, 0, SEEK_END), len);
    if (len && full_pread(fd, buf, len, 0)) return fail(ops, "final read", 0, len);
    if (len && memcmp(buf, model, len)) return fail(ops, "final contents differ", 0, len);
    checked += len;
    close(fd);
    printf("LAB-FSX-OK %ld ops %ld bytes checked, final size %ld\n", ops, checked, len);
    return 0;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int speed(const char *path, long mib) {
    unsigned char *buf = malloc(MAXLEN);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || !buf) return fail(0, "open", 0, 0);
    double t0 = now();
    for (long m = 0; m < mib; m++) {
        for (long i = 0; i < MAXLEN; i += 8) *(uint64_t *)(buf + i) = (uint64_t)(m * MAXLEN + i);
        if (full_pwrite(fd, buf, MAXLEN, m * MAXLEN)) return fail(m, "write", m, 0);
    }
    if (fsync(fd)) return fail(mib, "fsync", 0, 0);
    double t1 = now();
    close(fd);
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (dc >= 0) { if (write(dc, "3\n", 2) < 0) {} close(dc); }
    fd = open(path, O_RDONLY);
    if (fd < 0) return fail(0, "reopen", 0, 0);
    double t2 = now();
    for (long m = 0; m < mib; m++) {
        if (full_pread(fd, buf, MAXLEN, m * MAXLEN)) return fail(m, "read", m, 0);
        for (long i = 0; i < MAXLEN; i += 8)
            if (*(uint64_t *)(buf + i) != (uint64_t)(m * MAXLEN + i)) return fail(m, "read back a wrong word at", m * MAXLEN + i, 0);
    }
    double t3 = now();
    close(fd);
    printf("LAB-FSX-SPEED write %.1f read %.1f MiB/s (%ld MiB, checked)\n", mib / (t1 - t0), mib / (t3 - t2), mib);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 5 && !strcmp(argv[1], "check")) return check(argv[2], atol(argv[3]), strtoull(argv[4], 0, 0));
    if (argc == 4 && !strcmp(argv[1], "speed")) return speed(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: fsx-lite check FILE OPS SEED | speed FILE MIB\n");
    return 2;
}
