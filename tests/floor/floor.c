/*
 * The bare-KVM floor for the first-light benchmark (tests/src/bin/first_light.rs): the least a
 * VMM must do before a guest writes its first byte to the serial port. Open /dev/kvm, create
 * the VM, mmap guest RAM and register it, create the in-kernel irqchip and one vCPU, point its
 * registers at 7 bytes of real-mode code (mov dx,0x3f8; mov al,'X'; out dx,al; hlt) and run it
 * until that OUT, then write the byte to stdout.
 *
 * Guest RAM is one anonymous mapping (MAP_NORESERVE, nothing touched). It is registered as one
 * slot up to 3 GiB; above that, as the vmm (and any PC VMM) must, as a second slot at 4 GiB, so
 * that the 32-bit MMIO hole (LAPIC, IOAPIC) stays free of RAM.
 *
 * Usage: floor SIZE   (bytes, or with a K/M/G suffix). Prints "boot-phase NAME mono_ns=N" lines
 * on stderr, with the phase names the vmm uses, so the benchmark can put them side by side.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void phase(const char *name)
{
	struct timespec ts;
	char line[96];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int n = snprintf(line, sizeof(line), "boot-phase %s mono_ns=%llu\n", name,
			 (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
	if (write(2, line, (size_t)n) < 0)
		exit(3);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t n = strtoull(s, &end, 10);
	switch (*end) {
	case 'K': return n << 10;
	case 'M': return n << 20;
	case 'G': return n << 30;
	case 'T': return n << 40;
	default: return n;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SIZE\n", argv[0]);
		return 2;
	}
	uint64_t size = parse_size(argv[1]);
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	phase("vm_created");

	uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap");
	uint64_t low = size < (3ull << 30) ? size : (3ull << 30);
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = low,
		.userspace_addr = (uint64_t)(uintptr_t)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die("KVM_SET_USER_MEMORY_REGION");
	if (size > low) {
		r.slot = 1;
		r.guest_phys_addr = 1ull << 32;
		r.memory_size = size - low;
		r.userspace_addr = (uint64_t)(uintptr_t)(ram + low);
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			die("KVM_SET_USER_MEMORY_REGION");
	}
	phase("memory_mapped");

	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		die("KVM_CREATE_IRQCHIP");
	phase("irqchip_created");

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0)
		die("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	static const uint8_t code[] = { 0xba, 0xf8, 0x03, 0xb0, 'X', 0xee, 0xf4 };
	memcpy(ram + 0x1000, code, sizeof(code));
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS");
	phase("vcpus_configured");

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			die("KVM_RUN");
		if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == 0x3f8) {
			if (write(1, (uint8_t *)run + run->io.data_offset, 1) != 1)
				return 3;
			return 0;
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			return 0;
		if (run->exit_reason != KVM_EXIT_IO && run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
			return 1;
		}
	}
}
