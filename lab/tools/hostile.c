/* hostile: a hostile guest for the nested lab (static, in the L2 initramfs as /bin/hostile).
 *
 *   hostile -t SECONDS -s SEED [-r] [-x BDF]... [-v BDF]...
 *
 * For a bounded time, with a fixed seed (printed, so a run can be repeated), it attacks the PCI
 * devices the VMM emulates, in three phases (25 % / 25 % / 50 % of the time):
 *
 *  config  random values of random sizes (1/2/4) at random offsets 0..4095 of every device's
 *          sysfs `config` file (biased towards the command register, the BARs and the capability
 *          registers), so the VMM sees ECAM writes that move and disable BARs, flip MSI-X
 *          enables, poke read-only and absent registers. Afterwards each device's header
 *          (command, BARs, ROM, interrupt line, MSI-X control) is written back as it was.
 *  bar     random reads and writes (1/2/4/8 bytes) at random offsets of every memory BAR,
 *          through mmaps of the sysfs `resourceN` files (I/O BARs and BARs whose mmap fails are
 *          skipped). On a virtio device the DRIVER_OK bit is masked out of status writes: the
 *          queue addresses are garbage here and an activated device would DMA into whatever
 *          guest RAM they name (that is phase virtio's job, with addresses it controls).
 *  virtio  for each -v device (a virtio-pci function no guest driver is bound to): drives its
 *          common configuration directly through its BAR, round after round: reset, feature
 *          negotiation (sometimes junk, sometimes without VERSION_1), random queue sizes,
 *          vectors and enables, queue addresses either in an mlock'ed buffer of ours (physical
 *          addresses from /proc/self/pagemap) filled with random descriptor tables (NEXT,
 *          WRITE and INDIRECT chains, loops, out-of-range heads and lengths), avail rings with
 *          random heads and indices and plausible virtio-blk request headers, or addresses
 *          outside guest RAM; DRIVER_OK, then kicks through the notify area while the rings are
 *          rewritten under the device, random writes to the frozen registers, resets of a
 *          running device. MSI-X vectors are programmed to an APIC ID no vCPU has, so
 *          completions exercise the interrupt path without interrupting the guest itself.
 *          With -r, for the second half of each device's slice a racer thread works its config
 *          space meanwhile: decoding and bus mastering off/on, BAR 0 moved (onto other devices'
 *          BARs, into the MMIO hole, above 4 GiB) and back, BAR sizing, MSI-X enable and mask.
 *          A queue is enabled only when its size and addresses read back as written, so a
 *          write lost while the BAR was elsewhere cannot leave it pointing into guest RAM.
 *
 * The guest stays alive because everything the device may write (used rings, WRITE
 * descriptors) and everything it reads descriptors from lies either in our own pages or outside
 * guest RAM; only avail rings (read-only for the device) may also point anywhere in RAM.
 *
 * -x BDF: leave this device alone (the guest's own disk, the rng used afterwards...).
 * Each phase prints one summary line; the last line is "HOSTILE-DONE seed=...".
 * Exit status 0 unless the setup failed (or a victim did not come back from reset: 3). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVS 32
#define MAX_BARS 6
#define PAGE 4096u
#define NPAGES 64
#define MAX_QUEUES 8
#define RING_PAGES (3 * MAX_QUEUES) /* desc, avail, used per queue */
#define IND_PAGES 8                 /* indirect descriptor tables */
#define DATA_PAGES (NPAGES - RING_PAGES - IND_PAGES)

/* ------------------------------------------------------------------ random numbers */

static __thread uint64_t rs; /* per thread: the racer has its own sequence */

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static int chance(unsigned pct) { return below(100) < pct; }

static uint64_t mask_of(unsigned size) { return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1; }

/* A value worth writing: zeros, all-ones, small numbers, single bits, boundaries, noise. */
static uint64_t value(unsigned size)
{
    static const uint64_t special[] = {0x1000, 0x10000, 0xfee00000, 0xfec00000, 0xfffffff0, 0x80000000,
                                       0x7fffffff, 0xffff, 0x8000, 0xc000, 0x4000, 0x100000000ull};
    uint64_t v;
    switch (below(10)) {
    case 0: case 1: case 2: v = rnd(); break;
    case 3: v = 0; break;
    case 4: v = ~0ull; break;
    case 5: v = below(17); break;
    case 6: v = 1ull << below(8 * size); break;
    case 7: v = (1ull << (8 * size - 1)) - below(2); break;
    case 8: v = special[below(sizeof special / sizeof special[0])]; break;
    default: v = rnd() & 0x0f0f0f0f0f0f0f0full; break;
    }
    return v & mask_of(size);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ devices */

struct bar {
    int index;
    uint64_t size, maplen;
    volatile uint8_t *map;
};

struct dev {
    char bdf[32];
    int cfg;            /* sysfs config fd (O_RDWR) */
    size_t cfg_size;    /* 256 or 4096 */
    uint8_t saved[256]; /* config space before we started */
    uint16_t vendor;
    int virtio;         /* a -v victim */
    struct bar bars[MAX_BARS];
    int nbars;
    uint8_t caps[48];   /* capability offsets from the saved list */
    int ncaps;
    int msix;           /* MSI-X capability offset, 0 if none */
    /* virtio layout (from the vendor capabilities) */
    struct bar *common, *notify, *devcfg;
    uint64_t common_off, notify_off, devcfg_off;
    uint32_t notify_mult;
    unsigned num_queues;
};

static struct dev devs[MAX_DEVS];
static int ndevs;
/* Where every device's memory BARs are (excluded devices too): the racer moves a victim's BAR
 * onto them, which the VMM must refuse without disturbing their owner. */
static uint64_t other_bars[MAX_DEVS * MAX_BARS];
static int nother;

static void note_bars(const char *bdf)
{
    char path[256];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%.64s/resource", bdf);
    FILE *f = fopen(path, "r");
    unsigned long long start, end, flags;
    for (int i = 0; f && i < MAX_BARS && fscanf(f, "%llx %llx %llx", &start, &end, &flags) == 3; i++)
        if ((flags & 0x200) && end > start && nother < MAX_DEVS * MAX_BARS)
            other_bars[nother++] = start;
    if (f)
        fclose(f);
}

static int cfg_read(struct dev *d, unsigned off, unsigned size, uint32_t *v)
{
    *v = 0;
    return pread(d->cfg, v, size, off) == (ssize_t)size ? 0 : -1;
}

static int cfg_write(struct dev *d, unsigned off, unsigned size, uint32_t v)
{
    return pwrite(d->cfg, &v, size, off) == (ssize_t)size ? 0 : -1;
}

static void mmio_write(volatile uint8_t *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1: *(volatile uint8_t *)p = v; break;
    case 2: *(volatile uint16_t *)p = v; break;
    case 4: *(volatile uint32_t *)p = v; break;
    default: *(volatile uint64_t *)p = v; break;
    }
}

