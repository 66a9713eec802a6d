//! The ioctl request numbers the filters name, derived from the kernel's `_IO*` encoding and
//! kvm-bindings' constants and structs (kvm-ioctls keeps its own numbers private), so a change
//! in a struct's size changes the number here too.

use std::mem::size_of;

use kvm_bindings::{kvm_ioeventfd, kvm_irq_routing, kvm_irqfd, kvm_regs, KVMIO};
use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_READ, _IOC_WRITE};

/// `_IO(KVMIO, 0x80)`: enter the guest. The only ioctl a running vCPU issues.
pub const KVM_RUN: u64 = ioctl_expr(_IOC_NONE, KVMIO, 0x80, 0) as u64;

/// `_IOR(KVMIO, 0x81, struct kvm_regs)`: a setup-time vCPU ioctl that no filtered thread may
/// issue (the tests use it as the "unknown KVM ioctl").
pub const KVM_GET_REGS: u64 =
    ioctl_expr(_IOC_READ, KVMIO, 0x81, size_of::<kvm_regs>() as u32) as u64;

/// `_IOW(KVMIO, 0x76, struct kvm_irqfd)`: wire or unwire an MSI vector's eventfd (the guest
/// enabling, masking or unmasking MSI/MSI-X, handled on the vCPU that wrote the register).
pub const KVM_IRQFD: u64 =
    ioctl_expr(_IOC_WRITE, KVMIO, 0x76, size_of::<kvm_irqfd>() as u32) as u64;

/// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)`: point an MSI vector's GSI at the address/data
/// the guest programmed.
pub const KVM_SET_GSI_ROUTING: u64 =
    ioctl_expr(_IOC_WRITE, KVMIO, 0x6a, size_of::<kvm_irq_routing>() as u32) as u64;

/// `_IOW(KVMIO, 0x79, struct kvm_ioeventfd)`: a virtio queue's notify address, registered when
/// the driver activates the device and removed on reset (VMM thread).
pub const KVM_IOEVENTFD: u64 =
    ioctl_expr(_IOC_WRITE, KVMIO, 0x79, size_of::<kvm_ioeventfd>() as u32) as u64;

/// `_IOW('T', 208, unsigned int)`: a tap's offloads, set to what the virtio-net driver
/// negotiated when the device is activated (VMM thread).
pub const TUNSETOFFLOAD: u64 = ioctl_expr(_IOC_WRITE, b'T' as u32, 208, 4) as u64;
/// `TUNGETIFF`: `_IOR('T', 210, unsigned int)`.
pub const TUNGETIFF: u64 = ioctl_expr(_IOC_READ, b'T' as u32, 210, 4) as u64;

/// `tcgetattr`/`isatty` on the console's stdin. (An `int` in musl's libc, an `unsigned
/// long` in glibc's: the same number.)
#[allow(clippy::unnecessary_cast)]
pub const TCGETS: u64 = libc::TCGETS as u64;

/// `tcsetattr(TCSANOW)`: raw mode for the console and its restoration.
#[allow(clippy::unnecessary_cast)]
pub const TCSETS: u64 = libc::TCSETS as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_uapi_headers() {
        // From <linux/kvm.h> and <asm-generic/ioctls.h> on x86_64.
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(TCGETS, 0x5401);
        assert_eq!(KVM_IRQFD, 0x4020_ae76);
        assert_eq!(KVM_SET_GSI_ROUTING, 0x4008_ae6a);
        assert_eq!(KVM_IOEVENTFD, 0x4040_ae79);
        assert_eq!(TUNSETOFFLOAD, 0x4004_54d0);
        assert_eq!(TUNGETIFF, 0x8004_54d2);
        assert_eq!(TCSETS, 0x5402);
    }
}
