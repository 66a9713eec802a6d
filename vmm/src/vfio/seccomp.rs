//! The syscalls passthrough adds to two seccomp filters.
//!
//! **vCPU threads** ([`add_vcpu_rules`]): the guest's config writes and trapped BAR accesses
//! are handled on the vCPU that made them: config space and trapped BAR bytes are read and
//! written on the VFIO device file (pread64, pwrite64), enabling MSI/MSI-X hands eventfds to
//! VFIO_DEVICE_SET_IRQS, and moving a BAR moves its memory slots (KVM_SET_USER_MEMORY_REGION).
//! A move only marks the peer-to-peer DMA mappings stale: the `vfio` thread remaps them, so a
//! vCPU makes no DMA map or unmap call. The GSI routes and irqfds of the vectors are the same
//! calls emulated MSI needs (KVM_SET_GSI_ROUTING, KVM_IRQFD).
//!
//! **The `vfio` thread** ([`thread_rules`], `ThreadKind::Vfio`), confined when it starts, for
//! the VM's whole life: it resets the devices and DMA-maps guest RAM while the guest boots
//! (at idle priority, then normal priority once a device needs the mapping:
//! sched_setscheduler on itself), keeps the peer-to-peer BAR mappings in line with the BARs,
//! and at the end disables the devices' interrupts, resets them, removes their BAR slots,
//! unmaps everything and releases the devices (vfio-ioctls reads the device's
//! `iommu_group` link and takes the group off KVM's VFIO device and the container; with
//! iommufd it detaches the device's cdev from the IOAS and KVM's VFIO device; the IOAS goes
//! with the iommufd's file).

use std::mem::size_of;

use kvm_bindings::{kvm_userspace_memory_region, KVMIO};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};
use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_WRITE};

use crate::seccomp::{arg_eq, Allowlist};

const fn vfio_io(nr: u32) -> u64 {
    ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, VFIO_BASE + nr, 0) as u64
}

/// `_IO(VFIO_TYPE, VFIO_BASE + 5)`
pub const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
/// `_IO(VFIO_TYPE, VFIO_BASE + 7)`
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
/// `_IO(VFIO_TYPE, VFIO_BASE + 10)`
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
/// `_IO(VFIO_TYPE, VFIO_BASE + 11)`
pub const VFIO_DEVICE_RESET: u64 = vfio_io(11);
/// `_IO(VFIO_TYPE, VFIO_BASE + 12)`: also the container's VFIO_IOMMU_GET_INFO.
pub const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: u64 = vfio_io(12);
/// The container's usable IOVA ranges (iova.rs): the same number as the above.
pub const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
/// `_IO(VFIO_TYPE, VFIO_BASE + 13)`: also the device's VFIO_DEVICE_PCI_HOT_RESET.
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
/// The device's bus reset: the same number as [`VFIO_IOMMU_MAP_DMA`].
pub const VFIO_DEVICE_PCI_HOT_RESET: u64 = vfio_io(13);
/// `_IO(VFIO_TYPE, VFIO_BASE + 14)`
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);
/// `_IO(VFIO_TYPE, VFIO_BASE + 20)`: a device cdev leaves its IOAS (release, iommufd).
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = vfio_io(20);

/// iommufd's ioctls share VFIO's type byte (`';'`) from number 0x80 on.
const fn iommufd_io(nr: u32) -> u64 {
    ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, nr, 0) as u64
}
/// `_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)` (iova.rs).
pub const IOMMU_IOAS_IOVA_RANGES: u64 = iommufd_io(0x84);
/// `_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)`
pub const IOMMU_IOAS_MAP: u64 = iommufd_io(0x85);
/// `_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)`
pub const IOMMU_IOAS_UNMAP: u64 = iommufd_io(0x86);

/// `_IOW(KVMIO, 0xe1, struct kvm_device_attr)`
pub const KVM_SET_DEVICE_ATTR: u64 = ioctl_expr(
    _IOC_WRITE,
    KVMIO,
    0xe1,
    size_of::<kvm_bindings::kvm_device_attr>() as u32,
) as u64;
/// `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)`
pub const KVM_SET_USER_MEMORY_REGION: u64 = ioctl_expr(
    _IOC_WRITE,
    KVMIO,
    0x46,
    size_of::<kvm_userspace_memory_region>() as u32,
) as u64;

fn ioctl(request: u64) -> SeccompRule {
    // The request is an unsigned int: compare the low dword, as the kernel does.
    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
        .and_then(|c| SeccompRule::new(vec![c]))
        .expect("a one-condition rule on argument 1 is valid")
}

/// Adds the vCPU-side VFIO syscalls to `a` (see the module documentation for why each).
pub fn add_vcpu_rules(a: &mut Allowlist) {
    // Config space and trapped BAR accesses on the VFIO device file.
    a.allow(libc::SYS_pread64);
    a.allow(libc::SYS_pwrite64);
    // MSI/MSI-X enable and disable.
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_DEVICE_SET_IRQS));
    // BAR moves: memory slots follow the BAR.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_SET_USER_MEMORY_REGION));
}