static uint64_t mmio_read(volatile uint8_t *p, unsigned size)
{
    switch (size) {
    case 1: return *(volatile uint8_t *)p;
    case 2: return *(volatile uint16_t *)p;
    case 4: return *(volatile uint32_t *)p;
    default: return *(volatile uint64_t *)p;
    }
}

static int listed(char **list, int n, const char *bdf)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], bdf))
            return 1;
    return 0;
}

static void open_bars(struct dev *d)
{
    char path[256];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource", d->bdf);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    unsigned long long start, end, flags;
    for (int i = 0; i < MAX_BARS && fscanf(f, "%llx %llx %llx", &start, &end, &flags) == 3; i++) {
        if (!(flags & 0x200) || end <= start) /* IORESOURCE_MEM, non-empty */
            continue;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource%d", d->bdf, i);
        int fd = open(path, O_RDWR | O_SYNC);
        if (fd < 0)
            continue;
        struct bar *b = &d->bars[d->nbars];
        b->index = i;
        b->size = end - start + 1;
        b->maplen = b->size < (16u << 20) ? b->size : (16u << 20);
        void *m = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED) {
            printf("HOSTILE-INFO %s resource%d mmap failed: %s (skipped)\n", d->bdf, i, strerror(errno));
            continue;
        }
        b->map = m;
        d->nbars++;
    }
    fclose(f);
}

static struct bar *bar_by_index(struct dev *d, int index)
{
    for (int i = 0; i < d->nbars; i++)
        if (d->bars[i].index == index)
            return &d->bars[i];
    return NULL;
}

static void parse_caps(struct dev *d)
{
    const uint8_t *c = d->saved;
    if (!(c[6] & 0x10)) /* status: capability list */
        return;
    unsigned p = c[0x34] & 0xfc;
    for (int n = 0; p >= 0x40 && p < 0x100 && n < 48; n++) {
        d->caps[d->ncaps++] = p;
        uint8_t id = c[p];
        if (id == 0x11)
            d->msix = p;
        if (id == 0x09 && d->vendor == 0x1af4 && p + 16 <= 256) {
            uint8_t type = c[p + 3], bar = c[p + 4];
            uint32_t off;
            memcpy(&off, c + p + 8, 4);
            struct bar *b = bar_by_index(d, bar);
            if (type == 1) { d->common = b; d->common_off = off; }
            if (type == 2 && p + 20 <= 256) {
                d->notify = b; d->notify_off = off;
                memcpy(&d->notify_mult, c + p + 16, 4);
            }
            if (type == 4) { d->devcfg = b; d->devcfg_off = off; }
        }
        p = c[p + 1] & 0xfc;
    }
}

static void add_devices(char **excl, int nexcl, char **vict, int nvict)
{
    DIR *dir = opendir("/sys/bus/pci/devices");
    if (!dir) {
        perror("hostile: /sys/bus/pci/devices");
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(dir)) && ndevs < MAX_DEVS) {
        if (e->d_name[0] == '.')
            continue;
        note_bars(e->d_name);
        if (listed(excl, nexcl, e->d_name))
            continue;
        struct dev *d = &devs[ndevs];
        memset(d, 0, sizeof *d);
        snprintf(d->bdf, sizeof d->bdf, "%.31s", e->d_name);
        char path[256];
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", d->bdf);
        d->cfg = open(path, O_RDWR);
        if (d->cfg < 0) {
            printf("HOSTILE-INFO %s: cannot open config: %s (skipped)\n", d->bdf, strerror(errno));
            continue;
        }
        struct stat st;
        d->cfg_size = fstat(d->cfg, &st) == 0 && st.st_size > 256 ? 4096 : 256;
        if (pread(d->cfg, d->saved, 256, 0) != 256) {
            printf("HOSTILE-INFO %s: cannot read config (skipped)\n", d->bdf);
            close(d->cfg);
            continue;
        }
        memcpy(&d->vendor, d->saved, 2);
        d->virtio = listed(vict, nvict, d->bdf);
        open_bars(d);
        parse_caps(d);
        ndevs++;
    }
    closedir(dir);
}

