//! configure_vcpu against a recording vCPU.

use std::sync::Mutex;

use hypervisor::{
    CpuidEntry, FpuState, LapicState, MsrEntry, Segment, SpecialRegisters, StandardRegisters, Vcpu,
    VcpuX86_64, VmExit,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::boot::{BootProtocol, EntryPoint};
use crate::gdt::segment_from_gdt;
use crate::lapic::{APIC_LVT0, APIC_LVT1};
use crate::layout::{BOOT_GDT_START, PML4_START};
use crate::msrs::{boot_msrs, MSR_IA32_SYSENTER_ESP};

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Cpuid(Vec<CpuidEntry>),
    Regs(StandardRegisters),
    Sregs(SpecialRegisters),
    Fpu(FpuState),
    Msrs(Vec<MsrEntry>),
    Lapic(Box<LapicState>),
}

/// Records set_* calls; `msrs_accepted` limits how many MSRs set_msrs reports written.
struct Recorder {
    id: u32,
    calls: Mutex<Vec<Call>>,
    msrs_accepted: Option<usize>,
}

impl Recorder {
    fn new(id: u32) -> Self {
        Recorder {
            id,
            calls: Mutex::new(Vec::new()),
            msrs_accepted: None,
        }
    }
    fn push(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn regs(&self) -> Option<StandardRegisters> {
        self.calls().into_iter().find_map(|c| match c {
            Call::Regs(r) => Some(r),
            _ => None,
        })
    }
    fn sregs(&self) -> Option<SpecialRegisters> {
        self.calls().into_iter().find_map(|c| match c {
            Call::Sregs(s) => Some(s),
            _ => None,
        })
    }
}

impl Vcpu for Recorder {
    fn id(&self) -> u32 {
        self.id
    }
    fn run(&mut self) -> hypervisor::Result<VmExit<'_>> {
        Ok(VmExit::Shutdown)
    }
}

