//! The control loop: the main thread of `vmm --api-socket`, confined before it acts on its first
//! request. It builds and tears down VMs on request, so its list is the widest: everything
//! setting up a VM does (opening kernels, images, taps and VFIO devices, KVM and VFIO setup
//! ioctls, mapping guest RAM, starting threads) plus everything the threads it starts do,
//! because a thread starts under its creator's filter as well as its own (filters stack).
//!
//! What it still may not do is what a compromised VMM would want beyond the VMs it runs: exec
//! another program, trace or write into other processes, open network sockets other than the
//! AF_INET datagram socket tap setup uses (unix sockets, for vsock devices, are allowed: their
//! listener, and the connects and accepts of the vsock worker it starts), mount, load BPF or
//! kernel modules, or send signals to other processes.

use super::allowlist::{arg_eq, arg_masked_eq, ioctl, Allowlist};
use super::ioctls::{TCGETS, TCSETS, TUNGETIFF, TUNSETOFFLOAD};
use super::{allowlist as kind_list, DeviceKind, ThreadKind};

/// The ioctl "type" byte (bits 8..16 of the request) of KVM's and VFIO's (and iommufd's)
/// ioctls: `KVMIO` and `VFIO_TYPE` (`';'`).
const KVM_TYPE: u64 = 0xAE;
const VFIO_TYPE: u64 = b';' as u64;

