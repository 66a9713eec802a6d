//! The KVM backend, on kvm-ioctls. Nothing KVM-specific leaves this module.

mod convert;
mod state;
mod vcpu;
mod vm;

use std::ffi::CStr;
use std::sync::Arc;

use kvm_ioctls::{Cap, Kvm};

use crate::error::{HypervisorError, Result};
use crate::traits::{Hypervisor, Vm};
use crate::x86::CpuidEntry;

pub use state::saved_cpuid;
pub use vcpu::KvmVcpu;
pub use vm::KvmVm;

/// Capabilities the VMM cannot run without.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
];

/// Leaf 1 ECX bit 24: the LAPIC timer has a TSC-deadline mode.
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// The processor brand string (leaves 0x80000002..=0x80000004), from the host's CPUID where
/// KVM's answer leaves it empty (it does on some hosts): the guest's `model name` then reads
/// like the host's, as under QEMU `-cpu host` or Cloud Hypervisor, instead of "AMD 17/01".
fn host_brand_string(entries: &mut [CpuidEntry]) {
    const BRAND: std::ops::RangeInclusive<u32> = 0x8000_0002..=0x8000_0004;
    let empty = |e: &CpuidEntry| e.eax == 0 && e.ebx == 0 && e.ecx == 0 && e.edx == 0;
    let leaves: Vec<&CpuidEntry> = entries
        .iter()
        .filter(|e| BRAND.contains(&e.function))
        .collect();
    if leaves.len() != 3 || !leaves.iter().all(|e| empty(e)) {
        return;
    }
    if std::arch::x86_64::__cpuid(0x8000_0000).eax < 0x8000_0004 {
        return;
    }
    for e in entries.iter_mut().filter(|e| BRAND.contains(&e.function)) {
        let r = std::arch::x86_64::__cpuid(e.function);
        (e.eax, e.ebx, e.ecx, e.edx) = (r.eax, r.ebx, r.ecx, r.edx);
    }
}

/// An open /dev/kvm.
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Open `/dev/kvm` (or `path`) and check the API version and the capabilities we need.
    pub fn open(path: &CStr) -> Result<Self> {
        let kvm = Kvm::new_with_path(path).map_err(|e| HypervisorError::Open {
            path: path.to_string_lossy().into_owned(),
            source: e.into(),
        })?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(HypervisorError::ApiVersion(version));
        }
        for (cap, name) in REQUIRED_CAPS {
            if !kvm.check_extension(*cap) {
                return Err(HypervisorError::MissingCap(name));
            }
        }
        Ok(KvmHypervisor { kvm })
    }
}

impl Hypervisor for KvmHypervisor {
    fn create_vm(&self) -> Result<Arc<dyn Vm>> {
        let fd = self
            .kvm
            .create_vm()
            .map_err(|e| HypervisorError::ioctl("KVM_CREATE_VM", e))?;
        Ok(Arc::new(KvmVm::new(fd)))
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HypervisorError::ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
        let mut entries: Vec<CpuidEntry> = cpuid
            .as_slice()
            .iter()
            .map(convert::cpuid_from_kvm)
            .collect();
        // KVM emulates the TSC-deadline mode of its in-kernel LAPIC but leaves the CPUID bit
        // to userspace (KVM_CAP_TSC_DEADLINE_TIMER): without it the guest programs its timer
        // through the LAPIC's count registers, after calibrating them.
        if self.kvm.check_extension(Cap::TscDeadlineTimer) {
            for e in entries.iter_mut().filter(|e| e.function == 1) {
                e.ecx |= LEAF1_ECX_TSC_DEADLINE;
            }
        }
        host_brand_string(&mut entries);
        Ok(entries)
    }

    fn max_vcpus(&self) -> u32 {
        self.kvm.get_max_vcpus() as u32
    }

    fn msr_index_list(&self) -> Result<Vec<u32>> {
        self.kvm
            .get_msr_index_list()
            .map(|l| l.as_slice().to_vec())
            .map_err(|e| HypervisorError::ioctl("KVM_GET_MSR_INDEX_LIST", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_cpuid_offers_the_tsc_deadline_timer_where_kvm_emulates_it() {
        assert!(
            std::path::Path::new("/dev/kvm").exists(),
            "/dev/kvm is missing: this test asks the real KVM"
        );
        let hv = KvmHypervisor::open(c"/dev/kvm").unwrap();
        let leaf1 = hv
            .supported_cpuid()
            .unwrap()
            .into_iter()
            .find(|e| e.function == 1)
            .unwrap();
        let cap = hv.kvm.check_extension(Cap::TscDeadlineTimer);
        assert_eq!(
            leaf1.ecx & LEAF1_ECX_TSC_DEADLINE != 0,
            cap,
            "leaf 1 ecx {:#x}",
            leaf1.ecx
        );
    }

    #[test]
    fn an_empty_brand_string_is_the_hosts() {
        let leaf = |f: u32, v: u32| CpuidEntry {
            function: f,
            index: 0,
            flags: 0,
            eax: v,
            ebx: v,
            ecx: v,
            edx: v,
        };
        let host = std::arch::x86_64::__cpuid;
        let mut empty: Vec<CpuidEntry> = (0x8000_0002..=0x8000_0004).map(|f| leaf(f, 0)).collect();
        host_brand_string(&mut empty);
        if host(0x8000_0000).eax >= 0x8000_0004 {
            for e in &empty {
                let h = host(e.function);
                assert_eq!((e.eax, e.ebx, e.ecx, e.edx), (h.eax, h.ebx, h.ecx, h.edx));
            }
        }
        // KVM's own string is kept.
        let mut given: Vec<CpuidEntry> =
            (0x8000_0002..=0x8000_0004).map(|f| leaf(f, 0x41)).collect();
        host_brand_string(&mut given);
        assert!(given.iter().all(|e| e.eax == 0x41 && e.edx == 0x41));
    }
}
