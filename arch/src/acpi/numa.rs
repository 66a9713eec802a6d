//! NUMA: the System Resource Affinity Table (SRAT, ACPI 6.5 section 5.2.16) puts each vCPU
//! (by local APIC ID = vCPU index, as in the MADT) and each range of guest RAM into a
//! proximity domain, and the System Locality Information Table (SLIT, 5.2.17) gives the
//! relative distance between domains (10 local, 20 by default between two). A 2-socket GPU
//! guest so sees its CPUs and memory where they are, as `numactl -H` and the kernel's
//! scheduler and allocator use them.

use acpi_tables::sdt::Sdt;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// SRAT revision 3 (ACPI 6.x).
const SRAT_REVISION: u8 = 3;
/// SLIT revision 1.
const SLIT_REVISION: u8 = 1;
/// Distance of a domain to itself.
pub const LOCAL_DISTANCE: u8 = 10;
/// Distance between two domains when none is given.
pub const REMOTE_DISTANCE: u8 = 20;

/// One guest NUMA node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaNode {
    /// Proximity domain (the guest's node number).
    pub domain: u32,
    /// Local APIC IDs (= vCPU indices) of its vCPUs.
    pub cpus: Vec<u32>,
    /// Guest-physical RAM ranges `(base, length)`.
    pub memory: Vec<(u64, u64)>,
    /// Distances to other domains `(domain, distance)`; the rest are [`REMOTE_DISTANCE`].
    pub distances: Vec<(u32, u8)>,
}

/// The SRAT for `nodes`.
pub fn srat(nodes: &[NumaNode]) -> Vec<u8> {
    let mut entries = Vec::new();
    for n in nodes {
        for &apic in &n.cpus {
            // Processor Local APIC/SAPIC Affinity, 16 bytes.
            let mut e = [0u8; 16];
            e[0] = 0;
            e[1] = 16;
            e[2] = n.domain as u8;
            e[3] = apic as u8;
            e[4..8].copy_from_slice(&1u32.to_le_bytes()); // enabled
            e[9..12].copy_from_slice(&(n.domain >> 8).to_le_bytes()[..3]);
            entries.extend_from_slice(&e);
        }
        for &(base, len) in &n.memory {
            // Memory Affinity, 40 bytes.
            let mut e = [0u8; 40];
            e[0] = 1;
            e[1] = 40;
            e[2..6].copy_from_slice(&n.domain.to_le_bytes());
            e[8..16].copy_from_slice(&base.to_le_bytes());
            e[16..24].copy_from_slice(&len.to_le_bytes());
            e[28..32].copy_from_slice(&1u32.to_le_bytes()); // enabled
            entries.extend_from_slice(&e);
        }
    }
    // Header, then a reserved dword that must be 1 and a reserved qword.
    let mut t = Sdt::new(
        *b"SRAT",
        48,
        SRAT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    t.write_u32(36, 1);
    t.append_slice(&entries);
    t.as_slice().to_vec()
}

/// The SLIT for `nodes`, rows and columns in the order of their domains (0..n).
pub fn slit(nodes: &[NumaNode]) -> Vec<u8> {
    let n = nodes.len();
    let mut matrix = vec![REMOTE_DISTANCE; n * n];
    for (i, a) in nodes.iter().enumerate() {
        matrix[i * n + i] = LOCAL_DISTANCE;
        for &(dest, d) in &a.distances {
            if let Some(j) = nodes.iter().position(|b| b.domain == dest) {
                if j != i {
                    matrix[i * n + j] = d;
                }
            }
        }
    }
    let mut t = Sdt::new(
        *b"SLIT",
        44,
        SLIT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    t.write_u64(36, n as u64);
    t.append_slice(&matrix);
    t.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::test_util::{assert_header, u32_at, u64_at};

    fn two() -> Vec<NumaNode> {
        vec![
            NumaNode {
                domain: 0,
                cpus: vec![0, 1],
                memory: vec![(0, 0xa_0000), (0x10_0000, 0x3ff0_0000)],
                distances: vec![(1, 21)],
            },
            NumaNode {
                domain: 1,
                cpus: vec![2, 3],
                memory: vec![(1 << 32, 1 << 30)],
                distances: vec![(0, 21)],
            },
        ]
    }

    #[test]
    fn srat_puts_each_vcpu_and_ram_range_in_its_domain() {
        let s = srat(&two());
        assert_header(&s, b"SRAT", SRAT_REVISION);
        assert_eq!(u32_at(&s, 36), 1, "reserved 1");
        assert_eq!(s.len(), 48 + 4 * 16 + 3 * 40);
        // vCPU 2 in domain 1, enabled.
        let cpu2 = 48 + 2 * 16 + 40 * 2;
        let cpu2 = &s[cpu2..cpu2 + 16];
        assert_eq!((cpu2[0], cpu2[1], cpu2[2], cpu2[3]), (0, 16, 1, 2));
        assert_eq!(u32_at(cpu2, 4), 1);
        // Node 1's memory: 1 GiB at 4 GiB.
        let mem = &s[s.len() - 40..];
        assert_eq!((mem[0], mem[1], u32_at(mem, 2)), (1, 40, 1));
        assert_eq!((u64_at(mem, 8), u64_at(mem, 16)), (1 << 32, 1 << 30));
        assert_eq!(u32_at(mem, 28), 1, "enabled");
    }

    #[test]
    fn slit_is_local_on_the_diagonal_and_as_given_elsewhere() {
        let s = slit(&two());
        assert_header(&s, b"SLIT", SLIT_REVISION);
        assert_eq!(u64_at(&s, 36), 2);
        assert_eq!(&s[44..], &[10, 21, 21, 10]);
        let mut three = two();
        three.push(NumaNode {
            domain: 2,
            cpus: vec![],
            memory: vec![],
            distances: vec![],
        });
        let s = slit(&three);
        assert_eq!(&s[44..], &[10, 21, 20, 21, 10, 20, 20, 20, 10]);
    }
}
