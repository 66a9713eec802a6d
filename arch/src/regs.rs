//! Per-vCPU boot state: CPUID, MSRs, FPU, LAPIC for every vCPU; registers, segments,
//! GDT and (for 64-bit Linux) page tables for the boot CPU only.
//!
//! Application processors stay in their reset state: the in-kernel LAPIC starts them
//! with INIT/SIPI when the guest brings them up.

use hypervisor::{
    CpuidEntry, FpuState, HypervisorError, SpecialRegisters, StandardRegisters, VcpuX86_64,
};
use vm_memory::GuestMemoryMmap;

use crate::boot::{BootProtocol, EntryPoint};
use crate::cpuid::{build_cpuid, CpuidConfig};
use crate::gdt::{self, GdtError, CODE32, CODE64, DATA, TSS};
use crate::lapic::{setup_lapic, LapicError};
use crate::layout::{BOOT_STACK_POINTER, PVH_INFO_START, ZERO_PAGE_START};
use crate::msrs::{set_boot_msrs, MsrError};
use crate::paging::{setup_identity_page_tables, PagingError};

pub const X86_CR0_PE: u64 = 1 << 0;
pub const X86_CR0_ET: u64 = 1 << 4;
pub const X86_CR0_NE: u64 = 1 << 5;
pub const X86_CR0_PG: u64 = 1 << 31;
pub const X86_CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS with only the always-one bit 1 set (interrupts off).
pub const RFLAGS_RESERVED: u64 = 1 << 1;
/// x87 control word after FNINIT: all exceptions masked, 64-bit precision.
pub const FPU_FCW_DEFAULT: u16 = 0x37f;
/// MXCSR reset value: all SSE exceptions masked.
pub const MXCSR_DEFAULT: u32 = 0x1f80;

/// PVH GDT: null, 32-bit code (0x8), data (0x10), TSS (0x18).
const PVH_GDT: [u64; 4] = [0, CODE32, DATA, TSS];
/// Linux GDT per boot.rst: __BOOT_CS = 0x10 (64-bit code), __BOOT_DS = 0x18, TSS 0x20.
const LINUX_GDT: [u64; 5] = [0, 0, CODE64, DATA, TSS];

/// Why a vCPU could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("setting CPUID on vCPU {vcpu_id} failed: {source}")]
    SetCpuid {
        vcpu_id: u32,
        source: HypervisorError,
    },
    #[error(transparent)]
    Msrs(#[from] MsrError),
    #[error("setting the FPU state of vCPU {vcpu_id} failed: {source}")]
    SetFpu {
        vcpu_id: u32,
        source: HypervisorError,
    },
    #[error(transparent)]
    Lapic(#[from] LapicError),
    #[error("reading the special registers of the boot vCPU failed: {0}")]
    GetSregs(#[source] HypervisorError),
    #[error("setting the special registers of the boot vCPU failed: {0}")]
    SetSregs(#[source] HypervisorError),
    #[error("setting the general registers of the boot vCPU failed: {0}")]
    SetRegs(#[source] HypervisorError),
    #[error(transparent)]
    Gdt(#[from] GdtError),
    #[error(transparent)]
    Paging(#[from] PagingError),
}

/// Configures one vCPU for entry.
///
/// Every vCPU gets CPUID ([`build_cpuid`] with its id), the boot MSRs, the FPU reset
/// state and LINT0 = ExtINT / LINT1 = NMI. Only vCPU 0 with an `entry` also gets its
/// GDT (and page tables) written to `mem` and its registers set for `entry.protocol`;
/// `entry` is ignored for other vCPUs.
pub fn configure_vcpu(
    vcpu: &dyn VcpuX86_64,
    vcpu_id: u32,
    num_vcpus: u32,
    phys_bits: u8,
    supported_cpuid: &[CpuidEntry],
    entry: Option<&EntryPoint>,
    mem: &GuestMemoryMmap,
) -> Result<(), RegsError> {
    let cfg = CpuidConfig {
        vcpu_id,
        num_vcpus,
        phys_bits,
    };
    vcpu.set_cpuid(&build_cpuid(supported_cpuid, &cfg))
        .map_err(|source| RegsError::SetCpuid { vcpu_id, source })?;
    set_boot_msrs(vcpu, vcpu_id)?;
    if let (0, Some(entry)) = (vcpu_id, entry) {
        setup_boot_cpu(vcpu, entry, mem)?;
    }
    let fpu = FpuState {
        fcw: FPU_FCW_DEFAULT,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu)
        .map_err(|source| RegsError::SetFpu { vcpu_id, source })?;
    setup_lapic(vcpu, vcpu_id)?;
    Ok(())
}

/// Loads the flat segments of `table` (code at `cs`, data at `ds`, TSS at `tr`).
fn load_segments(sregs: &mut SpecialRegisters, table: &[u64], cs: usize, ds: usize, tr: usize) {
    sregs.cs = gdt::segment_from_gdt(table, cs);
    let data = gdt::segment_from_gdt(table, ds);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = gdt::segment_from_gdt(table, tr);
}

/// Writes the boot CPU's tables to guest memory and sets its registers.
fn setup_boot_cpu(
    vcpu: &dyn VcpuX86_64,
    entry: &EntryPoint,
    mem: &GuestMemoryMmap,
) -> Result<(), RegsError> {
    let mut sregs = vcpu.get_sregs().map_err(RegsError::GetSregs)?;
    let mut regs = StandardRegisters {
        rip: entry.addr,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    let table: &[u64] = match entry.protocol {
        BootProtocol::Pvh => &PVH_GDT,
        BootProtocol::LinuxBoot => &LINUX_GDT,
    };
    let (gdtr, idtr) = gdt::write_gdt(mem, table)?;
    sregs.gdt = gdtr;
    sregs.idt = idtr;
    match entry.protocol {
        BootProtocol::Pvh => {
            // PVH ABI: protected mode, paging off, EBX = start info, CR4/EFER clear.
            load_segments(&mut sregs, table, 1, 2, 3);
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rbx = PVH_INFO_START;
        }
        BootProtocol::LinuxBoot => {
            // 64-bit boot protocol: long mode, identity paging, RSI = zero page.
            load_segments(&mut sregs, table, 2, 3, 4);
            sregs.cr3 = setup_identity_page_tables(mem)?;
            sregs.cr4 = X86_CR4_PAE;
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
            sregs.efer = EFER_LME | EFER_LMA;
            regs.rsi = ZERO_PAGE_START;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
        }
    }
    vcpu.set_sregs(&sregs).map_err(RegsError::SetSregs)?;
    vcpu.set_regs(&regs).map_err(RegsError::SetRegs)
}

#[cfg(test)]
mod tests;
