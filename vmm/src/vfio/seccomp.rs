//! What a vCPU thread needs to serve a passed-through device, for the vCPU seccomp filter.
//!
//! The guest's config writes and trapped BAR accesses are handled on the vCPU that made them:
//! config space and trapped BAR bytes are read and written on the VFIO device file (pread64,
//! pwrite64), enabling MSI/MSI-X hands eventfds to VFIO_DEVICE_SET_IRQS, and moving a BAR
//! moves its memory slots (KVM_SET_USER_MEMORY_REGION) and, with several devices, its
//! peer-to-peer DMA mapping (VFIO_IOMMU_MAP_DMA/UNMAP_DMA). The GSI routes and irqfds of the
//! vectors are the same calls emulated MSI needs (KVM_SET_GSI_ROUTING, KVM_IRQFD).
//! Opening, DMA-mapping guest RAM and teardown happen on the `vfio` thread, which is started
//! during setup and runs without a filter, like the rest of setup.

use std::mem::size_of;

use kvm_bindings::{kvm_userspace_memory_region, KVMIO};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE};
use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_WRITE};

use crate::seccomp::Allowlist;

const fn vfio_io(nr: u32) -> u64 {
    ioctl_expr(_IOC_NONE, VFIO_TYPE as u32, VFIO_BASE + nr, 0) as u64
}

/// `_IO(VFIO_TYPE, VFIO_BASE + 10)`
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
/// `_IO(VFIO_TYPE, VFIO_BASE + 13)`
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
/// `_IO(VFIO_TYPE, VFIO_BASE + 14)`
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);
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
    // BAR moves: memory slots and peer-to-peer DMA mappings follow the BAR.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_SET_USER_MEMORY_REGION));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_IOMMU_MAP_DMA));
    a.allow_if(libc::SYS_ioctl, ioctl(VFIO_IOMMU_UNMAP_DMA));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_uapi_headers() {
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        let mut a = Allowlist::default();
        add_vcpu_rules(&mut a);
        assert!(a.contains(libc::SYS_pread64) && a.contains(libc::SYS_ioctl));
    }
}
