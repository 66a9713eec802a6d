// SPDX-License-Identifier: GPL-2.0
/*
 * edu_test: a self-test of QEMU's "edu" teaching device (PCI 1234:11e8, QEMU docs/specs/edu.rst),
 * for the nested lab's VFIO passthrough scenarios. The whole test runs in probe() and logs one
 * line per check ("EDU-TEST <check> ... PASS|FAIL"), then "EDU-TEST RESULT PASS|FAIL checks=N
 * failed=M". Every wait is bounded; a timeout is a FAIL that prints the registers.
 *
 * BAR0 (1 MiB MMIO):
 *   0x00 ident (0xRRrr00ed)   0x04 liveness (reads ~written)   0x08 factorial (write n, read n!)
 *   0x20 status: bit 0 computing (RO), bit 7 raise interrupt 0x1 when the factorial is done
 *   0x24 interrupt status      0x60 raise interrupt (value ORed into 0x24)   0x64 acknowledge
 *   0x80 DMA source  0x88 DMA destination  0x90 DMA count  0x98 DMA command: bit 0 start/busy,
 *   bit 1 direction (0 RAM->device, 1 device->RAM), bit 2 raise interrupt 0x100 when done.
 *   The device's DMA buffer is at device address 0x40000 (4 KiB). Its DMA engine masks
 *   addresses to 28 bits by default (property dma_mask), so the driver asks for a 28-bit mask.
 *   QEMU 7.2's range check is off by one (a transfer must END before 0x41000) and a failed check
 *   is a hw_error() that aborts the whole QEMU, so transfers are at most 4095 bytes (dma_len).
 *   The RAM side uses 8 KiB coherent buffers at offset 0x800, so each transfer crosses a page.
 *
 * The MSI vector (or INTx, when MSI cannot be had: then the msi check fails) stays requested
 * until the driver is unbound, so it shows in /proc/interrupts as "edu_test".
 *
 * dma_above=ADDR: the DMA buffers must lie at or above bus address ADDR (a check of its own,
 * "EDU-TEST dma-high"); buffers below it are allocated and set aside until one lands high enough.
 * With 4 GiB of guest RAM and dma_above=0x100000000 (and dma_bits=64) the round trip goes
 * through RAM above 4 GiB. The L1 edu needs dma_mask=... wider than 28 bits for that.
 *
 * Peer-to-peer: writing a bus address to /sys/module/edu_test/parameters/p2p_dst makes the bound
 * device DMA p2p_len bytes of the pattern "EDU-P2P!" (repeated) from RAM into its buffer and
 * then from its buffer to that address (e.g. another device's BAR); the write returns once both
 * transfers completed (or fails with -ETIMEDOUT/-ENODEV). Whether the bytes arrived is for
 * the reader of the target to check (bar-poke on the peer's sysfs resource file).
 */
#define pr_fmt(fmt) "edu_test: " fmt

#include <linux/module.h>
#include <linux/pci.h>
#include <linux/interrupt.h>
#include <linux/dma-mapping.h>
#include <linux/delay.h>
#include <linux/ktime.h>
#include <linux/wait.h>
#include <linux/io.h>
#include <linux/mutex.h>
#include <linux/minmax.h>

#define EDU_IDENT	0x00
#define EDU_LIVE	0x04
#define EDU_FACT	0x08
#define EDU_STATUS	0x20
#define EDU_IRQ_STATUS	0x24
#define EDU_IRQ_RAISE	0x60
#define EDU_IRQ_ACK	0x64
#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_CNT	0x90
#define EDU_DMA_CMD	0x98

#define EDU_STATUS_COMPUTING	0x01
#define EDU_STATUS_IRQFACT	0x80
#define EDU_DMA_START		0x01
#define EDU_DMA_TO_RAM		0x02
#define EDU_DMA_IRQ		0x04
#define EDU_FACT_IRQ		0x00000001
#define EDU_DMA_IRQ_VAL		0x00000100
#define EDU_RAISE_VAL		0x00420000	/* our own value for the 0x60 test */

#define EDU_DEV_BUF	0x40000
#define EDU_DEV_BUF_SIZE 4096
#define EDU_RAM_BUF_SIZE 8192	/* per buffer; the transfer starts at EDU_RAM_OFF */
#define EDU_RAM_OFF	0x800

