//! A fake vCPU replaying a script.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{record, Call, CallLog, ScriptedExit};
use crate::error::Result;
use crate::exit::VmExit;
use crate::traits::{Vcpu, VcpuX86_64};
use crate::x86::{CpuidEntry, FpuState, LapicState, MsrEntry, SpecialRegisters, StandardRegisters};

pub struct FakeVcpu {
    id: u32,
    log: CallLog,
    scripts: Arc<Mutex<HashMap<u32, VecDeque<ScriptedExit>>>>,
    /// The run buffer the current exit borrows.
    buf: Vec<u8>,
    /// Whether `buf` holds data the VMM was to fill in (an IoIn/MmioRead).
    pending_in: bool,
    regs: Mutex<StandardRegisters>,
    sregs: Mutex<SpecialRegisters>,
    lapic: Mutex<LapicState>,
}

impl FakeVcpu {
    pub(super) fn new(
        id: u32,
        log: CallLog,
        scripts: Arc<Mutex<HashMap<u32, VecDeque<ScriptedExit>>>>,
    ) -> Self {
        FakeVcpu {
            id,
            log,
            scripts,
            buf: Vec::new(),
            pending_in: false,
            regs: Mutex::default(),
            sregs: Mutex::default(),
            lapic: Mutex::default(),
        }
    }

    fn next(&self) -> Option<ScriptedExit> {
        let mut s = self.scripts.lock().unwrap_or_else(|e| e.into_inner());
        s.get_mut(&self.id).and_then(|q| q.pop_front())
    }
}

impl Vcpu for FakeVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    /// Replays the next scripted exit; an exhausted script reads as `Shutdown`.
    fn run(&mut self) -> Result<VmExit<'_>> {
        if self.pending_in {
            record(
                &self.log,
                Call::InData {
                    vcpu: self.id,
                    data: self.buf.clone(),
                },
            );
            self.pending_in = false;
        }
        let exit = self.next().unwrap_or(ScriptedExit::Shutdown);
        Ok(match exit {
            ScriptedExit::IoIn { port, len } => {
                self.buf = vec![0; len];
                self.pending_in = true;
                VmExit::IoIn {
                    port,
                    data: &mut self.buf,
                }
            }
            ScriptedExit::IoOut { port, data } => {
                self.buf = data;
                VmExit::IoOut {
                    port,
                    data: &self.buf,
                }
            }
            ScriptedExit::MmioRead { addr, len } => {
                self.buf = vec![0; len];
                self.pending_in = true;
                VmExit::MmioRead {
                    addr,
                    data: &mut self.buf,
                }
            }
            ScriptedExit::MmioWrite { addr, data } => {
                self.buf = data;
                VmExit::MmioWrite {
                    addr,
                    data: &self.buf,
                }
            }
            ScriptedExit::Hlt => VmExit::Hlt,
            ScriptedExit::Shutdown => VmExit::Shutdown,
            ScriptedExit::Reset => VmExit::Reset,
            ScriptedExit::PowerOff => VmExit::PowerOff,
            ScriptedExit::Interrupted => VmExit::Interrupted,
        })
    }
}

