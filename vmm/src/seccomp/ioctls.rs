//! The ioctl request numbers the filters name, derived from the kernel's `_IO*` encoding and
//! kvm-bindings' constants and structs (kvm-ioctls keeps its own numbers private), so a change
//! in a struct's size changes the number here too.

use std::mem::size_of;

use kvm_bindings::{kvm_regs, KVMIO};
use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_READ};

/// `_IO(KVMIO, 0x80)`: enter the guest. The only ioctl a running vCPU issues.
pub const KVM_RUN: u64 = ioctl_expr(_IOC_NONE, KVMIO, 0x80, 0) as u64;

/// `_IOR(KVMIO, 0x81, struct kvm_regs)`: a setup-time vCPU ioctl that no filtered thread may
/// issue (the tests use it as the "unknown KVM ioctl").
pub const KVM_GET_REGS: u64 =
    ioctl_expr(_IOC_READ, KVMIO, 0x81, size_of::<kvm_regs>() as u32) as u64;

/// `tcgetattr`/`isatty` on the console's stdin.
pub const TCGETS: u64 = libc::TCGETS as u64;

/// `tcsetattr(TCSANOW)`: raw mode for the console and its restoration.
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
        assert_eq!(TCSETS, 0x5402);
    }
}