static unsigned int dma_bits = 28;
module_param(dma_bits, uint, 0444);
MODULE_PARM_DESC(dma_bits, "DMA mask width in bits (edu's default engine mask is 28 bits)");
static unsigned int fact_n = 10;
module_param(fact_n, uint, 0444);
MODULE_PARM_DESC(fact_n, "compute fact_n! (10! = 3628800)");
static unsigned int dma_len = EDU_DEV_BUF_SIZE - 1;
module_param(dma_len, uint, 0444);
MODULE_PARM_DESC(dma_len, "bytes per DMA transfer, 1..4095 (QEMU 7.2 aborts on 4096)");
static bool qword;
module_param(qword, bool, 0444);
MODULE_PARM_DESC(qword, "access the DMA registers (0x80-0x98) with 8-byte MMIO instead of 4-byte");
static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "bound on every wait, in ms");
static unsigned long long dma_above;
module_param(dma_above, ullong, 0444);
MODULE_PARM_DESC(dma_above, "the DMA buffers must lie at or above this bus address (0: anywhere)");
static unsigned int p2p_len = 4088;
module_param(p2p_len, uint, 0644);
MODULE_PARM_DESC(p2p_len, "bytes per peer-to-peer transfer (p2p_dst), 8..4095");

#define EDU_P2P_PATTERN "EDU-P2P!"	/* 8 bytes, repeated over p2p_len */

struct edu {
	struct pci_dev *pdev;
	void __iomem *bar;
	int irq;
	bool msi;
	atomic_t irqs;		/* handler calls */
	atomic_t status_seen;	/* OR of the interrupt status values acknowledged */
	wait_queue_head_t wq;
	void *buf[2];
	dma_addr_t dma[2];
	int checks, failed;
};

/*
 * A 4-byte write to 0x80/0x88/0x90/0x98 sets the whole 64-bit register (zero-extended), so a
 * value above 4 GiB (a buffer in high RAM, a peer's 64-bit BAR) always takes an 8-byte write.
 */
static void edu_wr64(struct edu *e, u64 v, unsigned int reg)
{
	if (qword || upper_32_bits(v))
		writeq(v, e->bar + reg);
	else
		writel((u32)v, e->bar + reg);
}

static u64 edu_rd64(struct edu *e, unsigned int reg)
{
	return qword ? readq(e->bar + reg) : readl(e->bar + reg);
}

#define edu_report(e, ok, fmt, ...) do {					\
	(e)->checks++;								\
	if (!(ok))								\
		(e)->failed++;							\
	pr_info("EDU-TEST " fmt " %s\n", ##__VA_ARGS__, (ok) ? "PASS" : "FAIL"); \
} while (0)

static irqreturn_t edu_irq(int irq, void *data)
{
	struct edu *e = data;
	u32 st = readl(e->bar + EDU_IRQ_STATUS);

	if (!st && !e->msi)
		return IRQ_NONE;	/* INTx may be shared */
	if (st)
		writel(st, e->bar + EDU_IRQ_ACK);
	atomic_or(st, &e->status_seen);
	atomic_inc(&e->irqs);
	wake_up(&e->wq);
	return IRQ_HANDLED;
}

static void edu_dump(struct edu *e, const char *why)
{
	pr_info("EDU-TEST regs (%s): status=0x%08x irq_status=0x%08x fact=0x%08x dma_src=0x%llx dma_dst=0x%llx dma_cnt=0x%llx dma_cmd=0x%llx irqs=%d seen=0x%x\n",
		why, readl(e->bar + EDU_STATUS), readl(e->bar + EDU_IRQ_STATUS),
		readl(e->bar + EDU_FACT), edu_rd64(e, EDU_DMA_SRC),
		edu_rd64(e, EDU_DMA_DST), edu_rd64(e, EDU_DMA_CNT),
		edu_rd64(e, EDU_DMA_CMD), atomic_read(&e->irqs),
		atomic_read(&e->status_seen));
}

