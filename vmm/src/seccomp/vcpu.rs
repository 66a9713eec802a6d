//! vCPU threads: enter the guest, emulate the port/MMIO access that brought the guest out
//! (serial output to stdout or a file, interrupt eventfds, the exit eventfd), enter again.
//! Installed at the top of the thread function, before the first KVM_RUN.

use super::allowlist::{ioctl, Allowlist};
use super::common;
use super::ioctls::{KVM_IRQFD, KVM_RUN, KVM_SET_GSI_ROUTING};

pub fn allowlist() -> Allowlist {
    let mut a = common::runtime();
    // The one KVM ioctl a running vCPU issues. Registers, CPUID, MSRs and the LAPIC are all
    // set up by the VMM thread before the vCPU threads start; a vCPU thread asking for any
    // other KVM (or tty, or device) ioctl is not doing its job.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_RUN));
    // A guest write to an MSI capability or an MSI-X table entry takes effect on the vCPU
    // that made it: the vector's GSI route and its irqfd (see interrupts.rs).
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_SET_GSI_ROUTING));
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_IRQFD));
    // A guest read of an MSI-X PBA asks whether a masked vector's eventfd holds an interrupt
    // (ppoll with a zero timeout; see interrupts.rs).
    a.allow(libc::SYS_ppoll);
    // With VFIO passthrough configured, vm.rs adds vfio/seccomp.rs's rules (config space
    // pread64/pwrite64, VFIO_DEVICE_SET_IRQS, BAR moves) through `Confinement::extra`, so a VM
    // without passthrough keeps this narrower list.
    // Everything else a vCPU does is in the runtime list: write (COM1 output to stdout or the
    // --serial file, irqfd and exit eventfds, log lines), futex (bus and device locks),
    // rt_sigreturn (the kick handler), munmap/close (its kvm_run page and fd when it ends).
    a
}