/* Put back what phase config scrambled: decoding off, BARs, ROM, interrupt line, MSI-X
 * control (as saved: disabled, since no driver is bound), then the command register. */
static void restore_header(struct dev *d)
{
    uint32_t v;
    uint16_t cmd;
    memcpy(&cmd, d->saved + 4, 2);
    cfg_write(d, 4, 2, 0);
    for (unsigned off = 0x10; off <= 0x24; off += 4) {
        memcpy(&v, d->saved + off, 4);
        cfg_write(d, off, 4, v);
    }
    memcpy(&v, d->saved + 0x30, 4);
    cfg_write(d, 0x30, 4, v);
    cfg_write(d, 0x3c, 1, d->saved[0x3c]);
    if (d->msix) {
        memcpy(&v, d->saved + d->msix + 2, 2);
        cfg_write(d, d->msix + 2, 2, v & ~0xc000u);
    }
    if (d->virtio)
        cmd |= 0x6; /* memory space + bus master: phase virtio needs both */
    cfg_write(d, 4, 2, cmd);
}

/* ------------------------------------------------------------------ phase config */

static void phase_config(double until)
{
    unsigned long writes = 0, reads = 0, failed = 0, hdr = 0, capw = 0;
    if (!ndevs)
        goto out;
    while (now() < until) {
        struct dev *d = &devs[below(ndevs)];
        static const unsigned sizes[] = {1, 2, 4};
        unsigned size = sizes[below(3)], off;
        unsigned r = below(100);
        if (r < 15) {            /* command/status */
            off = 4 + below(4);
            hdr++;
        } else if (r < 30) {     /* BARs and ROM */
            off = chance(85) ? 0x10 + below(24) : 0x30 + below(4);
            hdr++;
        } else if (r < 45 && d->ncaps) { /* a capability's registers */
            off = d->caps[below(d->ncaps)] + below(16);
            capw++;
        } else if (r < 80) {
            off = below(256);
        } else {
            off = 256 + below(d->cfg_size > 256 ? d->cfg_size - 256 : 1);
        }
        if (chance(85))
            off &= ~(size - 1);
        if (off + size > d->cfg_size)
            off = d->cfg_size - size;
        uint32_t v;
        if (chance(25)) {
            reads++;
            if (cfg_read(d, off, size, &v))
                failed++;
        } else {
            writes++;
            if (cfg_write(d, off, size, (uint32_t)value(size)))
                failed++;
        }
        /* now and then, what an OS does: size a BAR and put it back */
        if (chance(2)) {
            unsigned b = 0x10 + 4 * below(6);
            uint32_t old;
            cfg_read(d, b, 4, &old);
            cfg_write(d, b, 4, 0xffffffff);
            cfg_read(d, b, 4, &v);
            cfg_write(d, b, 4, old);
            writes += 2;
            reads += 2;
        }
    }
    for (int i = 0; i < ndevs; i++)
        restore_header(&devs[i]);
out:
    printf("HOSTILE-CONFIG devices=%d writes=%lu reads=%lu failed=%lu header=%lu cap=%lu\n", ndevs, writes,
           reads, failed, hdr, capw);
    fflush(stdout);
}

/* ------------------------------------------------------------------ phase bar */

static void virtio_write_common(struct dev *d, unsigned reg, unsigned size, uint64_t v);

static void phase_bar(double until)
{
    unsigned long writes = 0, reads = 0, masked = 0;
    int nb = 0;
    struct { struct dev *d; struct bar *b; } all[MAX_DEVS * MAX_BARS];
    for (int i = 0; i < ndevs; i++)
        for (int j = 0; j < devs[i].nbars; j++) {
            all[nb].d = &devs[i];
            all[nb++].b = &devs[i].bars[j];
        }
    while (nb && now() < until) {
        int k = below(nb);
        struct dev *d = all[k].d;
        struct bar *b = all[k].b;
        static const unsigned sizes[] = {1, 2, 4, 8};
        unsigned size = sizes[below(4)];
        uint64_t off;
        switch (below(5)) {
        case 0: case 1: off = below(b->maplen); break;
        case 2: case 3: off = below(b->maplen / PAGE ? b->maplen / PAGE : 1) * PAGE + below(0x40); break;
        default: off = below(b->maplen < 0x4000 ? b->maplen : 0x4000); break;
        }
        if (d->virtio && b == d->common && chance(30)) /* the common config, where it hurts */
            off = d->common_off + below(0x40);
        off &= ~(uint64_t)(size - 1);
        if (off + size > b->maplen)
            off = (b->maplen - size) & ~(uint64_t)(size - 1);
        if (chance(25)) {
            (void)mmio_read(b->map + off, size);
            reads++;
            continue;
        }
        uint64_t v = value(size);
        if (d->virtio && b == d->common && off <= d->common_off + 0x14 && d->common_off + 0x14 < off + size) {
            unsigned byte = d->common_off + 0x14 - off;
            if (v & (4ull << (8 * byte))) {
                v &= ~(4ull << (8 * byte)); /* no DRIVER_OK with garbage queue addresses */
                masked++;
            }
        }
        mmio_write(b->map + off, size, v);
        writes++;
    }
    /* leave the virtio victims reset for the next phase */
    for (int i = 0; i < ndevs; i++)
        if (devs[i].virtio && devs[i].common)
            virtio_write_common(&devs[i], 0x14, 1, 0);
    printf("HOSTILE-BAR bars=%d writes=%lu reads=%lu driver_ok_masked=%lu\n", nb, writes, reads, masked);
    fflush(stdout);
}

/* ------------------------------------------------------------------ phase virtio */