/* Poll a register until (value & mask) == 0; returns the µs waited or -1 on timeout. */
static s64 edu_poll_clear(struct edu *e, unsigned int reg, u32 mask, u32 *last)
{
	ktime_t t0 = ktime_get(), end = ktime_add_ms(t0, timeout_ms);
	u32 v;

	for (;;) {
		v = readl(e->bar + reg);
		if (!(v & mask))
			break;
		if (ktime_after(ktime_get(), end)) {
			*last = v;
			return -1;
		}
		usleep_range(20, 100);
	}
	*last = v;
	return ktime_us_delta(ktime_get(), t0);
}

/* Wait until the handler has run more than `before` times and seen `bits`; µs or -1. */
static s64 edu_wait_irq(struct edu *e, int before, u32 bits, ktime_t t0)
{
	long left = wait_event_timeout(e->wq, atomic_read(&e->irqs) > before &&
				       (atomic_read(&e->status_seen) & bits) == bits,
				       msecs_to_jiffies(timeout_ms));

	return left ? ktime_us_delta(ktime_get(), t0) : -1;
}

static void edu_test_ident(struct edu *e)
{
	u32 id = readl(e->bar + EDU_IDENT);

	edu_report(e, (id & 0xffff) == 0x00ed, "ident=0x%08x major=%u minor=%u",
		   id, id >> 24, (id >> 16) & 0xff);
}

static void edu_test_liveness(struct edu *e)
{
	static const u32 vals[] = { 0x00000000, 0xffffffff, 0x12345678, 0xa5a5a5a5, 0xdeadbeef };
	int i, bad = 0;

	for (i = 0; i < ARRAY_SIZE(vals); i++) {
		u32 got;

		writel(vals[i], e->bar + EDU_LIVE);
		got = readl(e->bar + EDU_LIVE);
		if (got != ~vals[i]) {
			bad++;
			pr_info("EDU-TEST liveness wrote=0x%08x read=0x%08x want=0x%08x\n",
				vals[i], got, ~vals[i]);
		}
	}
	edu_report(e, !bad, "liveness values=%zu wrong=%d", ARRAY_SIZE(vals), bad);
}

static int edu_setup_irq(struct edu *e)
{
	struct pci_dev *pdev = e->pdev;
	int nvec, ret;

	nvec = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI);
	e->msi = nvec == 1;
	if (!e->msi) {
		pr_info("EDU-TEST msi pci_alloc_irq_vectors(MSI)=%d, trying INTx\n", nvec);
		nvec = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_LEGACY);
		if (nvec < 1) {
			edu_report(e, false, "irq-setup no MSI nor INTx (%d)", nvec);
			return -ENODEV;
		}
	}
	e->irq = pci_irq_vector(pdev, 0);
	ret = request_irq(e->irq, edu_irq, e->msi ? 0 : IRQF_SHARED, "edu_test", e);
	if (ret) {
		edu_report(e, false, "irq-setup request_irq(%d)=%d", e->irq, ret);
		pci_free_irq_vectors(pdev);
		e->irq = -1;
		return ret;
	}
	edu_report(e, e->msi, "msi enabled=%d irq=%d", e->msi, e->irq);
	return 0;
}

static void edu_test_raise(struct edu *e)
{
	int before = atomic_read(&e->irqs);
	ktime_t t0 = ktime_get();
	s64 us;

	writel(EDU_RAISE_VAL, e->bar + EDU_IRQ_RAISE);
	us = edu_wait_irq(e, before, EDU_RAISE_VAL, t0);
	if (us < 0)
		edu_dump(e, "raise timeout");
	edu_report(e, us >= 0, "irq-raise value=0x%08x count=%d->%d us=%lld",
		   EDU_RAISE_VAL, before, atomic_read(&e->irqs), us);
}

static void edu_test_factorial(struct edu *e)
{
	u32 want = 1, got, last;
	int before = atomic_read(&e->irqs);
	unsigned int i;
	ktime_t t0;
	s64 us, irq_us = -1;

	for (i = 2; i <= fact_n; i++)
		want *= i;
	atomic_andnot(EDU_FACT_IRQ, &e->status_seen);
	writel(EDU_STATUS_IRQFACT, e->bar + EDU_STATUS);
	t0 = ktime_get();
	writel(fact_n, e->bar + EDU_FACT);
	us = edu_poll_clear(e, EDU_STATUS, EDU_STATUS_COMPUTING, &last);
	got = readl(e->bar + EDU_FACT);
	if (us < 0)
		edu_dump(e, "factorial timeout");
	else
		irq_us = edu_wait_irq(e, before, EDU_FACT_IRQ, t0);
	edu_report(e, us >= 0 && got == want, "factorial n=%u result=%u want=%u status=0x%02x us=%lld",
		   fact_n, got, want, last, us);
	if (us >= 0 && irq_us < 0)
		edu_dump(e, "factorial interrupt timeout");
	edu_report(e, irq_us >= 0, "factorial-irq count=%d->%d us=%lld",
		   before, atomic_read(&e->irqs), irq_us);
	writel(0, e->bar + EDU_STATUS);
}

