//! The CPUID table each vCPU sees, derived from what the backend supports.
//!
//! Topology: one thread per core, `num_vcpus` cores in one socket; the APIC ID (and
//! x2APIC ID) of a vCPU is its index.

use hypervisor::{CpuidEntry, CPUID_FLAG_SIGNIFICANT_INDEX};

/// Per-vCPU CPUID parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidConfig {
    /// This vCPU's index, which is also its APIC ID.
    pub vcpu_id: u32,
    /// vCPUs in the VM (cores in the single socket).
    pub num_vcpus: u32,
    /// Guest physical address bits to report (leaf 0x80000008 EAX[7:0] is clamped to it).
    pub phys_bits: u8,
}

/// Leaf 1 ECX: VMX (nested Intel virtualization, not offered).
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
/// Leaf 1 ECX: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: HTT, "EBX[23:16] is valid".
pub const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 0x80000001 ECX: SVM (nested AMD virtualization, not offered).
pub const LEAF_8000_0001_ECX_SVM: u32 = 1 << 2;
/// Hypervisor vendor leaf.
pub const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// KVM paravirtual features leaf.
pub const KVM_FEATURES_LEAF: u32 = 0x4000_0001;

/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
/// x2APIC topology level types (leaf 0xB/0x1F ECX[15:8]).
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Builds the CPUID table for one vCPU from the backend's supported leaves.
///
/// Sets the APIC ID and logical processor count (leaf 1), the x2APIC topology
/// (leaves 0xB and 0x1F, when supported), cores per package (leaf 4), the AMD
/// extended APIC ID (leaf 0x8000001E, when supported), the hypervisor bit, the KVM
/// signature leaf; keeps the backend's KVM features leaf; clamps the physical address
/// width; strips VMX and SVM. Everything else (TSC deadline, ...) is left as supported.
pub fn build_cpuid(supported: &[CpuidEntry], cfg: &CpuidConfig) -> Vec<CpuidEntry> {
    let num_vcpus = cfg.num_vcpus.max(1);
    let mut out: Vec<CpuidEntry> = supported
        .iter()
        .filter(|e| !matches!(e.function, 0xb | 0x1f | KVM_SIGNATURE_LEAF))
        .copied()
        .collect();
    for e in out.iter_mut() {
        patch_entry(e, cfg, num_vcpus);
    }
    for leaf in [0xb, 0x1f] {
        if supported.iter().any(|e| e.function == leaf) {
            out.extend(topology_leaf(leaf, cfg.vcpu_id, num_vcpus));
        }
    }
    out.push(CpuidEntry {
        function: KVM_SIGNATURE_LEAF,
        index: 0,
        flags: 0,
        eax: KVM_FEATURES_LEAF,
        ebx: KVM_SIGNATURE[0],
        ecx: KVM_SIGNATURE[1],
        edx: KVM_SIGNATURE[2],
    });
    out
}

/// Adjusts one supported leaf in place.
fn patch_entry(e: &mut CpuidEntry, cfg: &CpuidConfig, num_vcpus: u32) {
    match e.function {
        1 => {
            let apic_id = cfg.vcpu_id.min(0xff);
            let logical = num_vcpus.min(0xff);
            e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (logical << 16);
            e.ecx = (e.ecx & !LEAF1_ECX_VMX) | LEAF1_ECX_HYPERVISOR;
            if num_vcpus > 1 {
                e.edx |= LEAF1_EDX_HTT;
            } else {
                e.edx &= !LEAF1_EDX_HTT;
            }
        }
        4 => {
            let cache_level = (e.eax >> 5) & 0x7;
            // EAX[4:0] == 0: no more caches; leave the terminator alone.
            if e.eax & 0x1f != 0 {
                let sharing = if cache_level >= 3 { num_vcpus - 1 } else { 0 };
                let cores = (num_vcpus - 1).min(0x3f);
                e.eax = (e.eax & 0x3fff) | (sharing.min(0xfff) << 14) | (cores << 26);
            }
        }
        0x8000_0001 => e.ecx &= !LEAF_8000_0001_ECX_SVM,
        0x8000_0008 => {
            let bits = (e.eax & 0xff).min(u32::from(cfg.phys_bits));
            e.eax = (e.eax & !0xff) | bits;
        }
        0x8000_001e => {
            // AMD: extended APIC ID, compute unit = core, one node.
            e.eax = cfg.vcpu_id;
            e.ebx = (e.ebx & !0xffff) | (cfg.vcpu_id & 0xff);
            e.ecx &= !0x7ff;
        }
        _ => {}
    }
}

