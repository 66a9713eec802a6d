//! Model-specific registers every vCPU starts with.

use hypervisor::{HypervisorError, MsrEntry, VcpuX86_64};

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// IA32_MISC_ENABLE bit 0: fast-strings enable.
pub const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRdefType: MTRRs enabled (bit 11), default memory type write-back (6).
pub const MTRR_DEF_TYPE_ENABLE_WB: u64 = (1 << 11) | 6;

/// Why the boot MSRs could not be set.
#[derive(Debug, thiserror::Error)]
pub enum MsrError {
    #[error("setting the boot MSRs of vCPU {vcpu_id} failed: {source}")]
    Set {
        vcpu_id: u32,
        source: HypervisorError,
    },
    #[error(
        "the hypervisor accepted only {written} of {expected} boot MSRs for vCPU {vcpu_id}; \
         MSR {failed_index:#x} was refused"
    )]
    Partial {
        vcpu_id: u32,
        written: usize,
        expected: usize,
        failed_index: u32,
    },
}

/// The MSR values a vCPU boots with: syscall/sysenter MSRs cleared, TSC at 0, fast
/// strings on, MTRRs enabled with write-back as the default type.
pub fn boot_msrs() -> Vec<MsrEntry> {
    let msr = |index, data| MsrEntry { index, data };
    vec![
        msr(MSR_IA32_SYSENTER_CS, 0),
        msr(MSR_IA32_SYSENTER_ESP, 0),
        msr(MSR_IA32_SYSENTER_EIP, 0),
        msr(MSR_STAR, 0),
        msr(MSR_CSTAR, 0),
        msr(MSR_KERNEL_GS_BASE, 0),
        msr(MSR_SYSCALL_MASK, 0),
        msr(MSR_LSTAR, 0),
        msr(MSR_IA32_TSC, 0),
        msr(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        msr(MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_ENABLE_WB),
    ]
}

/// Sets [`boot_msrs`] on `vcpu`; errors naming the first MSR refused.
pub fn set_boot_msrs(vcpu: &dyn VcpuX86_64, vcpu_id: u32) -> Result<(), MsrError> {
    let msrs = boot_msrs();
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(|source| MsrError::Set { vcpu_id, source })?;
    if written != msrs.len() {
        return Err(MsrError::Partial {
            vcpu_id,
            written,
            expected: msrs.len(),
            failed_index: msrs.get(written).map_or(0, |m| m.index),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_msrs_enable_fast_strings_and_wb_mtrr_and_clear_the_rest() {
        let msrs = boot_msrs();
        let get = |i| msrs.iter().find(|m| m.index == i).map(|m| m.data);
        assert_eq!(get(MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(MSR_MTRR_DEF_TYPE), Some(0x806));
        for i in [
            MSR_IA32_SYSENTER_CS,
            MSR_IA32_SYSENTER_ESP,
            MSR_IA32_SYSENTER_EIP,
            MSR_STAR,
            MSR_LSTAR,
            MSR_CSTAR,
            MSR_SYSCALL_MASK,
            MSR_KERNEL_GS_BASE,
            MSR_IA32_TSC,
        ] {
            assert_eq!(get(i), Some(0), "MSR {i:#x}");
        }
        assert_eq!(msrs.len(), 11);
    }
}