static u8 edu_pattern(size_t i)
{
	return (u8)(i * 7 + 0x5a) ^ (u8)(i >> 8);
}

/* One DMA transfer of `len` bytes; returns µs or -1. */
static s64 edu_dma_len(struct edu *e, const char *what, u64 src, u64 dst, u32 cmd, u32 len,
		       bool *irq_ok)
{
	int before = atomic_read(&e->irqs);
	ktime_t t0;
	u32 last;
	s64 us, irq_us;

	atomic_andnot(EDU_DMA_IRQ_VAL, &e->status_seen);
	edu_wr64(e, src, EDU_DMA_SRC);
	edu_wr64(e, dst, EDU_DMA_DST);
	edu_wr64(e, len, EDU_DMA_CNT);
	t0 = ktime_get();
	edu_wr64(e, cmd | EDU_DMA_START | EDU_DMA_IRQ, EDU_DMA_CMD);
	us = edu_poll_clear(e, EDU_DMA_CMD, EDU_DMA_START, &last);
	if (us < 0) {
		edu_dump(e, what);
		*irq_ok = false;
		return -1;
	}
	irq_us = edu_wait_irq(e, before, EDU_DMA_IRQ_VAL, t0);
	*irq_ok = irq_us >= 0;
	if (irq_us < 0)
		edu_dump(e, "dma interrupt timeout");
	pr_info("EDU-TEST %s src=0x%llx dst=0x%llx len=%u done_us=%lld irq_us=%lld\n",
		what, src, dst, len, us, irq_us);
	return us;
}

static s64 edu_dma(struct edu *e, const char *what, u64 src, u64 dst, u32 cmd, bool *irq_ok)
{
	return edu_dma_len(e, what, src, dst, cmd, dma_len, irq_ok);
}

/*
 * Two coherent DMA buffers; with dma_above, buffers below it are set aside (freed at the end)
 * until both lie above it, for at most 64 tries. Returns false when an allocation failed.
 */
static bool edu_alloc_bufs(struct edu *e)
{
	struct device *dev = &e->pdev->dev;
	struct { void *cpu; dma_addr_t dma; } low[64];
	int i, n = 0, nlow = 0;

	while (n < 2) {
		e->buf[n] = dma_alloc_coherent(dev, EDU_RAM_BUF_SIZE, &e->dma[n], GFP_KERNEL);
		if (!e->buf[n])
			break;
		if (dma_above && e->dma[n] < dma_above && nlow < ARRAY_SIZE(low)) {
			low[nlow].cpu = e->buf[n];
			low[nlow].dma = e->dma[n];
			nlow++;
			e->buf[n] = NULL;
			continue;
		}
		n++;
	}
	for (i = 0; i < nlow; i++)
		dma_free_coherent(dev, EDU_RAM_BUF_SIZE, low[i].cpu, low[i].dma);
	if (dma_above) {
		bool ok = n == 2 && e->dma[0] >= dma_above && e->dma[1] >= dma_above;

		e->checks++;
		if (!ok)
			e->failed++;
		/* PASS/FAIL before the addresses: the lab's marker is a fixed string */
		pr_info("EDU-TEST dma-high min=0x%llx %s a=0x%llx b=0x%llx set_aside=%d\n",
			dma_above, ok ? "PASS" : "FAIL", n > 0 ? (u64)e->dma[0] : 0ULL,
			n > 1 ? (u64)e->dma[1] : 0ULL, nlow);
	}
	return n == 2;
}

