//! A KVM vCPU.

use kvm_bindings::{
    kvm_lapic_state, kvm_msr_entry, CpuId, Msrs, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::convert;
use crate::error::{HypervisorError, Result};
use crate::exit::VmExit;
use crate::traits::{Vcpu, VcpuX86_64};
use crate::x86::{CpuidEntry, FpuState, LapicState, MsrEntry, SpecialRegisters, StandardRegisters};

pub struct KvmVcpu {
    fd: VcpuFd,
    id: u32,
}

impl KvmVcpu {
    pub(super) fn new(fd: VcpuFd, id: u32) -> Self {
        KvmVcpu { fd, id }
    }
}

fn map_exit(exit: VcpuExit<'_>) -> VmExit<'_> {
    match exit {
        VcpuExit::IoIn(port, data) => VmExit::IoIn { port, data },
        VcpuExit::IoOut(port, data) => VmExit::IoOut { port, data },
        VcpuExit::MmioRead(addr, data) => VmExit::MmioRead { addr, data },
        VcpuExit::MmioWrite(addr, data) => VmExit::MmioWrite { addr, data },
        VcpuExit::Hlt => VmExit::Hlt,
        VcpuExit::Shutdown => VmExit::Shutdown,
        VcpuExit::Intr => VmExit::Interrupted,
        VcpuExit::FailEntry(reason, _) => VmExit::FailEntry { reason },
        VcpuExit::InternalError => VmExit::InternalError { suberror: 0 },
        VcpuExit::SystemEvent(t, _) if t == KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
        VcpuExit::SystemEvent(t, _) if t == KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::PowerOff,
        VcpuExit::SystemEvent(t, _) => VmExit::Unhandled { code: 0x1000 + t },
        VcpuExit::Unsupported(r) => VmExit::Unhandled { code: r },
        _ => VmExit::Unhandled { code: u32::MAX },
    }
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self) -> Result<VmExit<'_>> {
        // A completion left half-way (see `complete_pending`) must not stop the guest from
        // running: the flag is clear for every normal entry.
        if self.fd.get_kvm_run().immediate_exit != 0 {
            self.fd.set_kvm_immediate_exit(0);
        }
        match self.fd.run() {
            Ok(exit) => Ok(map_exit(exit)),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VmExit::Interrupted)
            }
            Err(e) => Err(HypervisorError::ioctl("KVM_RUN", e)),
        }
    }
}

impl VcpuX86_64 for KvmVcpu {
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<()> {
        let kvm: Vec<_> = entries.iter().map(convert::cpuid_to_kvm).collect();
        let cpuid = CpuId::from_entries(&kvm).map_err(|_| HypervisorError::Ioctl {
            op: "KVM_SET_CPUID2",
            source: std::io::Error::from_raw_os_error(libc::E2BIG),
        })?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_CPUID2", e))
    }

    fn get_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        self.fd
            .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map(|c| c.as_slice().iter().map(convert::cpuid_from_kvm).collect())
            .map_err(|e| HypervisorError::ioctl("KVM_GET_CPUID2", e))
    }

    fn get_regs(&self) -> Result<StandardRegisters> {
        self.fd
            .get_regs()
            .map(|r| convert::regs_from_kvm(&r))
            .map_err(|e| HypervisorError::ioctl("KVM_GET_REGS", e))
    }

    fn set_regs(&self, regs: &StandardRegisters) -> Result<()> {
        self.fd
            .set_regs(&convert::regs_to_kvm(regs))
            .map_err(|e| HypervisorError::ioctl("KVM_SET_REGS", e))
    }

    fn get_sregs(&self) -> Result<SpecialRegisters> {
        self.fd
            .get_sregs()
            .map(|s| convert::sregs_from_kvm(&s))
            .map_err(|e| HypervisorError::ioctl("KVM_GET_SREGS", e))
    }

    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()> {
        let base = self
            .fd
            .get_sregs()
            .map_err(|e| HypervisorError::ioctl("KVM_GET_SREGS", e))?;
        self.fd
            .set_sregs(&convert::sregs_to_kvm(sregs, &base))
            .map_err(|e| HypervisorError::ioctl("KVM_SET_SREGS", e))
    }

    fn set_fpu(&self, fpu: &FpuState) -> Result<()> {
        self.fd
            .set_fpu(&convert::fpu_to_kvm(fpu))
            .map_err(|e| HypervisorError::ioctl("KVM_SET_FPU", e))
    }

    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<usize> {
        let entries: Vec<kvm_msr_entry> = msrs
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| HypervisorError::Ioctl {
            op: "KVM_SET_MSRS",
            source: std::io::Error::from_raw_os_error(libc::E2BIG),
        })?;
        self.fd
            .set_msrs(&msrs)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_MSRS", e))
    }

    fn get_lapic(&self) -> Result<LapicState> {
        let l = self
            .fd
            .get_lapic()
            .map_err(|e| HypervisorError::ioctl("KVM_GET_LAPIC", e))?;
        let mut s = LapicState::default();
        for (d, v) in s.regs.iter_mut().zip(l.regs.iter()) {
            *d = *v as u8;
        }
        Ok(s)
    }

    fn complete_pending(&mut self) -> Result<Option<VmExit<'_>>> {
        // KVM finishes an instruction whose exit userspace handled (an IN's data, an MMIO
        // read's, an OUT's RIP) on the next KVM_RUN: with immediate_exit set, that run
        // completes it and returns EINTR without entering the guest
        // (Documentation/virt/kvm/api.rst, "immediate_exit"). `run` clears the flag again.
        self.fd.set_kvm_immediate_exit(1);
        match self.fd.run() {
            Ok(exit) => Ok(Some(map_exit(exit))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(None),
            Err(e) => Err(HypervisorError::ioctl("KVM_RUN (immediate exit)", e)),
        }
    }

    fn clock_paused(&self) -> Result<()> {
        match self.fd.kvmclock_ctrl() {
            Ok(()) => Ok(()),
            // The guest has not enabled kvmclock: nothing to tell it.
            Err(e) if e.errno() == libc::EINVAL => Ok(()),
            Err(e) => Err(HypervisorError::ioctl("KVM_KVMCLOCK_CTRL", e)),
        }
    }

    fn save_state(&mut self, msrs: &[u32]) -> Result<crate::SavedState> {
        super::state::save_vcpu(&self.fd, msrs)
    }

    fn restore_state(&self, state: &crate::SavedState) -> Result<()> {
        super::state::restore_vcpu(&self.fd, state)
    }

    fn set_lapic(&self, lapic: &LapicState) -> Result<()> {
        let mut l = kvm_lapic_state::default();
        for (d, v) in l.regs.iter_mut().zip(lapic.regs.iter()) {
            *d = *v as _;
        }
        self.fd
            .set_lapic(&l)
            .map_err(|e| HypervisorError::ioctl("KVM_SET_LAPIC", e))
    }
}
