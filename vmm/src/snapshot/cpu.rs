//! Can this host run the snapshot's vCPUs? KVM accepts CPUID bits the host lacks, so a
//! snapshot restored on an older CPU would run until the guest used a missing instruction and
//! took #UD. Instead, the saved vCPU's CPU features are compared with what this VMM gives a
//! guest on this host (the same table a boot here would set) and a missing one is refused.

use hypervisor::CpuidEntry;

/// (leaf, subleaf, register, bits the guest itself changes). The dynamic bits are set or
/// cleared by KVM as the guest runs (CR4.OSXSAVE, the APIC enable in IA32_APICBASE,
/// CR4.PKE), so a running guest's table differs from a fresh one there.
const FEATURE_REGISTERS: &[(u32, u32, Reg, u32)] = &[
    (1, 0, Reg::Ecx, 1 << 27),
    (1, 0, Reg::Edx, 1 << 9),
    (7, 0, Reg::Ebx, 0),
    (7, 0, Reg::Ecx, 1 << 4),
    (7, 0, Reg::Edx, 0),
    (0x8000_0001, 0, Reg::Ecx, 0),
    (0x8000_0001, 0, Reg::Edx, 0),
];

#[derive(Clone, Copy, Debug)]
enum Reg {
    Ebx,
    Ecx,
    Edx,
}

fn reg(entries: &[CpuidEntry], leaf: u32, sub: u32, r: Reg) -> u32 {
    entries
        .iter()
        .find(|e| e.function == leaf && e.index == sub)
        .map_or(0, |e| match r {
            Reg::Ebx => e.ebx,
            Reg::Ecx => e.ecx,
            Reg::Edx => e.edx,
        })
}

/// Every feature bit the saved vCPU had must be one a guest gets here; the error lists the
/// missing ones.
pub fn check_features(saved: &[CpuidEntry], here: &[CpuidEntry]) -> Result<(), String> {
    let missing: Vec<String> = FEATURE_REGISTERS
        .iter()
        .filter_map(|&(leaf, sub, r, dynamic)| {
            let lacks = reg(saved, leaf, sub, r) & !reg(here, leaf, sub, r) & !dynamic;
            (lacks != 0).then(|| format!("leaf {leaf:#x}.{sub} {r:?} bits {lacks:#x}"))
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "this host's CPU (as KVM offers it) lacks features the snapshot's guest was \
             using: {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
        CpuidEntry {
            function,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn a_subset_passes_and_a_missing_feature_is_named() {
        let here = [leaf(1, 0, 0x00ff_0000, 0xffff), leaf(7, 0x0000_0100, 0, 0)];
        // Fewer features, plus the dynamic OSXSAVE and APIC bits a running guest has on.
        let saved = [
            leaf(1, 0, 0x0001_0000 | 1 << 27, 0x0001 | 1 << 9),
            leaf(7, 0x100, 0, 0),
        ];
        check_features(&saved, &here).unwrap();
        // AVX-512F (leaf 7 EBX bit 16) on the old host, not here.
        let saved = [leaf(7, 0x0001_0100, 0, 0)];
        let e = check_features(&saved, &here).unwrap_err();
        assert!(e.contains("leaf 0x7.0 Ebx bits 0x10000"), "{e}");
    }
}