static void edu_test_dma(struct edu *e)
{
	struct device *dev = &e->pdev->dev;
	int ret, i, bad = 0, first_bad = -1;
	bool irq1 = false, irq2 = false;
	u8 *a, *b;
	s64 us1, us2;

	if (!dma_len || dma_len >= EDU_DEV_BUF_SIZE)
		dma_len = EDU_DEV_BUF_SIZE - 1;
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(dma_bits));
	edu_report(e, !ret, "dma-mask bits=%u ret=%d", dma_bits, ret);
	if (ret)
		return;
	if (!edu_alloc_bufs(e)) {
		edu_report(e, false, "dma-alloc buffers=2");
		return;
	}
	edu_report(e, dma_bits >= 64 ||
		   (e->dma[0] < (1ULL << dma_bits) && e->dma[1] < (1ULL << dma_bits)),
		   "dma-alloc a=0x%llx b=0x%llx size=%u", (u64)e->dma[0], (u64)e->dma[1],
		   EDU_RAM_BUF_SIZE);
	a = e->buf[0] + EDU_RAM_OFF;
	b = e->buf[1] + EDU_RAM_OFF;
	memset(e->buf[1], 0, EDU_RAM_BUF_SIZE);
	for (i = 0; i < dma_len; i++)
		a[i] = edu_pattern(i);

	us1 = edu_dma(e, "dma-to-device", e->dma[0] + EDU_RAM_OFF, EDU_DEV_BUF, 0, &irq1);
	edu_report(e, us1 >= 0 && irq1, "dma-to-device us=%lld irq=%d", us1, irq1);
	if (us1 < 0)
		return;
	memset(e->buf[0], 0, EDU_RAM_BUF_SIZE);	/* the copy back must come from the device */
	us2 = edu_dma(e, "dma-to-ram", EDU_DEV_BUF, e->dma[1] + EDU_RAM_OFF, EDU_DMA_TO_RAM, &irq2);
	edu_report(e, us2 >= 0 && irq2, "dma-to-ram us=%lld irq=%d", us2, irq2);
	if (us2 < 0)
		return;
	for (i = 0; i < dma_len; i++) {
		if (b[i] != edu_pattern(i)) {
			if (first_bad < 0)
				first_bad = i;
			bad++;
		}
	}
	if (first_bad >= 0)
		pr_info("EDU-TEST dma-compare first mismatch at +0x%x got=0x%02x want=0x%02x\n",
			first_bad, b[first_bad], edu_pattern(first_bad));
	/* nothing may be written around the transfer */
	for (i = 0; i < EDU_RAM_BUF_SIZE; i++)
		if ((i < EDU_RAM_OFF || i >= EDU_RAM_OFF + dma_len) && ((u8 *)e->buf[1])[i])
			bad++;
	edu_report(e, !bad, "dma-compare len=%u mismatched=%d", dma_len, bad);
}

static void edu_free_dma(struct edu *e)
{
	int i;

	for (i = 0; i < 2; i++)
		if (e->buf[i])
			dma_free_coherent(&e->pdev->dev, EDU_RAM_BUF_SIZE, e->buf[i], e->dma[i]);
}

/* The bound device, for the p2p_dst trigger (one edu per guest in the lab). */
static struct edu *edu_bound;
static DEFINE_MUTEX(edu_p2p_lock);
static unsigned long long p2p_dst;

/* RAM -> device buffer -> `dst`: p2p_len bytes of EDU_P2P_PATTERN; 0 or -errno. */
static int edu_p2p(struct edu *e, u64 dst)
{
	static const char pat[] = EDU_P2P_PATTERN;
	u32 len = clamp_t(u32, p2p_len, 8, EDU_DEV_BUF_SIZE - 1);
	u8 *a = e->buf[0] + EDU_RAM_OFF;
	bool irq1 = false, irq2 = false;
	s64 us1, us2;
	u32 i;

	if (!e->buf[0] || e->irq < 0)
		return -ENODEV;
	for (i = 0; i < len; i++)
		a[i] = pat[i % 8];
	us1 = edu_dma_len(e, "p2p-load", e->dma[0] + EDU_RAM_OFF, EDU_DEV_BUF, 0, len, &irq1);
	us2 = us1 < 0 ? -1 : edu_dma_len(e, "p2p-write", EDU_DEV_BUF, dst, EDU_DMA_TO_RAM, len, &irq2);
	pr_info("EDU-TEST p2p dst=0x%llx len=%u load_us=%lld write_us=%lld irq=%d%d %s\n",
		dst, len, us1, us2, irq1, irq2, us2 >= 0 ? "done" : "timeout");
	return us2 >= 0 ? 0 : -ETIMEDOUT;
}

