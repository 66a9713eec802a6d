//! A fake backend: vCPUs replay scripted exits, every call is recorded. Lets exit dispatch,
//! devices and boot setup be tested without /dev/kvm.

mod vcpu;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::error::Result;
use crate::traits::{Hypervisor, IoEventAddress, IrqRoute, MemoryRegion, VcpuX86_64, Vm};
use crate::x86::{CpuidEntry, FpuState, LapicState, MsrEntry, SpecialRegisters, StandardRegisters};

pub use vcpu::FakeVcpu;

/// One exit a fake vCPU will return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptedExit {
    IoIn { port: u16, len: usize },
    IoOut { port: u16, data: Vec<u8> },
    MmioRead { addr: u64, len: usize },
    MmioWrite { addr: u64, data: Vec<u8> },
    Hlt,
    Shutdown,
    Reset,
    PowerOff,
    Interrupted,
}

/// Everything a caller did to the fake, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    CreateVm,
    CreateVcpu(u32),
    SetMemoryRegion(MemoryRegion),
    RemoveMemoryRegion(MemoryRegion),
    SetTssAddress(u64),
    CreateIrqchip,
    CreatePit,
    SignalMsi {
        address: u64,
        data: u32,
    },
    SetIrqLine {
        gsi: u32,
        level: bool,
    },
    SetGsiRouting(Vec<IrqRoute>),
    RegisterIrqfd {
        gsi: u32,
        resample: bool,
    },
    UnregisterIrqfd {
        gsi: u32,
    },
    RegisterIoevent {
        addr: IoEventAddress,
        datamatch: Option<u64>,
    },
    UnregisterIoevent {
        addr: IoEventAddress,
    },
    CreateVfioDevice,
    SetCpuid {
        vcpu: u32,
        entries: Vec<CpuidEntry>,
    },
    SetRegs {
        vcpu: u32,
        regs: StandardRegisters,
    },
    SetSregs {
        vcpu: u32,
        sregs: SpecialRegisters,
    },
    SetFpu {
        vcpu: u32,
        fpu: FpuState,
    },
    SetMsrs {
        vcpu: u32,
        msrs: Vec<MsrEntry>,
    },
    SetLapic {
        vcpu: u32,
        lapic: Box<LapicState>,
    },
    SaveVcpuState(u32),
    RestoreVcpuState(u32),
    SaveVmState,
    RestoreVmState,
    /// Data the VMM supplied for an `IoIn`/`MmioRead` exit, seen on the next run.
    InData {
        vcpu: u32,
        data: Vec<u8>,
    },
}

/// Shared call log.
pub type CallLog = Arc<Mutex<Vec<Call>>>;

fn record(log: &CallLog, call: Call) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(call);
}

/// The fake hypervisor.
#[derive(Default)]
pub struct FakeHypervisor {
    pub log: CallLog,
    pub cpuid: Vec<CpuidEntry>,
    scripts: Arc<Mutex<HashMap<u32, VecDeque<ScriptedExit>>>>,
}

impl FakeHypervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue exits for vCPU `id` (before or after it is created).
    pub fn script(&self, id: u32, exits: impl IntoIterator<Item = ScriptedExit>) {
        let mut s = self.scripts.lock().unwrap_or_else(|e| e.into_inner());
        s.entry(id).or_default().extend(exits);
    }

    /// A copy of the calls recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Hypervisor for FakeHypervisor {
    fn create_vm(&self) -> Result<Arc<dyn Vm>> {
        record(&self.log, Call::CreateVm);
        Ok(Arc::new(FakeVm {
            log: self.log.clone(),
            scripts: self.scripts.clone(),
            state: Mutex::new(initial_vm_state()),
        }))
    }
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        Ok(self.cpuid.clone())
    }
    fn max_vcpus(&self) -> u32 {
        255
    }

    fn msr_index_list(&self) -> Result<Vec<u32>> {
        Ok(vec![0x10, 0x1b, 0xc000_0080])
    }
}

