//! What snapshots add to the vCPU filter of a VM that can be snapshotted (one started through
//! the API): a parked vCPU saves its own state on its own thread, with KVM's read-only vCPU
//! ioctls (and KVM_RUN with immediate_exit, already allowed, to finish its last instruction),
//! and tells the guest's kvmclock it was stopped when it leaves a pause. Restoring needs nothing here: it is done by the control loop before any vCPU runs.
//! VMs started from the command line keep the narrower filter.

use std::mem::size_of;

use kvm_bindings::{
    kvm_cpuid2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msrs, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, KVMIO,
};
use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_READ, _IOC_WRITE};

use crate::seccomp::{arg_eq, Allowlist};

const fn ior(nr: u32, size: usize) -> u64 {
    ioctl_expr(_IOC_READ, KVMIO, nr, size as u32) as u64
}

const fn iowr(nr: u32, size: usize) -> u64 {
    ioctl_expr(_IOC_READ | _IOC_WRITE, KVMIO, nr, size as u32) as u64
}

/// The KVM vCPU ioctls a vCPU's state is read with (`hypervisor::kvm::state::save_vcpu`),
/// and KVM_KVMCLOCK_CTRL, which a vCPU leaving a pause issues (the guest's kvmclock learns
/// it was stopped).
pub const SAVE_IOCTLS: [(&str, u64); 12] = [
    ("KVM_GET_REGS", ior(0x81, size_of::<kvm_regs>())),
    ("KVM_GET_SREGS", ior(0x83, size_of::<kvm_sregs>())),
    ("KVM_GET_MSRS", iowr(0x88, size_of::<kvm_msrs>())),
    ("KVM_GET_LAPIC", ior(0x8e, size_of::<kvm_lapic_state>())),
    ("KVM_GET_CPUID2", iowr(0x91, size_of::<kvm_cpuid2>())),
    ("KVM_GET_MP_STATE", ior(0x98, size_of::<kvm_mp_state>())),
    (
        "KVM_GET_VCPU_EVENTS",
        ior(0x9f, size_of::<kvm_vcpu_events>()),
    ),
    ("KVM_GET_DEBUGREGS", ior(0xa1, size_of::<kvm_debugregs>())),
    (
        "KVM_GET_TSC_KHZ",
        ioctl_expr(_IOC_NONE, KVMIO, 0xa3, 0) as u64,
    ),
    ("KVM_GET_XSAVE", ior(0xa4, size_of::<kvm_xsave>())),
    ("KVM_GET_XCRS", ior(0xa6, size_of::<kvm_xcrs>())),
    (
        "KVM_KVMCLOCK_CTRL",
        ioctl_expr(_IOC_NONE, KVMIO, 0xad, 0) as u64,
    ),
];

/// Adds the state-saving ioctls to a vCPU filter's rules.
pub fn add_vcpu_rules(a: &mut Allowlist) {
    for (_, req) in SAVE_IOCTLS {
        a.allow_if(libc::SYS_ioctl, arg_eq(1, req));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_linux_uapi_headers() {
        let want = [
            0x8090_ae81u64,
            0x8138_ae83,
            0xc008_ae88,
            0x8400_ae8e,
            0xc008_ae91,
            0x8004_ae98,
            0x8040_ae9f,
            0x8080_aea1,
            0xaea3,
            0x9000_aea4,
            0x8188_aea6,
            0xaead,
        ];
        for ((name, got), want) in SAVE_IOCTLS.iter().zip(want) {
            assert_eq!(*got, want, "{name}");
        }
    }
}
