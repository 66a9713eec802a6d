//! The hypervisor abstraction: a backend creates VMs, a VM creates vCPUs.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::error::Result;
use crate::exit::VmExit;
use crate::state::SavedState;
use crate::x86::{CpuidEntry, FpuState, LapicState, MsrEntry, SpecialRegisters, StandardRegisters};

/// A guest-physical memory slot backed by host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub slot: u32,
    pub guest_phys_addr: u64,
    pub size: u64,
    /// Host virtual address of the backing mapping.
    pub host_addr: u64,
    pub readonly: bool,
}

/// Where an ioeventfd listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEventAddress {
    Pio(u64),
    Mmio(u64),
}

/// One GSI routing entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqRoute {
    /// GSI -> pin of the in-kernel IOAPIC (chip 0 = master PIC, 1 = slave PIC, 2 = IOAPIC).
    Irqchip { gsi: u32, chip: u32, pin: u32 },
    /// GSI -> MSI message.
    Msi { gsi: u32, address: u64, data: u32 },
}

/// A hypervisor backend (KVM, or the fake for tests).
pub trait Hypervisor: Send + Sync {
    fn create_vm(&self) -> Result<Arc<dyn Vm>>;
    /// CPUID leaves the backend can virtualise.
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>>;
    /// Maximum vCPUs per VM the backend allows.
    fn max_vcpus(&self) -> u32;
    /// The MSRs a vCPU's saved state holds (KVM_GET_MSR_INDEX_LIST).
    fn msr_index_list(&self) -> Result<Vec<u32>>;
}

/// One virtual machine.
pub trait Vm: Send + Sync {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn VcpuX86_64>>;
    /// Map host memory into the guest.
    ///
    /// # Safety
    /// `region.host_addr..+size` must stay mapped and valid for as long as the slot exists.
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()>;
    /// Remove a slot created by `set_memory_region`.
    fn remove_memory_region(&self, region: MemoryRegion) -> Result<()>;
    /// x86: TSS and identity-map pages the backend needs below 4 GiB.
    fn set_tss_address(&self, addr: u64) -> Result<()>;
    /// In-kernel PIC + IOAPIC (+ LAPIC per vCPU).
    fn create_irqchip(&self) -> Result<()>;
    /// In-kernel i8254 PIT.
    fn create_pit(&self) -> Result<()>;
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()>;
    fn set_gsi_routing(&self, routes: &[IrqRoute]) -> Result<()>;
    /// Deliver one MSI (`address`, `data`) to the in-kernel LAPICs now, with no route: how
    /// an NMI (delivery mode 4) reaches every vCPU (destination 0xff: broadcast).
    fn signal_msi(&self, address: u64, data: u32) -> Result<()>;
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    fn register_irqfd_with_resample(
        &self,
        fd: &EventFd,
        resample: &EventFd,
        gsi: u32,
    ) -> Result<()>;
    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    fn register_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: Option<u64>,
    ) -> Result<()>;
    fn unregister_ioevent(&self, fd: &EventFd, addr: IoEventAddress) -> Result<()>;
    /// The hypervisor's VFIO pseudo-device (KVM_DEV_TYPE_VFIO). The VFIO container adds each
    /// group to it, which tells KVM that the VM has assigned devices (so it honours guest
    /// cache attributes for non-coherent DMA and lets the device's MSI bypass userspace).
    ///
    /// This returns vfio-ioctls' wrapper rather than a type of this crate: `VfioContainer::new`
    /// accepts nothing else, and the wrapper keeps the KVM fd type out of the callers.
    fn create_vfio_device(&self) -> Result<vfio_ioctls::VfioDeviceFd>;
    /// The VM-wide state a snapshot needs beside its vCPUs and memory: the in-kernel
    /// interrupt controllers, the PIT and the guest clock. Call with every vCPU stopped.
    fn save_state(&self) -> Result<SavedState>;
    /// Restore what [`Vm::save_state`] returned, after `create_irqchip` and `create_pit` and
    /// before any vCPU runs.
    fn restore_state(&self, state: &SavedState) -> Result<()>;
}

/// A virtual CPU; `run` borrows the vCPU so the exit's data can borrow its run buffer.
pub trait Vcpu: Send {
    fn id(&self) -> u32;
    fn run(&mut self) -> Result<VmExit<'_>>;
}

/// x86_64 register and state access.
pub trait VcpuX86_64: Vcpu {
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<()>;
    /// The CPUID table the vCPU presents now (as the backend made it from the one set).
    fn get_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        Err(crate::HypervisorError::State(
            "this backend cannot read a vCPU's CPUID back".into(),
        ))
    }
    fn get_regs(&self) -> Result<StandardRegisters>;
    fn set_regs(&self, regs: &StandardRegisters) -> Result<()>;
    fn get_sregs(&self) -> Result<SpecialRegisters>;
    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()>;
    fn set_fpu(&self, fpu: &FpuState) -> Result<()>;
    /// Returns how many MSRs were written.
    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<usize>;
    fn get_lapic(&self) -> Result<LapicState>;
    fn set_lapic(&self, lapic: &LapicState) -> Result<()>;
    /// Finish the instruction the vCPU last exited on (its I/O or MMIO exit handled, the
    /// instruction not completed yet) without entering the guest. `Some(exit)`: finishing it
    /// took another exit (a split MMIO access, a string I/O batch): handle it like any exit and
    /// call again. Call before [`VcpuX86_64::save_state`], so that the saved registers are
    /// past the instruction.
    fn complete_pending(&mut self) -> Result<Option<VmExit<'_>>> {
        Ok(None)
    }

    /// Tell the guest's paravirtual clock that the vCPU was stopped (after a pause or a
    /// restore), so the guest does not take the time it did not run for a soft lockup. A
    /// guest without one: nothing to do.
    fn clock_paused(&self) -> Result<()> {
        Ok(())
    }

    /// Everything that makes up the vCPU (registers, FPU/XSAVE, XCRs, debug registers, LAPIC,
    /// the MSRs in `msrs` that it has, pending events, MP state, CPUID, TSC frequency), taken
    /// while it is out of the guest, on its own thread, after [`VcpuX86_64::complete_pending`].
    fn save_state(&mut self, msrs: &[u32]) -> Result<SavedState>;
    /// Set a fresh vCPU to what [`VcpuX86_64::save_state`] returned, before it first runs.
    fn restore_state(&self, state: &SavedState) -> Result<()>;
}