static int edu_p2p_set(const char *val, const struct kernel_param *kp)
{
	u64 dst;
	int ret = kstrtoull(val, 0, &dst);

	if (ret)
		return ret;
	mutex_lock(&edu_p2p_lock);
	p2p_dst = dst;
	ret = edu_bound ? edu_p2p(edu_bound, dst) : -ENODEV;
	mutex_unlock(&edu_p2p_lock);
	return ret;
}

static const struct kernel_param_ops edu_p2p_ops = {
	.set = edu_p2p_set,
	.get = param_get_ullong,
};
module_param_cb(p2p_dst, &edu_p2p_ops, &p2p_dst, 0644);
MODULE_PARM_DESC(p2p_dst, "write a bus address: DMA p2p_len bytes of \"" EDU_P2P_PATTERN "\" there");

static int edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct edu *e;
	ktime_t t0 = ktime_get();
	int ret, count;

	e = devm_kzalloc(&pdev->dev, sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	e->pdev = pdev;
	e->irq = -1;
	init_waitqueue_head(&e->wq);
	pci_set_drvdata(pdev, e);
	pr_info("EDU-TEST start dev=%s bar0=%pR\n", pci_name(pdev), &pdev->resource[0]);

	ret = pci_enable_device(pdev);
	if (ret) {
		pr_info("EDU-TEST enable ret=%d FAIL\nEDU-TEST RESULT FAIL\n", ret);
		return ret;
	}
	ret = pci_request_regions(pdev, "edu_test");
	if (ret)
		goto err_disable;
	e->bar = pci_iomap(pdev, 0, 0);
	if (!e->bar) {
		ret = -ENOMEM;
		goto err_regions;
	}
	{
		/* How long the bus-master enable took: a VMM still DMA-mapping guest RAM holds the
		 * write (the vCPU waits) until the mapping is done, so the guest sees the wait. */
		ktime_t m0 = ktime_get();

		pci_set_master(pdev);
		pr_info("EDU-TEST set-master us=%lld\n", ktime_us_delta(ktime_get(), m0));
	}

	edu_test_ident(e);
	edu_test_liveness(e);
	if (edu_setup_irq(e) == 0) {
		edu_test_raise(e);
		edu_test_factorial(e);
		edu_test_dma(e);
		count = atomic_read(&e->irqs);
		edu_report(e, count >= 4, "irq-count=%d want>=4 (raise, factorial, 2 DMA) msi=%d irq=%d",
			   count, e->msi, e->irq);
	}
	pr_info("EDU-TEST RESULT %s checks=%d failed=%d us=%lld\n", e->failed ? "FAIL" : "PASS",
		e->checks, e->failed, ktime_us_delta(ktime_get(), t0));
	mutex_lock(&edu_p2p_lock);
	edu_bound = e;
	mutex_unlock(&edu_p2p_lock);
	return 0;	/* stay bound: the interrupt stays visible in /proc/interrupts */

err_regions:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
	pr_info("EDU-TEST setup ret=%d FAIL\nEDU-TEST RESULT FAIL\n", ret);
	return ret;
}

static void edu_remove(struct pci_dev *pdev)
{
	struct edu *e = pci_get_drvdata(pdev);

	mutex_lock(&edu_p2p_lock);
	if (edu_bound == e)
		edu_bound = NULL;
	mutex_unlock(&edu_p2p_lock);
	if (e->irq >= 0) {
		writel(0, e->bar + EDU_STATUS);
		free_irq(e->irq, e);
		pci_free_irq_vectors(pdev);
	}
	edu_free_dma(e);
	pci_clear_master(pdev);
	pci_iounmap(pdev, e->bar);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
}

static const struct pci_device_id edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};
MODULE_DEVICE_TABLE(pci, edu_ids);

static struct pci_driver edu_driver = {
	.name = "edu_test",
	.id_table = edu_ids,
	.probe = edu_probe,
	.remove = edu_remove,
};
module_pci_driver(edu_driver);

MODULE_DESCRIPTION("Self-test of QEMU's edu PCI device (nested lab, VFIO passthrough)");
MODULE_LICENSE("GPL");