impl VcpuX86_64 for FakeVcpu {
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<()> {
        record(
            &self.log,
            Call::SetCpuid {
                vcpu: self.id,
                entries: entries.to_vec(),
            },
        );
        Ok(())
    }
    fn get_regs(&self) -> Result<StandardRegisters> {
        Ok(*self.regs.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn set_regs(&self, regs: &StandardRegisters) -> Result<()> {
        *self.regs.lock().unwrap_or_else(|e| e.into_inner()) = *regs;
        record(
            &self.log,
            Call::SetRegs {
                vcpu: self.id,
                regs: *regs,
            },
        );
        Ok(())
    }
    fn get_sregs(&self) -> Result<SpecialRegisters> {
        Ok(*self.sregs.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()> {
        *self.sregs.lock().unwrap_or_else(|e| e.into_inner()) = *sregs;
        record(
            &self.log,
            Call::SetSregs {
                vcpu: self.id,
                sregs: *sregs,
            },
        );
        Ok(())
    }
    fn set_fpu(&self, fpu: &FpuState) -> Result<()> {
        record(
            &self.log,
            Call::SetFpu {
                vcpu: self.id,
                fpu: *fpu,
            },
        );
        Ok(())
    }
    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<usize> {
        record(
            &self.log,
            Call::SetMsrs {
                vcpu: self.id,
                msrs: msrs.to_vec(),
            },
        );
        Ok(msrs.len())
    }
    fn get_lapic(&self) -> Result<LapicState> {
        Ok(*self.lapic.lock().unwrap_or_else(|e| e.into_inner()))
    }
    /// The fake's state: its instruction and stack pointers, its LAPIC page and the MSR
    /// indices it was asked for (so tests see them passed through).
    fn save_state(&mut self, msrs: &[u32]) -> Result<crate::SavedState> {
        let regs = *self.regs.lock().unwrap_or_else(|e| e.into_inner());
        let lapic = *self.lapic.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = crate::SavedState::default();
        s.push_pod("rip", &regs.rip);
        s.push_pod("rsp", &regs.rsp);
        s.push("lapic", lapic.regs.to_vec());
        s.push("msrs", msrs.iter().flat_map(|m| m.to_le_bytes()).collect());
        record(&self.log, Call::SaveVcpuState(self.id));
        Ok(s)
    }

    fn restore_state(&self, state: &crate::SavedState) -> Result<()> {
        let rip: u64 = state.get_pod("rip")?;
        let rsp: u64 = state.get_pod("rsp")?;
        let lapic = state.get("lapic")?;
        let mut l = LapicState::default();
        if lapic.len() != l.regs.len() {
            return Err(crate::HypervisorError::State(format!(
                "'lapic' holds {} bytes, not {}",
                lapic.len(),
                l.regs.len()
            )));
        }
        l.regs.copy_from_slice(lapic);
        state.get("msrs")?;
        {
            let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            regs.rip = rip;
            regs.rsp = rsp;
        }
        *self.lapic.lock().unwrap_or_else(|e| e.into_inner()) = l;
        record(&self.log, Call::RestoreVcpuState(self.id));
        Ok(())
    }

    fn set_lapic(&self, lapic: &LapicState) -> Result<()> {
        *self.lapic.lock().unwrap_or_else(|e| e.into_inner()) = *lapic;
        record(
            &self.log,
            Call::SetLapic {
                vcpu: self.id,
                lapic: Box::new(*lapic),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHypervisor;
    use crate::traits::Hypervisor;

    #[test]
    fn replays_script_and_records_in_data() {
        let hv = FakeHypervisor::new();
        hv.script(
            0,
            [
                ScriptedExit::IoOut {
                    port: 0x3f8,
                    data: vec![b'h'],
                },
                ScriptedExit::IoIn {
                    port: 0x3fd,
                    len: 1,
                },
            ],
        );
        let vm = hv.create_vm().unwrap();
        let mut vcpu = vm.create_vcpu(0).unwrap();
        match vcpu.run().unwrap() {
            VmExit::IoOut { port, data } => {
                assert_eq!(port, 0x3f8);
                assert_eq!(data, b"h");
            }
            e => panic!("unexpected exit {e:?}"),
        }
        match vcpu.run().unwrap() {
            VmExit::IoIn { port, data } => {
                assert_eq!(port, 0x3fd);
                data[0] = 0x60;
            }
            e => panic!("unexpected exit {e:?}"),
        }
        assert_eq!(vcpu.run().unwrap(), VmExit::Shutdown);
        let calls = hv.calls();
        assert_eq!(calls[0], Call::CreateVm);
        assert_eq!(calls[1], Call::CreateVcpu(0));
        assert_eq!(
            calls[2],
            Call::InData {
                vcpu: 0,
                data: vec![0x60]
            }
        );
    }

    #[test]
    fn state_setters_are_recorded_and_readable() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let vcpu = vm.create_vcpu(3).unwrap();
        let regs = StandardRegisters {
            rip: 0x1000,
            ..Default::default()
        };
        vcpu.set_regs(&regs).unwrap();
        assert_eq!(vcpu.get_regs().unwrap().rip, 0x1000);
        assert!(hv.calls().contains(&Call::SetRegs { vcpu: 3, regs }));
    }
}