/// What the `vfio` thread may do beyond the runtime core (see the module documentation).
pub fn thread_rules() -> Allowlist {
    let mut a = Allowlist::default();
    // Resets (before the mapping and at the end), interrupts off at the end. A device without
    // a reset of its own gets a bus reset: VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and
    // VFIO_DEVICE_PCI_HOT_RESET share their numbers with VFIO_IOMMU_GET_INFO and
    // VFIO_IOMMU_MAP_DMA (allowed below).
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_DEVICE_RESET));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_DEVICE_SET_IRQS));
    // Guest RAM and peer-to-peer BAR mappings: the container's, or the IOAS's (iommufd).
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_IOMMU_MAP_DMA));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_IOMMU_UNMAP_DMA));
    a.allow_if(libc::SYS_ioctl, ioctl(IOMMU_IOAS_MAP));
    a.allow_if(libc::SYS_ioctl, ioctl(IOMMU_IOAS_UNMAP));
    // BAR slots removed at the end.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_SET_USER_MEMORY_REGION));
    // Releasing a device: its group leaves KVM's VFIO device and the container, or its cdev
    // leaves KVM's VFIO device and the IOAS.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_SET_DEVICE_ATTR));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_GROUP_UNSET_CONTAINER));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_DEVICE_DETACH_IOMMUFD_PT));
    a.allow(libc::SYS_readlink);
    a.allow(libc::SYS_readlinkat);
    // The peer-to-peer sync keys its mappings in a HashMap: the thread's first RandomState
    // seeds itself from getrandom (found by the vfio-p2p lab scenario).
    a.allow(libc::SYS_getrandom);
    // Its own priority (pid 0 = the calling thread): SCHED_IDLE while nobody waits for the
    // mapping, SCHED_OTHER once a device does.
    a.allow_if(libc::SYS_sched_setscheduler, arg_eq(0, 0));
    a
}

/// What a prefault helper may do beyond the runtime core: populate guest RAM
/// (madvise MADV_POPULATE_WRITE and nothing else) and lower its own priority.
pub fn prefault_rules() -> Allowlist {
    let mut a = Allowlist::default();
    a.allow_if(
        libc::SYS_madvise,
        arg_eq(2, super::prefault::MADV_POPULATE_WRITE as u64),
    );
    a.allow_if(libc::SYS_sched_setscheduler, arg_eq(0, 0));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_uapi_headers() {
        assert_eq!(VFIO_GROUP_UNSET_CONTAINER, 0x3b69);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(KVM_SET_DEVICE_ATTR, 0x4018_aee1);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        // include/uapi/linux/iommufd.h and vfio.h (Linux 6.12).
        assert_eq!(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);
        assert_eq!(IOMMU_IOAS_IOVA_RANGES, 0x3b84);
        assert_eq!(IOMMU_IOAS_MAP, 0x3b85);
        assert_eq!(IOMMU_IOAS_UNMAP, 0x3b86);
        let mut a = Allowlist::default();
        add_vcpu_rules(&mut a);
        assert!(a.contains(libc::SYS_pread64) && a.contains(libc::SYS_ioctl));
    }

    /// The vCPU side makes no DMA mapping (the `vfio` thread does), and the `vfio` thread
    /// may not touch config space or open anything.
    #[test]
    fn dma_calls_are_the_vfio_threads_alone() {
        use crate::seccomp::{bpf, Confinement, SeccompMode, ThreadKind};
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        const RET_ALLOW: u32 = 0x7fff_0000;
        let mut vcpu = Confinement::new(SeccompMode::Enforce);
        add_vcpu_rules(&mut vcpu.extra);
        let vcpu = vcpu.program(ThreadKind::Vcpu).unwrap().unwrap();
        let vfio = Confinement::new(SeccompMode::Enforce)
            .program(ThreadKind::Vfio)
            .unwrap()
            .unwrap();
        let allows = |prog: &[seccompiler::sock_filter], nr: i64, args: [u64; 6]| {
            bpf::run(prog, AUDIT_ARCH_X86_64, nr as u32, args).0 == RET_ALLOW
        };
        let ioctl = |req: u64| [5, req, 0, 0, 0, 0];
        for req in [VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_DEVICE_RESET] {
            assert!(
                !allows(&vcpu, libc::SYS_ioctl, ioctl(req)),
                "vCPU: {req:#x}"
            );
            assert!(allows(&vfio, libc::SYS_ioctl, ioctl(req)), "vfio: {req:#x}");
        }
        assert!(allows(&vcpu, libc::SYS_ioctl, ioctl(VFIO_DEVICE_SET_IRQS)));
        for nr in [
            libc::SYS_openat,
            libc::SYS_pread64,
            libc::SYS_socket,
            libc::SYS_clone3,
        ] {
            assert!(
                !allows(&vfio, nr, [0; 6]),
                "vfio thread allows syscall {nr}"
            );
        }
        // Its own priority only.
        assert!(allows(
            &vfio,
            libc::SYS_sched_setscheduler,
            [0, 5, 0, 0, 0, 0]
        ));
        assert!(!allows(
            &vfio,
            libc::SYS_sched_setscheduler,
            [1, 5, 0, 0, 0, 0]
        ));
    }
}