pub fn allowlist() -> Allowlist {
    let mut a = Allowlist::default();
    // Every thread it starts (API, VMM event thread, vCPUs, activator and through it the device
    // workers, the vfio thread) runs under this filter too.
    for kind in [
        ThreadKind::Vmm,
        ThreadKind::Vcpu,
        ThreadKind::Activator,
        ThreadKind::Api,
        ThreadKind::Vfio,
        ThreadKind::Prefault,
        ThreadKind::Device(DeviceKind::Block),
        ThreadKind::Device(DeviceKind::Net),
        ThreadKind::Device(DeviceKind::Rng),
        ThreadKind::Device(DeviceKind::Console),
        ThreadKind::Device(DeviceKind::Vsock),
        ThreadKind::Device(DeviceKind::Fs),
    ] {
        a.extend(&kind_list(kind));
    }
    crate::vfio::seccomp::add_vcpu_rules(&mut a);

    // Building a VM: the kernel, initramfs and disk images, serial and console files, the
    // CPUID cache (/run/vmm), /dev/kvm, /dev/net/tun, /dev/vfio and the devices' sysfs files.
    a.allow(libc::SYS_openat);
    a.allow(libc::SYS_statx);
    a.allow(libc::SYS_newfstatat);
    a.allow(libc::SYS_fstat);
    a.allow(libc::SYS_lseek);
    a.allow(libc::SYS_pread64);
    a.allow(libc::SYS_pwrite64);
    a.allow(libc::SYS_getdents64);
    a.allow(libc::SYS_readlink);
    a.allow(libc::SYS_readlinkat);
    a.allow(libc::SYS_access);
    a.allow(libc::SYS_faccessat);
    a.allow(libc::SYS_faccessat2);
    a.allow(libc::SYS_getcwd);
    // Disk images are locked (flock) and probed for hole punching (fallocate).
    a.allow(libc::SYS_flock);
    a.allow(libc::SYS_fallocate);
    a.allow(libc::SYS_ftruncate);
    // The CPUID cache is written to a temporary file and renamed into place; the API socket
    // file is removed when the VMM exits.
    a.allow(libc::SYS_mkdir);
    a.allow(libc::SYS_mkdirat);
    a.allow(libc::SYS_rename);
    a.allow(libc::SYS_renameat);
    a.allow(libc::SYS_renameat2);
    a.allow(libc::SYS_unlink);
    a.allow(libc::SYS_unlinkat);
    // Memory zones on a host NUMA node (--memory-zone host_numa_node): mbind on guest RAM.
    a.allow(libc::SYS_mbind);
    // Duplicated eventfds and files; non-blocking flags.
    a.allow(libc::SYS_dup);
    a.allow(libc::SYS_dup3);
    for cmd in [
        libc::F_DUPFD_CLOEXEC,
        libc::F_GETFD,
        libc::F_SETFD,
        libc::F_GETFL,
        libc::F_SETFL,
    ] {
        a.allow_if(libc::SYS_fcntl, arg_eq(1, cmd as u64));
    }
    // Every KVM (system, VM, vCPU, device) and VFIO (container, group, device) setup ioctl: by
    // their type byte, as the set is long and grows with the kernel (the running threads hold
    // their own exact lists).
    a.allow_if(libc::SYS_ioctl, arg_masked_eq(1, 0xff00, KVM_TYPE << 8));
    a.allow_if(libc::SYS_ioctl, arg_masked_eq(1, 0xff00, VFIO_TYPE << 8));
    // A tap: created or attached, its vnet header size and offloads; its address, netmask and
    // flags on an AF_INET datagram socket (the only socket this thread may create).
    #[allow(clippy::unnecessary_cast)]
    for req in [
        libc::TUNSETIFF as u64,
        // A tap handed in over the socket (vm.add-net with fds): its name.
        TUNGETIFF,
        libc::TUNSETVNETHDRSZ as u64,
        TUNSETOFFLOAD,
        libc::SIOCSIFADDR as u64,
        libc::SIOCSIFNETMASK as u64,
        libc::SIOCGIFFLAGS as u64,
        libc::SIOCSIFFLAGS as u64,
        TCGETS,
        TCSETS,
    ] {
        a.allow_if(libc::SYS_ioctl, ioctl(req));
    }
    a.allow_if(libc::SYS_socket, arg_eq(0, libc::AF_INET as u64));
    // A vsock device listens on its unix socket (one left behind by a VMM that is gone is
    // replaced: unlink, above).
    a.allow_if(libc::SYS_socket, arg_eq(0, libc::AF_UNIX as u64));
    a.allow(libc::SYS_bind);
    a.allow(libc::SYS_listen);
    // A virtio-fs device connects to its vhost-user backend (connect, in the vsock list) with
    // reply timeouts on the socket; shared guest RAM is a memfd (sized with ftruncate).
    a.allow_if(libc::SYS_setsockopt, arg_eq(1, libc::SOL_SOCKET as u64));
    a.allow(libc::SYS_memfd_create);
    // Guest RAM: transparent huge pages (MADV_HUGEPAGE) beside the runtime's MADV_DONTNEED;
    // glibc grows large allocations with mremap (never executable: mremap cannot change
    // protections).
    a.allow_if(libc::SYS_madvise, arg_eq(2, libc::MADV_HUGEPAGE as u64));
    // A snapshot restored with prefault=on reads its memory file in (page cache, shared).
    a.allow_if(
        libc::SYS_madvise,
        arg_eq(2, crate::memory::MADV_POPULATE_READ as u64),
    );
    a.allow_if(libc::SYS_madvise, arg_eq(2, libc::MADV_WILLNEED as u64));
    a.allow(libc::SYS_mremap);
    // Starting the VM's threads: they name themselves and install their own filters.
    a.allow(libc::SYS_clone3);
    a.allow(libc::SYS_clone);
    a.allow(libc::SYS_set_robust_list);
    a.allow(libc::SYS_rseq);
    a.allow(libc::SYS_sched_getaffinity);
    a.allow_if(libc::SYS_prctl, arg_eq(0, libc::PR_SET_NAME as u64));
    a.allow_if(libc::SYS_prctl, arg_eq(0, libc::PR_SET_NO_NEW_PRIVS as u64));
    a.allow_if(
        libc::SYS_seccomp,
        arg_eq(0, libc::SECCOMP_SET_MODE_FILTER as u64),
    );
    // Signal handlers (the vCPU kick, SIGSYS) are installed once per process, but a boot
    // checks them again; VFIO preflight reads RLIMIT_MEMLOCK and the effective uid.
    a.allow(libc::SYS_rt_sigaction);
    a.allow(libc::SYS_prlimit64);
    a.allow(libc::SYS_getrlimit);
    a.allow(libc::SYS_geteuid);
    a.allow(libc::SYS_getuid);
    a.allow(libc::SYS_sched_yield);
    a.allow(libc::SYS_nanosleep);
    a
}