/// Bits needed to number `count` items (ceil(log2(count))).
fn id_bits(count: u32) -> u32 {
    if count <= 1 {
        0
    } else {
        32 - (count - 1).leading_zeros()
    }
}

/// Subleaves 0 (SMT: 1 thread), 1 (core: `num_vcpus`) and 2 (invalid terminator)
/// of the x2APIC topology leaf `leaf` (0xB or 0x1F); EDX is the x2APIC ID.
fn topology_leaf(leaf: u32, x2apic_id: u32, num_vcpus: u32) -> [CpuidEntry; 3] {
    let sub = |index: u32, eax: u32, ebx: u32, level_type: u32| CpuidEntry {
        function: leaf,
        index,
        flags: CPUID_FLAG_SIGNIFICANT_INDEX,
        eax,
        ebx,
        ecx: index | (level_type << 8),
        edx: x2apic_id,
    };
    [
        sub(0, 0, 1, LEVEL_TYPE_SMT),
        sub(1, id_bits(num_vcpus), num_vcpus & 0xffff, LEVEL_TYPE_CORE),
        sub(2, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidEntry {
        CpuidEntry {
            function,
            index,
            flags: 0,
            eax,
            ebx,
            ecx,
            edx,
        }
    }

    /// Roughly what KVM reports on an Intel host.
    fn supported() -> Vec<CpuidEntry> {
        vec![
            leaf(0, 0, 0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            // CLFLUSH size 8 in EBX[15:8]; VMX, TSC-deadline (bit 24), x2APIC (bit 21).
            leaf(
                1,
                0,
                0x806f8,
                0x0000_0800,
                LEAF1_ECX_VMX | 1 << 24 | 1 << 21,
                0x178b_fbff,
            ),
            CpuidEntry {
                flags: CPUID_FLAG_SIGNIFICANT_INDEX,
                ..leaf(4, 0, 0x121, 0, 0, 0)
            },
            CpuidEntry {
                flags: CPUID_FLAG_SIGNIFICANT_INDEX,
                ..leaf(4, 1, 0x163, 0, 0, 0)
            },
            CpuidEntry {
                flags: CPUID_FLAG_SIGNIFICANT_INDEX,
                ..leaf(4, 2, 0, 0, 0, 0)
            },
            CpuidEntry {
                flags: CPUID_FLAG_SIGNIFICANT_INDEX,
                ..leaf(0xb, 0, 0, 0, 0, 0)
            },
            CpuidEntry {
                flags: CPUID_FLAG_SIGNIFICANT_INDEX,
                ..leaf(0x1f, 0, 0, 0, 0, 0)
            },
            leaf(KVM_SIGNATURE_LEAF, 0, 0x4000_0001, 0, 0, 0),
            leaf(KVM_FEATURES_LEAF, 0, 0x0100_7afb, 0, 0, 0),
            leaf(
                0x8000_0001,
                0,
                0,
                0,
                0x121 | LEAF_8000_0001_ECX_SVM,
                0x2c10_0800,
            ),
            leaf(0x8000_0008, 0, 0x3030, 0, 0, 0),
        ]
    }

    fn find(entries: &[CpuidEntry], function: u32, index: u32) -> CpuidEntry {
        *entries
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap_or_else(|| panic!("leaf {function:#x}.{index} missing"))
    }

    fn build(vcpu_id: u32, num_vcpus: u32, phys_bits: u8) -> Vec<CpuidEntry> {
        build_cpuid(
            &supported(),
            &CpuidConfig {
                vcpu_id,
                num_vcpus,
                phys_bits,
            },
        )
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit_without_vmx() {
        for id in 0..4 {
            let l1 = find(&build(id, 4, 40), 1, 0);
            assert_eq!(l1.ebx >> 24, id);
            assert_eq!((l1.ebx >> 16) & 0xff, 4);
            assert_eq!((l1.ebx >> 8) & 0xff, 8, "CLFLUSH size kept");
            assert_ne!(l1.ecx & LEAF1_ECX_HYPERVISOR, 0);
            assert_eq!(l1.ecx & LEAF1_ECX_VMX, 0);
            assert_ne!(l1.ecx & (1 << 24), 0, "TSC deadline kept");
            assert_ne!(l1.edx & LEAF1_EDX_HTT, 0);
        }
        assert_eq!(find(&build(0, 1, 40), 1, 0).edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn x2apic_topology_leaves_describe_one_socket_of_single_thread_cores() {
        for leaf_fn in [0xb, 0x1f] {
            let entries = build(5, 6, 40);
            let smt = find(&entries, leaf_fn, 0);
            let core = find(&entries, leaf_fn, 1);
            let end = find(&entries, leaf_fn, 2);
            assert_eq!(
                (smt.eax & 0x1f, smt.ebx, smt.ecx, smt.edx),
                (0, 1, 0x100, 5)
            );
            // 6 cores need 3 ID bits.
            assert_eq!(
                (core.eax & 0x1f, core.ebx, core.ecx, core.edx),
                (3, 6, 0x201, 5)
            );
            assert_eq!((end.eax, end.ebx, end.ecx & 0xff00, end.edx), (0, 0, 0, 5));
            for e in [smt, core, end] {
                assert_eq!(e.flags, CPUID_FLAG_SIGNIFICANT_INDEX);
            }
            assert_eq!(entries.iter().filter(|e| e.function == leaf_fn).count(), 3);
        }
    }

    #[test]
    fn topology_leaves_only_when_supported() {
        let sup: Vec<_> = supported()
            .into_iter()
            .filter(|e| e.function != 0x1f)
            .collect();
        let entries = build_cpuid(
            &sup,
            &CpuidConfig {
                vcpu_id: 0,
                num_vcpus: 2,
                phys_bits: 40,
            },
        );
        assert!(entries.iter().all(|e| e.function != 0x1f));
        assert!(entries.iter().any(|e| e.function == 0xb));
    }

    #[test]
    fn leaf4_reports_cores_per_package_and_l3_sharing() {
        let entries = build(0, 8, 40);
        let l1d = find(&entries, 4, 0);
        let l3 = find(&entries, 4, 1);
        assert_eq!(l1d.eax >> 26, 7);
        assert_eq!((l1d.eax >> 14) & 0xfff, 0);
        assert_eq!(l1d.eax & 0x3fff, 0x121, "cache type/level kept");
        assert_eq!((l3.eax >> 14) & 0xfff, 7);
        assert_eq!(find(&entries, 4, 2).eax, 0, "terminator untouched");
    }

    #[test]
    fn kvm_signature_replaces_backend_leaf_and_features_are_kept() {
        let entries = build(0, 1, 40);
        let sig: Vec<_> = entries
            .iter()
            .filter(|e| e.function == KVM_SIGNATURE_LEAF)
            .collect();
        assert_eq!(sig.len(), 1);
        let mut bytes = Vec::new();
        for r in [sig[0].ebx, sig[0].ecx, sig[0].edx] {
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&bytes, b"KVMKVMKVM\0\0\0");
        assert_eq!(sig[0].eax, KVM_FEATURES_LEAF);
        assert_eq!(find(&entries, KVM_FEATURES_LEAF, 0).eax, 0x0100_7afb);
    }

    #[test]
    fn phys_bits_are_clamped_never_raised() {
        assert_eq!(find(&build(0, 1, 40), 0x8000_0008, 0).eax, 0x3028);
        assert_eq!(find(&build(0, 1, 52), 0x8000_0008, 0).eax, 0x3030);
    }

    #[test]
    fn svm_is_stripped() {
        let e = find(&build(0, 1, 40), 0x8000_0001, 0);
        assert_eq!(e.ecx & LEAF_8000_0001_ECX_SVM, 0);
        assert_eq!(e.ecx, 0x121);
    }

    #[test]
    fn huge_vcpu_counts_saturate_instead_of_corrupting_fields() {
        let entries = build(300, 400, 40);
        let l1 = find(&entries, 1, 0);
        assert_eq!(l1.ebx >> 24, 0xff);
        assert_eq!((l1.ebx >> 16) & 0xff, 0xff);
        assert_eq!(find(&entries, 4, 0).eax >> 26, 0x3f);
        assert_eq!(find(&entries, 0xb, 0).edx, 300);
        assert_eq!(find(&entries, 0xb, 1).eax & 0x1f, 9);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!(
            [1, 2, 3, 4, 5, 8, 9, 256].map(id_bits),
            [0, 1, 2, 2, 3, 3, 4, 8]
        );
    }
}
