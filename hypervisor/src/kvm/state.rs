//! Saving and restoring a KVM vCPU's and VM's state (snapshots), as named raw structures
//! ([`SavedState`]). The order follows the kernel's rules: CPUID before the registers that
//! depend on it, the MP state before the registers, the LAPIC before the MSRs (the TSC
//! deadline timer), the pending events last.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{VcpuFd, VmFd};

use crate::error::{HypervisorError, Result};
use crate::state::{from_bytes, to_bytes, Pod, SavedState};

/// `Pod` for the kernel's plain C structures.
macro_rules! kernel_pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a kernel uapi structure of integers and arrays of them (and unions of
            // those): every bit pattern is a valid value.
            unsafe impl Pod for $t {}
        )*
    };
}

kernel_pod!(
    kvm_regs,
    kvm_sregs,
    kvm_xsave,
    kvm_xcrs,
    kvm_debugregs,
    kvm_lapic_state,
    kvm_vcpu_events,
    kvm_mp_state,
    kvm_msr_entry,
    kvm_cpuid_entry2,
    kvm_irqchip,
    kvm_pit_state2,
    kvm_clock_data,
);

/// MSRs per KVM_GET_MSRS / KVM_SET_MSRS: the kernel refuses 256 or more (E2BIG).
const MSR_BATCH: usize = 255;

/// One batch of at most [`MSR_BATCH`] entries for `op`.
fn msr_batch(entries: &[kvm_msr_entry], op: &'static str) -> Result<Msrs> {
    Msrs::from_entries(entries).map_err(|_| HypervisorError::Ioctl {
        op,
        source: std::io::Error::from_raw_os_error(libc::E2BIG),
    })
}

