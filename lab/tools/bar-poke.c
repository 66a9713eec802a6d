/* bar-poke: write or check a byte pattern through an mmap of a PCI BAR's sysfs resource file
 * (static, for the L2 initramfs of the nested lab).
 *
 *   bar-poke RESOURCE_FILE OFFSET write|read HEX_PATTERN LEN
 *
 * OFFSET and LEN accept 0x.., plain decimal, or a K/M/G suffix (1G = 1 GiB). HEX_PATTERN (e.g.
 * 4c414256) is repeated to fill LEN bytes. `write` stores it with byte writes and msyncs; `read`
 * compares. Only the pages around [OFFSET, OFFSET+LEN) are mapped, so a 64 GiB BAR is fine.
 * Prints one line "BAR-POKE <op> <file> off=0x.. len=N PASS|FAIL us=.. [...]"; exit 0 on PASS. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t parse_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 0);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    }
    if (end == s || *end) {
        fprintf(stderr, "bar-poke: bad number %s\n", s);
        exit(2);
    }
    return v;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[3], "write") && strcmp(argv[3], "read"))) {
        fprintf(stderr, "usage: bar-poke RESOURCE_FILE OFFSET write|read HEX_PATTERN LEN\n");
        return 2;
    }
    const char *path = argv[1], *op = argv[3], *hex = argv[4];
    uint64_t off = parse_size(argv[2]), len = parse_size(argv[5]);
    int writing = !strcmp(op, "write");
    size_t plen = strlen(hex) / 2;
    if (plen == 0 || strlen(hex) % 2 || len == 0) {
        fprintf(stderr, "bar-poke: pattern must be an even number of hex digits, LEN > 0\n");
        return 2;
    }
    unsigned char *pat = malloc(plen);
    for (size_t i = 0; i < plen; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            fprintf(stderr, "bar-poke: bad hex pattern %s\n", hex);
            return 2;
        }
        pat[i] = v;
    }

    int fd = open(path, writing ? O_RDWR | O_SYNC : O_RDONLY);
    if (fd < 0) {
        printf("BAR-POKE %s %s off=0x%llx len=%llu FAIL open: %s\n", op, path,
               (unsigned long long)off, (unsigned long long)len, strerror(errno));
        return 1;
    }
    struct stat st;
    fstat(fd, &st);
    if ((uint64_t)st.st_size && off + len > (uint64_t)st.st_size) {
        printf("BAR-POKE %s %s off=0x%llx len=%llu FAIL beyond the resource size 0x%llx\n", op, path,
               (unsigned long long)off, (unsigned long long)len, (unsigned long long)st.st_size);
        return 1;
    }
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE), base = off & ~(pg - 1), delta = off - base;
    size_t maplen = (delta + len + pg - 1) & ~(pg - 1);
    double t0 = now_us();
    void *map = mmap(NULL, maplen, writing ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, (off_t)base);
    if (map == MAP_FAILED) {
        printf("BAR-POKE %s %s off=0x%llx len=%llu FAIL mmap: %s\n", op, path,
               (unsigned long long)off, (unsigned long long)len, strerror(errno));
        return 1;
    }
    volatile unsigned char *p = (volatile unsigned char *)map + delta;
    uint64_t bad = 0, first = 0;
    unsigned char got = 0;
    if (writing) {
        for (uint64_t i = 0; i < len; i++)
            p[i] = pat[i % plen];
        msync(map, maplen, MS_SYNC);
        /* read back through the same mapping */
    }
    for (uint64_t i = 0; i < len; i++) {
        unsigned char v = p[i];
        if (v != pat[i % plen]) {
            if (!bad++) {
                first = i;
                got = v;
            }
        }
    }
    double us = now_us() - t0;
    if (bad)
        printf("BAR-POKE %s %s off=0x%llx len=%llu FAIL us=%.0f mismatched=%llu first=+0x%llx got=0x%02x want=0x%02x\n",
               op, path, (unsigned long long)off, (unsigned long long)len, us, (unsigned long long)bad,
               (unsigned long long)first, got, pat[first % plen]);
    else
        printf("BAR-POKE %s %s off=0x%llx len=%llu PASS us=%.0f pattern=%s\n", op, path,
               (unsigned long long)off, (unsigned long long)len, us, hex);
    munmap(map, maplen);
    close(fd);
    return bad ? 1 : 0;
}