/// The fake VM: records every call.
pub struct FakeVm {
    log: CallLog,
    scripts: Arc<Mutex<HashMap<u32, VecDeque<ScriptedExit>>>>,
    /// What `save_state` returns: an interrupt controller's and a clock's worth of bytes,
    /// replaced by `restore_state`.
    state: Mutex<crate::SavedState>,
}

fn initial_vm_state() -> crate::SavedState {
    let mut s = crate::SavedState::default();
    s.push("irqchip", (0..=255u8).collect());
    s.push_pod("clock", &1_000_000u64);
    s
}

impl Vm for FakeVm {
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn VcpuX86_64>> {
        record(&self.log, Call::CreateVcpu(id));
        Ok(Box::new(FakeVcpu::new(
            id,
            self.log.clone(),
            self.scripts.clone(),
        )))
    }
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        record(&self.log, Call::SetMemoryRegion(region));
        Ok(())
    }
    fn remove_memory_region(&self, region: MemoryRegion) -> Result<()> {
        record(&self.log, Call::RemoveMemoryRegion(region));
        Ok(())
    }
    fn set_tss_address(&self, addr: u64) -> Result<()> {
        record(&self.log, Call::SetTssAddress(addr));
        Ok(())
    }
    fn create_irqchip(&self) -> Result<()> {
        record(&self.log, Call::CreateIrqchip);
        Ok(())
    }
    fn create_pit(&self) -> Result<()> {
        record(&self.log, Call::CreatePit);
        Ok(())
    }
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        record(&self.log, Call::SetIrqLine { gsi, level });
        Ok(())
    }
    fn set_gsi_routing(&self, routes: &[IrqRoute]) -> Result<()> {
        record(&self.log, Call::SetGsiRouting(routes.to_vec()));
        Ok(())
    }
    fn signal_msi(&self, address: u64, data: u32) -> Result<()> {
        record(&self.log, Call::SignalMsi { address, data });
        Ok(())
    }
    fn register_irqfd(&self, _fd: &EventFd, gsi: u32) -> Result<()> {
        record(
            &self.log,
            Call::RegisterIrqfd {
                gsi,
                resample: false,
            },
        );
        Ok(())
    }
    fn register_irqfd_with_resample(&self, _fd: &EventFd, _r: &EventFd, gsi: u32) -> Result<()> {
        record(
            &self.log,
            Call::RegisterIrqfd {
                gsi,
                resample: true,
            },
        );
        Ok(())
    }
    fn unregister_irqfd(&self, _fd: &EventFd, gsi: u32) -> Result<()> {
        record(&self.log, Call::UnregisterIrqfd { gsi });
        Ok(())
    }
    fn register_ioevent(
        &self,
        _fd: &EventFd,
        addr: IoEventAddress,
        datamatch: Option<u64>,
    ) -> Result<()> {
        record(&self.log, Call::RegisterIoevent { addr, datamatch });
        Ok(())
    }
    fn unregister_ioevent(&self, _fd: &EventFd, addr: IoEventAddress) -> Result<()> {
        record(&self.log, Call::UnregisterIoevent { addr });
        Ok(())
    }
    fn create_vfio_device(&self) -> Result<vfio_ioctls::VfioDeviceFd> {
        record(&self.log, Call::CreateVfioDevice);
        Err(crate::HypervisorError::MissingCap(
            "KVM_DEV_TYPE_VFIO (the fake backend has no VFIO)",
        ))
    }

    fn save_state(&self) -> Result<crate::SavedState> {
        record(&self.log, Call::SaveVmState);
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn restore_state(&self, state: &crate::SavedState) -> Result<()> {
        state.get("irqchip")?;
        state.get_pod::<u64>("clock")?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state.clone();
        record(&self.log, Call::RestoreVmState);
        Ok(())
    }
}