fn io(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> HypervisorError {
    move |e| HypervisorError::ioctl(op, e)
}

/// A list of `T` as one part: the structures back to back.
fn push_list<T: Pod>(s: &mut SavedState, name: &str, items: &[T]) {
    s.push(name, items.iter().flat_map(to_bytes).collect());
}

fn get_list<T: Pod>(s: &SavedState, name: &str) -> Result<Vec<T>> {
    let b = s.get(name)?;
    let size = std::mem::size_of::<T>();
    if b.len() % size != 0 {
        return Err(HypervisorError::State(format!(
            "'{name}' holds {} bytes, not a whole number of {size}-byte entries",
            b.len()
        )));
    }
    b.chunks(size).map(|c| from_bytes(name, c)).collect()
}

/// The MSRs of `indices` that the vCPU has: KVM_GET_MSRS stops at the first it cannot read,
/// so that one is skipped and the rest read on.
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<_> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = msr_batch(&entries, "KVM_GET_MSRS")?;
        let n = fd.get_msrs(&mut msrs).map_err(io("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..n]);
        // n < chunk.len(): the MSR at n is not readable here; go on after it.
        let consumed = if n < chunk.len() { n + 1 } else { n };
        rest = &rest[consumed..];
    }
    Ok(out)
}

pub fn save_vcpu(fd: &VcpuFd, msr_indices: &[u32]) -> Result<SavedState> {
    let mut s = SavedState::default();
    let cpuid = fd
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(io("KVM_GET_CPUID2"))?;
    push_list(&mut s, "cpuid", cpuid.as_slice());
    s.push_pod("tsc_khz", &fd.get_tsc_khz().map_err(io("KVM_GET_TSC_KHZ"))?);
    s.push_pod(
        "mp_state",
        &fd.get_mp_state().map_err(io("KVM_GET_MP_STATE"))?,
    );
    s.push_pod("regs", &fd.get_regs().map_err(io("KVM_GET_REGS"))?);
    s.push_pod("sregs", &fd.get_sregs().map_err(io("KVM_GET_SREGS"))?);
    s.push_pod("xsave", &fd.get_xsave().map_err(io("KVM_GET_XSAVE"))?);
    s.push_pod("xcrs", &fd.get_xcrs().map_err(io("KVM_GET_XCRS"))?);
    s.push_pod(
        "debugregs",
        &fd.get_debug_regs().map_err(io("KVM_GET_DEBUGREGS"))?,
    );
    s.push_pod("lapic", &fd.get_lapic().map_err(io("KVM_GET_LAPIC"))?);
    push_list(&mut s, "msrs", &read_msrs(fd, msr_indices)?);
    s.push_pod(
        "events",
        &fd.get_vcpu_events().map_err(io("KVM_GET_VCPU_EVENTS"))?,
    );
    Ok(s)
}

pub fn restore_vcpu(fd: &VcpuFd, s: &SavedState) -> Result<()> {
    // Every part is read (and its size checked) before the first is set.
    let cpuid: Vec<kvm_cpuid_entry2> = get_list(s, "cpuid")?;
    let tsc_khz: u32 = s.get_pod("tsc_khz")?;
    let mp_state: kvm_mp_state = s.get_pod("mp_state")?;
    let regs: kvm_regs = s.get_pod("regs")?;
    let sregs: kvm_sregs = s.get_pod("sregs")?;
    let xsave: kvm_xsave = s.get_pod("xsave")?;
    let xcrs: kvm_xcrs = s.get_pod("xcrs")?;
    let debugregs: kvm_debugregs = s.get_pod("debugregs")?;
    let lapic: kvm_lapic_state = s.get_pod("lapic")?;
    let msrs: Vec<kvm_msr_entry> = get_list(s, "msrs")?;
    let events: kvm_vcpu_events = s.get_pod("events")?;

    let cpuid = CpuId::from_entries(&cpuid).map_err(|_| HypervisorError::Ioctl {
        op: "KVM_SET_CPUID2",
        source: std::io::Error::from_raw_os_error(libc::E2BIG),
    })?;
    fd.set_cpuid2(&cpuid).map_err(io("KVM_SET_CPUID2"))?;
    // The guest's TSC runs at the rate it had; where this host's differs and KVM cannot
    // scale it, the guest's clocks drift: said, not fatal.
    if fd.get_tsc_khz().ok() != Some(tsc_khz) {
        if let Err(e) = fd.set_tsc_khz(tsc_khz) {
            log::warn!("snapshot: cannot set the guest's TSC to {tsc_khz} kHz here: {e}");
        }
    }
    fd.set_mp_state(mp_state).map_err(io("KVM_SET_MP_STATE"))?;
    fd.set_regs(&regs).map_err(io("KVM_SET_REGS"))?;
    fd.set_sregs(&sregs).map_err(io("KVM_SET_SREGS"))?;
    // SAFETY: a legacy (4 KiB) XSAVE area, as KVM_GET_XSAVE returned it.
    unsafe { fd.set_xsave(&xsave) }.map_err(io("KVM_SET_XSAVE"))?;
    fd.set_xcrs(&xcrs).map_err(io("KVM_SET_XCRS"))?;
    fd.set_debug_regs(&debugregs)
        .map_err(io("KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&lapic).map_err(io("KVM_SET_LAPIC"))?;
    let mut rest = &msrs[..];
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(MSR_BATCH)];
        let m = msr_batch(chunk, "KVM_SET_MSRS")?;
        let n = fd.set_msrs(&m).map_err(io("KVM_SET_MSRS"))?;
        if n < chunk.len() {
            log::warn!(
                "snapshot: MSR {:#x} cannot be set on this host; skipped",
                chunk[n].index
            );
            rest = &rest[n + 1..];
        } else {
            rest = &rest[n..];
        }
    }
    fd.set_vcpu_events(&events)
        .map_err(io("KVM_SET_VCPU_EVENTS"))?;
    // The guest did not run between its snapshot and now: its kvmclock says so, or the gap
    // reads as a soft lockup (EINVAL: the guest has no kvmclock).
    match fd.kvmclock_ctrl() {
        Err(e) if e.errno() != libc::EINVAL => {
            log::warn!("snapshot: KVM_KVMCLOCK_CTRL: {e}");
        }
        _ => {}
    }
    Ok(())
}

const PIC_MASTER: u32 = 0;
const PIC_SLAVE: u32 = 1;
const IOAPIC: u32 = 2;

pub fn save_vm(fd: &VmFd) -> Result<SavedState> {
    let mut s = SavedState::default();
    for (name, chip_id) in [
        ("pic_master", PIC_MASTER),
        ("pic_slave", PIC_SLAVE),
        ("ioapic", IOAPIC),
    ] {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        fd.get_irqchip(&mut chip).map_err(io("KVM_GET_IRQCHIP"))?;
        s.push_pod(name, &chip);
    }
    s.push_pod("pit", &fd.get_pit2().map_err(io("KVM_GET_PIT2"))?);
    s.push_pod("clock", &fd.get_clock().map_err(io("KVM_GET_CLOCK"))?);
    Ok(s)
}

pub fn restore_vm(fd: &VmFd, s: &SavedState) -> Result<()> {
    let chips: Vec<(u32, kvm_irqchip)> = [
        ("pic_master", PIC_MASTER),
        ("pic_slave", PIC_SLAVE),
        ("ioapic", IOAPIC),
    ]
    .iter()
    .map(|&(name, id)| s.get_pod::<kvm_irqchip>(name).map(|c| (id, c)))
    .collect::<Result<_>>()?;
    let pit: kvm_pit_state2 = s.get_pod("pit")?;
    let mut clock: kvm_clock_data = s.get_pod("clock")?;
    for (id, chip) in &chips {
        if chip.chip_id != *id {
            return Err(HypervisorError::State(format!(
                "irqchip {id} holds the state of chip {}",
                chip.chip_id
            )));
        }
        fd.set_irqchip(chip).map_err(io("KVM_SET_IRQCHIP"))?;
    }
    fd.set_pit2(&pit).map_err(io("KVM_SET_PIT2"))?;
    // The guest's clock goes on from where it was saved (not from the wall clock: no
    // KVM_CLOCK_REALTIME), and KVM_SET_CLOCK takes no other flag.
    clock.flags = 0;
    fd.set_clock(&clock).map_err(io("KVM_SET_CLOCK"))?;
    Ok(())
}

/// The CPUID table a saved vCPU state holds (its "cpuid" part), as the VMM's entries.
pub fn saved_cpuid(s: &SavedState) -> Result<Vec<crate::x86::CpuidEntry>> {
    let entries: Vec<kvm_cpuid_entry2> = get_list(s, "cpuid")?;
    Ok(entries.iter().map(super::convert::cpuid_from_kvm).collect())
}