static uint8_t *buf;              /* NPAGES pages, mlock'ed */
static uint64_t phys[NPAGES];     /* their guest-physical addresses */
static int racing;                /* -r: a racer thread works the config space meanwhile */
static int racer_running;
static uint64_t ram_end;          /* above the highest System RAM byte */
static uint64_t invalid_base;     /* no guest RAM at or above */

static void virtio_write_common(struct dev *d, unsigned reg, unsigned size, uint64_t v)
{
    mmio_write(d->common->map + d->common_off + reg, size, v);
}

static uint64_t virtio_read_common(struct dev *d, unsigned reg, unsigned size)
{
    return mmio_read(d->common->map + d->common_off + reg, size);
}

static int setup_buffer(void)
{
    FILE *f = fopen("/proc/iomem", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long s, e;
        if (strstr(line, "System RAM") && sscanf(line, " %llx-%llx", &s, &e) == 2 && e + 1 > ram_end)
            ram_end = e + 1;
    }
    if (f)
        fclose(f);
    if (!ram_end) {
        printf("HOSTILE-INFO no System RAM in /proc/iomem\n");
        return -1;
    }
    invalid_base = (ram_end > (1ull << 32) ? ram_end : (1ull << 32)) + (1ull << 30);
    /* mlock'ed pages may still be migrated by compaction unless this is 0 */
    int fd = open("/proc/sys/vm/compact_unevictable_allowed", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "0\n", 2) < 0) { /* best effort */ }
        close(fd);
    }
    buf = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (buf == MAP_FAILED)
        return -1;
    madvise(buf, NPAGES * PAGE, MADV_NOHUGEPAGE);
    if (mlock(buf, NPAGES * PAGE)) {
        perror("hostile: mlock");
        return -1;
    }
    memset(buf, 0, NPAGES * PAGE);
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0)
        return -1;
    for (int i = 0; i < NPAGES; i++) {
        uint64_t e = 0;
        uintptr_t va = (uintptr_t)(buf + i * PAGE);
        if (pread(pm, &e, 8, (off_t)(va / PAGE) * 8) != 8 || !(e & (1ull << 63)) || !(e & ((1ull << 55) - 1))) {
            printf("HOSTILE-INFO pagemap gives no PFN for page %d (entry %#llx)\n", i, (unsigned long long)e);
            close(pm);
            return -1;
        }
        phys[i] = (e & ((1ull << 55) - 1)) * PAGE;
    }
    close(pm);
    return 0;
}

static uint8_t *page(int i) { return buf + (size_t)i * PAGE; }
#define DESC_PAGE(q) (3 * (q))
#define AVAIL_PAGE(q) (3 * (q) + 1)
#define USED_PAGE(q) (3 * (q) + 2)
#define IND_PAGE(i) (RING_PAGES + (i))
#define DATA_PAGE(i) (RING_PAGES + IND_PAGES + (i))

/* An address no guest RAM backs: far above RAM, wrapping past 2^64, or in a device's BAR (DMA
 * aimed at MMIO). */
static uint64_t invalid_addr(void)
{
    switch (below(nother ? 4 : 3)) {
    case 3: return other_bars[below(nother)] + (below(0x10000) & ~15ull);
    case 0: return invalid_base + (below(1ull << 40) & ~15ull);
    case 1: return ~0ull - 1 - below(0x2000); /* not all-ones: that is what a lost read gives */
    default: return rnd() | (1ull << 63);
    }
}

struct vq {
    int ours_desc, ours_used, ours_avail; /* the ring lives in our pages */
    uint16_t size;
    uint8_t *desc, *avail, *used;
    uint16_t used_start;
    int counted; /* the device uses this used ring (it was reset this round) */
};

static void fill_descs(uint8_t *table, unsigned n, uint16_t qsize);

/* One random descriptor. Everything the device may write, and every indirect table, is in
 * our pages or outside RAM. */