impl VcpuX86_64 for Recorder {
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> hypervisor::Result<()> {
        self.push(Call::Cpuid(entries.to_vec()));
        Ok(())
    }
    fn get_regs(&self) -> hypervisor::Result<StandardRegisters> {
        Ok(StandardRegisters::default())
    }
    fn set_regs(&self, regs: &StandardRegisters) -> hypervisor::Result<()> {
        self.push(Call::Regs(*regs));
        Ok(())
    }
    fn get_sregs(&self) -> hypervisor::Result<SpecialRegisters> {
        Ok(SpecialRegisters {
            apic_base: 0xfee0_0900,
            ..Default::default()
        })
    }
    fn set_sregs(&self, sregs: &SpecialRegisters) -> hypervisor::Result<()> {
        self.push(Call::Sregs(*sregs));
        Ok(())
    }
    fn set_fpu(&self, fpu: &FpuState) -> hypervisor::Result<()> {
        self.push(Call::Fpu(*fpu));
        Ok(())
    }
    fn set_msrs(&self, msrs: &[MsrEntry]) -> hypervisor::Result<usize> {
        self.push(Call::Msrs(msrs.to_vec()));
        Ok(self.msrs_accepted.unwrap_or(msrs.len()))
    }
    fn get_lapic(&self) -> hypervisor::Result<LapicState> {
        Ok(LapicState::default())
    }
    fn set_lapic(&self, lapic: &LapicState) -> hypervisor::Result<()> {
        self.push(Call::Lapic(Box::new(*lapic)));
        Ok(())
    }
    // Boot setup never saves or restores a vCPU's whole state.
    fn save_state(&mut self, _: &[u32]) -> hypervisor::Result<hypervisor::SavedState> {
        Err(hypervisor::HypervisorError::State(
            "not in boot setup".into(),
        ))
    }
    fn restore_state(&self, _: &hypervisor::SavedState) -> hypervisor::Result<()> {
        Err(hypervisor::HypervisorError::State(
            "not in boot setup".into(),
        ))
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

fn supported() -> Vec<CpuidEntry> {
    vec![CpuidEntry {
        function: 1,
        ..Default::default()
    }]
}

fn configure(v: &Recorder, id: u32, entry: Option<&EntryPoint>, m: &GuestMemoryMmap) {
    configure_vcpu(v, id, 4, 40, &supported(), entry, m).unwrap();
}

/// The descriptor at `selector` in the GDT written to guest memory, decoded.
fn gdt_segment(m: &GuestMemoryMmap, selector: u16) -> Segment {
    let table: Vec<u64> = (0..8)
        .map(|i| m.read_obj(GuestAddress(BOOT_GDT_START + i * 8)).unwrap())
        .collect();
    segment_from_gdt(&table, usize::from(selector / 8))
}

const PVH: EntryPoint = EntryPoint {
    addr: 0x10_0000,
    protocol: BootProtocol::Pvh,
};
const LINUX: EntryPoint = EntryPoint {
    addr: 0x10_0200,
    protocol: BootProtocol::LinuxBoot,
};

#[test]
fn every_vcpu_gets_cpuid_msrs_fpu_and_lapic() {
    let m = mem();
    let v = Recorder::new(2);
    configure(&v, 2, None, &m);
    let calls = v.calls();
    let Call::Cpuid(cpuid) = &calls[0] else {
        panic!("first call {:?}", calls[0])
    };
    assert_eq!(cpuid.iter().find(|e| e.function == 1).unwrap().ebx >> 24, 2);
    assert_eq!(calls[1], Call::Msrs(boot_msrs()));
    assert_eq!(
        calls[2],
        Call::Fpu(FpuState {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        })
    );
    let Call::Lapic(lapic) = &calls[3] else {
        panic!("last call {:?}", calls[3])
    };
    assert_eq!((lapic.get_reg(APIC_LVT0) >> 8) & 7, 7, "LINT0 ExtINT");
    assert_eq!((lapic.get_reg(APIC_LVT1) >> 8) & 7, 4, "LINT1 NMI");
    assert_eq!(calls.len(), 4);
}

#[test]
fn application_processors_get_no_registers_even_with_an_entry() {
    let m = mem();
    let v = Recorder::new(1);
    configure(&v, 1, Some(&PVH), &m);
    assert!(v.regs().is_none());
    assert!(v.sregs().is_none());
    assert_eq!(
        m.read_obj::<u64>(GuestAddress(BOOT_GDT_START + 8)).unwrap(),
        0
    );
}

#[test]
fn pvh_boot_cpu_enters_flat_protected_mode_with_start_info_in_ebx() {
    let m = mem();
    let v = Recorder::new(0);
    configure(&v, 0, Some(&PVH), &m);
    let regs = v.regs().unwrap();
    assert_eq!((regs.rip, regs.rbx, regs.rflags), (0x10_0000, 0x6000, 2));
    let s = v.sregs().unwrap();
    assert_eq!((s.cr0, s.cr3, s.cr4, s.efer), (0x11, 0, 0, 0));
    assert_eq!(s.cs.selector, 0x8);
    assert_eq!(
        (s.cs.type_, s.cs.db, s.cs.l, s.cs.limit, s.cs.base),
        (0xb, 1, 0, 0xffff_ffff, 0)
    );
    for seg in [s.ds, s.es, s.fs, s.gs, s.ss] {
        assert_eq!((seg.selector, seg.type_, seg.limit), (0x10, 3, 0xffff_ffff));
    }
    assert_eq!((s.tr.selector, s.tr.type_, s.tr.limit), (0x18, 0xb, 0x67));
    assert_eq!(gdt_segment(&m, s.cs.selector), s.cs);
    assert_eq!(gdt_segment(&m, s.ds.selector), s.ds);
    assert_eq!(gdt_segment(&m, s.tr.selector), s.tr);
    assert_eq!((s.gdt.base, s.gdt.limit), (BOOT_GDT_START, 31));
    assert_eq!(s.apic_base, 0xfee0_0900, "state read from the vCPU is kept");
    // No page tables for PVH.
    assert_eq!(m.read_obj::<u64>(GuestAddress(PML4_START)).unwrap(), 0);
}

#[test]
fn linux_boot_cpu_enters_long_mode_with_zero_page_in_rsi() {
    let m = mem();
    let v = Recorder::new(0);
    configure(&v, 0, Some(&LINUX), &m);
    let regs = v.regs().unwrap();
    assert_eq!((regs.rip, regs.rsi, regs.rflags), (0x10_0200, 0x7000, 2));
    let s = v.sregs().unwrap();
    assert_eq!(s.cr3, PML4_START);
    assert_ne!(s.cr0 & X86_CR0_PG, 0);
    assert_ne!(s.cr0 & X86_CR0_PE, 0);
    assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
    assert_eq!(s.efer, EFER_LME | EFER_LMA);
    assert_eq!(
        (s.cs.selector, s.cs.l, s.cs.db, s.cs.type_),
        (0x10, 1, 0, 0xb)
    );
    assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
    assert_eq!(gdt_segment(&m, s.cs.selector), s.cs);
    assert_eq!(gdt_segment(&m, s.ss.selector), s.ss);
    assert_eq!(gdt_segment(&m, s.tr.selector), s.tr);
    assert_ne!(m.read_obj::<u64>(GuestAddress(PML4_START)).unwrap() & 1, 0);
}

#[test]
fn refused_msr_is_named() {
    let m = mem();
    let mut v = Recorder::new(0);
    v.msrs_accepted = Some(1);
    let err = configure_vcpu(&v, 0, 1, 40, &supported(), None, &m).unwrap_err();
    assert!(
        matches!(
            err,
            RegsError::Msrs(MsrError::Partial { written: 1, failed_index, .. })
                if failed_index == MSR_IA32_SYSENTER_ESP
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0x175"), "{err}");
}

#[test]
fn boot_tables_outside_memory_are_an_error_not_a_panic() {
    let tiny = GuestMemoryMmap::from_ranges(&[(GuestAddress(0x10_0000), 0x1000)]).unwrap();
    let v = Recorder::new(0);
    let err = configure_vcpu(&v, 0, 1, 40, &supported(), Some(&LINUX), &tiny).unwrap_err();
    assert!(matches!(err, RegsError::Gdt(_)), "{err}");
    assert!(v.regs().is_none());
}