static void random_desc(uint8_t *d, uint16_t qsize)
{
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
    switch (below(10)) {
    case 0: case 1: case 2: flags = 1; break;     /* NEXT */
    case 3: case 4: case 5: flags = 2; break;     /* WRITE */
    case 6: flags = 3; break;                     /* NEXT | WRITE */
    case 7: flags = 4 | (chance(30) ? 1 : 0); break; /* INDIRECT */
    case 8: flags = 0; break;
    default: flags = rnd(); break;
    }
    if (flags & 4) {
        if (chance(85)) {
            unsigned off = below(PAGE / 16) * 16;
            addr = phys[IND_PAGE(below(IND_PAGES))] + off;
            len = chance(80) ? 16 * below((PAGE - off) / 16 + 1) : below(PAGE - off + 1);
        } else {
            addr = invalid_addr();
            len = value(4);
        }
    } else if (chance(80)) {
        unsigned off = chance(50) ? below(PAGE / 16) * 16 : below(PAGE);
        addr = phys[DATA_PAGE(below(DATA_PAGES))] + off;
        switch (below(6)) {
        case 0: len = 16; break;
        case 1: len = 1; break;
        case 2: len = 512; break;
        case 3: len = 0; break;
        default: len = below(PAGE - off + 1); break;
        }
        if (len > PAGE - off)
            len = PAGE - off;
    } else {
        addr = invalid_addr();
        len = value(4);
    }
    next = chance(85) ? below(qsize ? qsize : 1) : (uint16_t)rnd();
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void fill_descs(uint8_t *table, unsigned n, uint16_t qsize)
{
    for (unsigned i = 0; i < n; i++)
        random_desc(table + 16 * i, qsize);
}

/* Data pages: noise, with plausible virtio-blk request headers in some 16-byte slots. */
static void fill_data(uint64_t capacity)
{
    static const uint32_t types[] = {0, 1, 4, 8, 11, 13, 0, 1};
    for (int p = 0; p < DATA_PAGES; p++) {
        uint8_t *pg = page(DATA_PAGE(p));
        for (unsigned o = 0; o < PAGE; o += 16) {
            if (chance(50)) {
                uint32_t type = chance(90) ? types[below(8)] : (uint32_t)rnd(), reserved = chance(80) ? 0 : rnd();
                uint64_t sector = chance(70) && capacity ? below(capacity + 2) : value(8);
                memcpy(pg + o, &type, 4);
                memcpy(pg + o + 4, &reserved, 4);
                memcpy(pg + o + 8, &sector, 8);
            } else {
                uint64_t a = rnd(), b = rnd();
                memcpy(pg + o, &a, 8);
                memcpy(pg + o + 8, &b, 8);
            }
        }
    }
}

static void fill_avail(struct vq *q)
{
    uint16_t flags = below(2), idx;
    switch (below(5)) {
    case 0: case 1: idx = 1 + below(q->size); break;
    case 2: idx = 1; break;
    case 3: idx = q->size + below(0x100); break; /* more than the queue holds */
    default: idx = rnd(); break;
    }
    memcpy(q->avail, &flags, 2);
    memcpy(q->avail + 2, &idx, 2);
    for (unsigned i = 0; i <= q->size; i++) { /* the ring and used_event */
        uint16_t h = chance(85) ? below(q->size) : (uint16_t)rnd();
        memcpy(q->avail + 4 + 2 * i, &h, 2);
    }
}

/* Where a ring of `bytes` goes in one of our pages, aligned to `align`; -1 if it cannot fit. */
static int64_t place(unsigned bytes, unsigned align, int misalign)
{
    if (bytes > PAGE)
        return -1;
    uint64_t off = below((PAGE - bytes) / align + 1) * align;
    if (misalign && off + bytes < PAGE)
        off += 1;
    return (int64_t)off;
}

struct vstats {
    unsigned long readback_mismatch, rounds, driver_ok, refused, needs_reset, kicks, used, frozen_writes, live_resets, slow_resets;
};

static int reset_device(struct dev *d, struct vstats *st)
{
    virtio_write_common(d, 0x14, 1, 0);
    double t0 = now();
    while (virtio_read_common(d, 0x14, 1) != 0) {
        virtio_write_common(d, 0x14, 1, 0); /* the racer may have had the BAR elsewhere */
        if (now() - t0 > 2) {
            printf("HOSTILE-WARN %s status %#llx 2 s after reset\n", d->bdf,
                   (unsigned long long)virtio_read_common(d, 0x14, 1));
            return -1;
        }
        usleep(1000);
    }
    if (now() - t0 > 0.1)
        st->slow_resets++;
    return 0;
}

/* An MSI-X table entry aimed at physical APIC ID 0xab, which no vCPU has: an interrupt
 * through it reaches nothing in the guest. */
static void msix_safe_entry(struct dev *d, unsigned v, int masked)
{
    uint32_t tbl;
    if (!d->msix || cfg_read(d, d->msix + 4, 4, &tbl))
        return;
    struct bar *b = bar_by_index(d, tbl & 7);
    uint64_t off = (tbl & ~7u) + 16ull * v;
    if (!b || off + 16 > b->maplen)
        return;
    mmio_write(b->map + off, 4, 0xfee00000u | (0xabu << 12));
    mmio_write(b->map + off + 4, 4, 0);
    mmio_write(b->map + off + 8, 4, 0x30 + below(16));
    mmio_write(b->map + off + 12, 4, masked);
}

static void msix_program(struct dev *d)
{
    uint32_t ctrl;
    if (!d->msix || cfg_read(d, d->msix + 2, 2, &ctrl))
        return;
    unsigned nvec = (ctrl & 0x7ff) + 1;
    for (unsigned v = 0; v < nvec; v++)
        msix_safe_entry(d, v, chance(50));
    uint32_t c = ctrl & ~0xc000u;
    if (chance(85))
        c |= 0x8000;
    if (chance(15))
        c |= 0x4000;
    cfg_write(d, d->msix + 2, 2, c);
}

static void virtio_round(struct dev *d, struct vstats *st, uint64_t capacity, double until)
{
    st->rounds++;
    /* Rounds without a reset write over a running device. Not while racing: a register write
     * the racer made us lose could leave a queue sized for other rings than we placed. */
    int reset = racer_running || !chance(10) || st->rounds == 1;
    if (reset) {
        if (reset_device(d, st))
            return;
    } else {
        st->live_resets++; /* no reset: write over whatever is running */
    }
    virtio_write_common(d, 0x14, 1, 1);
    virtio_write_common(d, 0x14, 1, 3);
    /* features */
    virtio_write_common(d, 0x00, 4, 0);
    uint64_t f = virtio_read_common(d, 0x04, 4);
    virtio_write_common(d, 0x00, 4, 1);
    f |= virtio_read_common(d, 0x04, 4) << 32;
    uint64_t want = chance(90) ? (f & rnd()) | (1ull << 32) : rnd();
    if (chance(5))
        want &= ~(1ull << 32);
    for (unsigned sel = 0; sel < 2; sel++) {
        virtio_write_common(d, 0x08, 4, sel);
        virtio_write_common(d, 0x0c, 4, (uint32_t)(want >> (32 * sel)));
    }
    if (chance(10)) {
        virtio_write_common(d, 0x08, 4, value(4));
        virtio_write_common(d, 0x0c, 4, value(4));
    }
    virtio_write_common(d, 0x14, 1, 0xb);
    if (!(virtio_read_common(d, 0x14, 1) & 8))
        st->refused++;
    virtio_write_common(d, 0x10, 2, chance(50) ? 0 : value(2));
    unsigned nq = d->num_queues;
    if (nq > MAX_QUEUES)
        nq = MAX_QUEUES;
    struct vq qs[MAX_QUEUES];
    memset(qs, 0, sizeof qs);
    fill_data(capacity);
    for (unsigned i = 0; i < IND_PAGES; i++)
        fill_descs(page(IND_PAGE(i)), PAGE / 16, 256);
    for (unsigned i = 0; i < nq; i++) {
        struct vq *q = &qs[i];
        virtio_write_common(d, 0x16, 2, i);
        unsigned max = virtio_read_common(d, 0x18, 2);
        unsigned cap = max < 256 ? max : 256, size;
        switch (below(7)) {
        case 0: size = value(2); break; /* probably refused */
        case 1: size = cap; break;
        default: size = cap ? 1u << below(__builtin_ctz(cap) + 1) : 1; break;
        }
        virtio_write_common(d, 0x18, 2, size);
        q->size = virtio_read_common(d, 0x18, 2);
        virtio_write_common(d, 0x1a, 2, chance(20) ? 0xffff : chance(80) ? below(nq + 1) : value(2));
        int64_t o;
        uint64_t a, want_desc, want_avail, want_used;
        /* descriptor table: ours or outside RAM */
        if (chance(85) && (o = place(16u * q->size, 16, 0)) >= 0) {
            q->ours_desc = 1;
            q->desc = page(DESC_PAGE(i)) + o;
            a = phys[DESC_PAGE(i)] + o;
            fill_descs(q->desc, q->size, q->size);
        } else {
            a = invalid_addr();
        }
        want_desc = a;
        virtio_write_common(d, 0x20, 4, (uint32_t)a);
        virtio_write_common(d, 0x24, 4, (uint32_t)(a >> 32));
        /* avail ring: ours, anywhere in RAM (the device only reads it), or outside RAM */
        unsigned r = below(10);
        if (r < 7 && (o = place(6 + 2u * q->size, 2, chance(5))) >= 0) {
            q->ours_avail = 1;
            q->avail = page(AVAIL_PAGE(i)) + o;
            a = phys[AVAIL_PAGE(i)] + o;
            fill_avail(q);
        } else if (r < 9) {
            a = below(ram_end) & ~1ull;
        } else {
            a = invalid_addr();
        }
        want_avail = a;
        virtio_write_common(d, 0x28, 8, a);
        /* used ring: ours or outside RAM */
        if (chance(90) && (o = place(6 + 8u * q->size, 4, chance(5))) >= 0) {
            q->ours_used = 1;
            q->used = page(USED_PAGE(i)) + o;
            a = phys[USED_PAGE(i)] + o;
            for (unsigned k = 0; k < 6 + 8u * q->size; k++)
                q->used[k] = rnd();
            /* a reset device starts at used.idx 0; without a reset it keeps its old rings */
            q->used_start = 0;
            memcpy(q->used + 2, &q->used_start, 2);
            q->counted = reset;
        } else {
            a = invalid_addr();
        }
        want_used = a;
        virtio_write_common(d, 0x30, 4, (uint32_t)a);
        virtio_write_common(d, 0x34, 4, (uint32_t)(a >> 32));
        /* Enable only a queue that reads back as placed (a lost write while the racer had the
         * BAR elsewhere reads back as all-ones); else it stays disabled since the reset. */
        virtio_write_common(d, 0x16, 2, i);
        if (virtio_read_common(d, 0x16, 2) == i && virtio_read_common(d, 0x18, 2) == q->size &&
            virtio_read_common(d, 0x20, 8) == want_desc && virtio_read_common(d, 0x28, 8) == want_avail &&
            virtio_read_common(d, 0x30, 8) == want_used)
            virtio_write_common(d, 0x1c, 2, chance(90) ? 1 : value(2));
        else
            st->readback_mismatch++;
    }
    if (chance(10)) { /* a queue that does not exist */
        virtio_write_common(d, 0x16, 2, d->num_queues + below(0x100));
        for (unsigned reg = 0x18; reg < 0x38; reg += 2)
            virtio_write_common(d, reg, 2, value(2));
    }
    msix_program(d);
    if (chance(95)) {
        virtio_write_common(d, 0x14, 1, 0xf);
        if (virtio_read_common(d, 0x14, 1) & 4)
            st->driver_ok++;
    }
    unsigned steps = 1 + below(20);
    for (unsigned s = 0; s < steps && now() < until; s++) {
        unsigned i = nq ? below(nq) : 0;
        struct vq *q = &qs[i];
        if (chance(90)) {
            uint16_t off = i;
            if (chance(20)) {
                virtio_write_common(d, 0x16, 2, i);
                off = virtio_read_common(d, 0x1e, 2);
            }
            uint64_t at = d->notify_off + (uint64_t)off * d->notify_mult;
            if (at + 2 <= d->notify->maplen)
                mmio_write(d->notify->map + at, 2, i);
        } else {
            uint64_t off = below(d->notify->maplen - d->notify_off > 0x1000 ? 0x1000 : 8) & ~1ull;
            mmio_write(d->notify->map + d->notify_off + off, 2, value(2));
        }
        st->kicks++;
        if (chance(50) && nq) { /* the driver adds more, and rewrites what the device may be reading */
            if (q->ours_desc)
                for (unsigned k = below(8); k > 0; k--)
                    random_desc(q->desc + 16 * below(q->size), q->size);
            if (q->ours_avail) {
                uint16_t idx;
                memcpy(&idx, q->avail + 2, 2);
                for (unsigned k = below(4); k > 0; k--) {
                    uint16_t h = chance(90) ? below(q->size) : (uint16_t)rnd();
                    memcpy(q->avail + 4 + 2 * (uint16_t)(idx % (q->size ? q->size : 1)), &h, 2);
                    idx++;
                }
                if (chance(10))
                    idx = rnd();
                __atomic_store_n((uint16_t *)(q->avail + 2), idx, __ATOMIC_RELEASE);
            }
        }
        /* Registers that are frozen after DRIVER_OK, and other noise. Only while DRIVER_OK is
         * set: before it, a random queue address (in guest RAM) would be taken for real. A
         * read that found no BAR (the racer moved it) gives all-ones. */
        uint64_t sv = virtio_read_common(d, 0x14, 1);
        int running = (sv & 4) && sv != 0xff;
        if (running && chance(10)) {
            virtio_write_common(d, 0x16, 2, below(nq + 2));
            static const unsigned regs[] = {0x10, 0x18, 0x1a, 0x1c, 0x20, 0x28, 0x30, 0x0c};
            unsigned reg = regs[below(8)];
            virtio_write_common(d, reg, reg >= 0x20 && reg != 0x0c ? 4 : 2, value(4));
            st->frozen_writes++;
        }
        if (chance(3)) { /* status with random bits (FAILED...), never 0 here; no DRIVER_OK */
            uint64_t v = (value(1) | 1) & 0xff;
            virtio_write_common(d, 0x14, 1, running ? v : v & ~4ull);
        }
        if (chance(3) && d->devcfg) /* device config space */
            mmio_write(d->devcfg->map + d->devcfg_off + below(0x40), 1, value(1));
        usleep(below(3000));
    }
    if (virtio_read_common(d, 0x14, 1) & 0x40)
        st->needs_reset++;
    for (unsigned i = 0; i < nq; i++) {
        uint16_t u;
        if (!qs[i].ours_used || !qs[i].counted)
            continue;
        memcpy(&u, qs[i].used + 2, 2);
        st->used += (uint16_t)(u - qs[i].used_start);
    }
}

static struct dev *victims[MAX_DEVS];
static int nvictims;

/* ------------------------------------------------------------------ the racer (-r)
 * A second thread, on another vCPU when there is one, that works the victim's config space
 * while phase virtio drives its BAR: memory decoding and bus mastering off and on, BAR 0
 * moved (onto another device's BAR, into the MMIO hole, above 4 GiB, to junk) and back, BAR
 * sizing, MSI-X enable/function mask, MSI-X table entries (always aimed at no vCPU). */

static volatile int racer_stop;
static uint64_t racer_seed;
static unsigned long race_ops[5];

static void *racer(void *arg)
{
    struct dev *d = arg;
    rs = racer_seed;
    uint16_t cmd;
    memcpy(&cmd, d->saved + 4, 2);
    cmd |= 6;
    unsigned reg = 0x10 + 4 * d->common->index;
    uint32_t lo, hi = 0;
    memcpy(&lo, d->saved + reg, 4);
    int is64 = (lo & 7) == 4;
    if (is64)
        memcpy(&hi, d->saved + reg + 4, 4);
    uint32_t ctrl = 0;
    if (d->msix)
        cfg_read(d, d->msix + 2, 2, &ctrl);
    unsigned nvec = (ctrl & 0x7ff) + 1;
    while (!racer_stop) {
        unsigned op = below(5);
        race_ops[op]++;
        switch (op) {
        case 0: { /* decoding / bus master off and on, or random command bits */
            static const uint16_t offs[] = {2, 4, 6};
            cfg_write(d, 4, 2, chance(80) ? cmd & ~offs[below(3)] : (cmd ^ (uint16_t)rnd()) & 0x7ff);
            usleep(below(1500));
            cfg_write(d, 4, 2, cmd);
            break;
        }
        case 1: { /* move BAR 0 and put it back */
            uint64_t to;
            switch (below(4)) {
            case 0: to = nother ? other_bars[below(nother)] : 0; break;
            case 1: to = 0xc0000000u + (below(0x3ec00000u) & ~0xffffu); break;
            case 2: to = (below(64) << 32) | (below(1ull << 32) & ~0xffffu); break;
            default: to = value(4); break;
            }
            if (chance(50))
                cfg_write(d, 4, 2, cmd & ~2); /* as an OS does it: decoding off while moving */
            cfg_write(d, reg, 4, (uint32_t)to | (lo & 0xf));
            if (is64)
                cfg_write(d, reg + 4, 4, to >> 32);
            cfg_write(d, 4, 2, cmd);
            usleep(below(2000));
            cfg_write(d, reg, 4, lo);
            if (is64)
                cfg_write(d, reg + 4, 4, hi);
            break;
        }
        case 2: { /* BAR sizing */
            uint32_t v;
            cfg_write(d, reg, 4, 0xffffffff);
            cfg_read(d, reg, 4, &v);
            cfg_write(d, reg, 4, lo);
            break;
        }
        case 3: /* MSI-X enable / function mask */
            if (d->msix)
                cfg_write(d, d->msix + 2, 2, (ctrl & 0x7ff) | (chance(70) ? 0x8000 : 0) | (chance(20) ? 0x4000 : 0));
            break;
        default: /* an MSI-X table entry */
            msix_safe_entry(d, below(nvec), chance(50));
            break;
        }
        usleep(below(2000));
    }
    return NULL;
}

static void quiesce_victims(void)
{
    for (int i = 0; i < nvictims; i++) {
        struct dev *d = victims[i];
        virtio_write_common(d, 0x14, 1, 0);
        double t0 = now();
        while (virtio_read_common(d, 0x14, 1) != 0 && now() - t0 < 2)
            usleep(1000);
        restore_header(d);
    }
}

static void on_signal(int sig)
{
    /* the device may still DMA into our pages: stop it before they go back to the kernel */
    quiesce_victims();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int phase_virtio(double until)
{
    int bad = 0;
    for (int i = 0; i < ndevs; i++) {
        struct dev *d = &devs[i];
        if (!d->virtio)
            continue;
        if (!d->common || !d->notify || !d->notify_mult) {
            printf("HOSTILE-INFO %s: no common/notify capability in a mapped BAR (skipped)\n", d->bdf);
            continue;
        }
        victims[nvictims++] = d;
    }
    if (!nvictims) {
        printf("HOSTILE-VIRTIO devices=0\n");
        return 0;
    }
    if (setup_buffer()) {
        printf("HOSTILE-VIRTIO devices=%d setup failed\n", nvictims);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    double start = now(), slice = (until - start) / nvictims;
    for (int i = 0; i < nvictims; i++) {
        struct dev *d = victims[i];
        struct vstats st;
        memset(&st, 0, sizeof st);
        uint64_t capacity = 0;
        if (d->devcfg && (d->devcfg_off + 8) <= d->devcfg->maplen)
            capacity = mmio_read(d->devcfg->map + d->devcfg_off, 4) |
                       mmio_read(d->devcfg->map + d->devcfg_off + 4, 4) << 32;
        double end = start + slice * (i + 1);
        d->num_queues = virtio_read_common(d, 0x12, 2);
        unsigned nvec = 0;
        uint32_t ctrl;
        if (d->msix && !cfg_read(d, d->msix + 2, 2, &ctrl))
            nvec = (ctrl & 0x7ff) + 1;
        for (unsigned v = 0; v < nvec; v++) /* phase bar left junk in the table */
            msix_safe_entry(d, v, 1);
        pthread_t thr;
        int raced = 0;
        memset(race_ops, 0, sizeof race_ops);
        /* the first half of the slice without the racer (more rounds), the second with it */
        double half = end - slice / 2;
        while (now() < end) {
            if (racing && !raced && now() >= half) {
                racer_stop = 0;
                racer_seed = rnd();
                raced = racer_running = pthread_create(&thr, NULL, racer, d) == 0;
            }
            virtio_round(d, &st, capacity, raced ? end : half);
        }
        if (raced) {
            racer_stop = 1;
            pthread_join(thr, NULL);
            racer_running = 0;
        }
        restore_header(d);
        int ok = reset_device(d, &st) == 0;
        restore_header(d);
        bad |= !ok;
        printf("HOSTILE-VIRTIO %s rounds=%lu driver_ok=%lu features_refused=%lu needs_reset=%lu kicks=%lu "
               "used=%lu frozen_writes=%lu no_reset_rounds=%lu slow_resets=%lu readback_mismatch=%lu "
               "race=%lu/%lu/%lu/%lu/%lu final_reset=%s\n",
               d->bdf, st.rounds, st.driver_ok, st.refused, st.needs_reset, st.kicks, st.used,
               st.frozen_writes, st.live_resets, st.slow_resets, st.readback_mismatch, race_ops[0], race_ops[1],
               race_ops[2], race_ops[3], race_ops[4], ok ? "ok" : "FAILED");
        fflush(stdout);
    }
    return bad ? 3 : 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    double secs = 20;
    uint64_t seed = 1;
    char *excl[MAX_DEVS], *vict[MAX_DEVS];
    int nexcl = 0, nvict = 0, opt;
    while ((opt = getopt(argc, argv, "t:s:x:v:r")) != -1) {
        switch (opt) {
        case 'r': racing = 1; break;
        case 't': secs = atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'x': if (nexcl < MAX_DEVS) excl[nexcl++] = optarg; break;
        case 'v': if (nvict < MAX_DEVS) vict[nvict++] = optarg; break;
        default:
            fprintf(stderr, "usage: hostile -t SECONDS -s SEED [-r] [-x BDF]... [-v VIRTIO_BDF]...\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    rs = seed;
    add_devices(excl, nexcl, vict, nvict);
    printf("HOSTILE-START seed=%llu seconds=%.0f racer=%s devices=", (unsigned long long)seed, secs,
           racing ? "on" : "off");
    for (int i = 0; i < ndevs; i++)
        printf("%s%s%s", i ? "," : "", devs[i].bdf, devs[i].virtio ? "(virtio)" : "");
    printf(" excluded=");
    for (int i = 0; i < nexcl; i++)
        printf("%s%s", i ? "," : "", excl[i]);
    printf("\n");
    double t0 = now();
    phase_config(t0 + secs * 0.25);
    phase_bar(t0 + secs * 0.5);
    int rc = phase_virtio(t0 + secs);
    printf("HOSTILE-DONE seed=%llu seconds=%.1f rc=%d\n", (unsigned long long)seed, now() - t0, rc);
    return rc;
}
