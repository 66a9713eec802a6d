//! The device's capability lists as read from its config space: where each capability is,
//! how long it is, and which ones the guest sees. The guest's lists keep the device's offsets
//! (drivers sometimes read registers outside any capability, so nothing moves); hidden
//! capabilities are skipped by rewriting next pointers, and a hidden first extended capability
//! becomes a null capability (ID 0) that still points on, as Linux and QEMU expect.

use crate::capability::{
    CAPABILITY_POINTER_OFFSET, CONVENTIONAL_CONFIG_END, EXTENDED_CONFIG_END,
    FIRST_CAPABILITY_OFFSET, FIRST_EXTENDED_CAPABILITY_OFFSET, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI,
    PCI_CAP_ID_MSIX, PCI_CAP_ID_VENDOR,
};
use crate::configuration::STATUS_CAPABILITIES_LIST;

/// Power management.
pub const PCI_CAP_ID_PM: u8 = 0x01;
const PCI_CAP_ID_AGP: u8 = 0x02;
const PCI_CAP_ID_VPD: u8 = 0x03;
const PCI_CAP_ID_PCIX: u8 = 0x07;
const PCI_CAP_ID_AGP3: u8 = 0x0e;
const PCI_CAP_ID_SECURE: u8 = 0x0f;
const PCI_CAP_ID_AF: u8 = 0x13;
/// Enhanced Allocation: fixed BAR addresses, which would contradict the emulated BARs.
const PCI_CAP_ID_EA: u8 = 0x14;

/// Conventional capabilities the guest never sees: AGP, the AMD IOMMU's secure device
/// capability, and Enhanced Allocation (fixed addresses for the BARs we emulate).
const HIDDEN_CAPS: [u8; 4] = [
    PCI_CAP_ID_AGP,
    PCI_CAP_ID_AGP3,
    PCI_CAP_ID_SECURE,
    PCI_CAP_ID_EA,
];

/// Extended capabilities the VMM does not support: ARI, ATS, SR-IOV, MR-IOV, PRI, resizable
/// BAR, PASID, VF resizable BAR (no virtual IOMMU, no VFs, BAR sizes fixed by emulation).
const HIDDEN_EXT_CAPS: [u16; 8] = [0x0e, 0x0f, 0x10, 0x11, 0x13, 0x15, 0x1b, 0x24];

/// Most list entries followed, so a looping list ends.
const MAX_CAPS: usize = 48;
const MAX_EXT_CAPS: usize = 960;

/// One capability of the conventional list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub id: u8,
    pub offset: usize,
    pub len: usize,
}

/// One capability of the extended list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCap {
    pub id: u16,
    pub version: u8,
    pub offset: usize,
    pub len: usize,
}

fn byte(cfg: &[u8], off: usize) -> u8 {
    cfg.get(off).copied().unwrap_or(0)
}

fn word(cfg: &[u8], off: usize) -> u16 {
    u16::from(byte(cfg, off)) | u16::from(byte(cfg, off + 1)) << 8
}

fn dword(cfg: &[u8], off: usize) -> u32 {
    u32::from(word(cfg, off)) | u32::from(word(cfg, off + 2)) << 16
}

/// The MSI capability's length from its message control register.
pub fn msi_len(control: u16) -> usize {
    let is64 = control & (1 << 7) != 0;
    let maskable = control & (1 << 8) != 0;
    match (is64, maskable) {
        (false, false) => 10,
        (true, false) => 14,
        (false, true) => 20,
        (true, true) => 24,
    }
}

/// The length the spec gives capability `id`, if it has a fixed or self-described one.
fn known_len(cfg: &[u8], id: u8, offset: usize) -> Option<usize> {
    Some(match id {
        PCI_CAP_ID_PM | PCI_CAP_ID_VPD | PCI_CAP_ID_PCIX => 8,
        PCI_CAP_ID_MSI => msi_len(word(cfg, offset + 2)),
        PCI_CAP_ID_MSIX => 12,
        PCI_CAP_ID_AF => 6,
        PCI_CAP_ID_VENDOR => usize::from(byte(cfg, offset + 2)).max(3),
        PCI_CAP_ID_EXP if byte(cfg, offset + 2) & 0xf >= 2 => 0x3c,
        PCI_CAP_ID_EXP => 0x24,
        _ => return None,
    })
}

/// The conventional capability list in chain order, each with its length (the spec's length
/// where there is one, else up to the next capability in address order), clamped so that no
/// two overlap.
pub fn conventional(cfg: &[u8]) -> Vec<Cap> {
    if word(cfg, 6) & STATUS_CAPABILITIES_LIST == 0 {
        return Vec::new();
    }
    let mut offsets = Vec::new();
    let mut off = usize::from(byte(cfg, CAPABILITY_POINTER_OFFSET) & 0xfc);
    while (FIRST_CAPABILITY_OFFSET..CONVENTIONAL_CONFIG_END).contains(&off)
        && offsets.len() < MAX_CAPS
    {
        if offsets.contains(&off) {
            break;
        }
        offsets.push(off);
        off = usize::from(byte(cfg, off + 1) & 0xfc);
    }
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    offsets
        .iter()
        .map(|&offset| {
            let id = byte(cfg, offset);
            let next = sorted
                .iter()
                .find(|&&o| o > offset)
                .copied()
                .unwrap_or(CONVENTIONAL_CONFIG_END);
            let room = next - offset;
            let len = known_len(cfg, id, offset).unwrap_or(room).clamp(2, room);
            Cap { id, offset, len }
        })
        .collect()
}

/// The extended capability list from 0x100 in chain order; each extends to the next one in
/// address order (or the end of the space). Empty when the space is absent or all-ones.
pub fn extended(cfg: &[u8]) -> Vec<ExtCap> {
    let mut found: Vec<(u16, u8, usize)> = Vec::new();
    let mut off = FIRST_EXTENDED_CAPABILITY_OFFSET;
    while off + 4 <= cfg.len().min(EXTENDED_CONFIG_END) && found.len() < MAX_EXT_CAPS {
        let header = dword(cfg, off);
        if header == 0 || header == 0xffff_ffff || found.iter().any(|f| f.2 == off) {
            break;
        }
        found.push((header as u16, ((header >> 16) & 0xf) as u8, off));
        off = (header >> 20) as usize & 0xffc;
        if off < FIRST_EXTENDED_CAPABILITY_OFFSET {
            break;
        }
    }
    let end = cfg.len().min(EXTENDED_CONFIG_END);
    let mut sorted: Vec<usize> = found.iter().map(|f| f.2).collect();
    sorted.sort_unstable();
    found
        .iter()
        .map(|&(id, version, offset)| {
            let next = sorted.iter().find(|&&o| o > offset).copied().unwrap_or(end);
            ExtCap {
                id,
                version,
                offset,
                len: next - offset,
            }
        })
        .collect()
}

/// Whether the guest sees conventional capability `id` as the device has it (MSI and MSI-X
/// are seen too, but emulated).
pub fn passes_cap(id: u8) -> bool {
    !HIDDEN_CAPS.contains(&id)
}

/// Whether the guest sees extended capability `id`.
pub fn passes_ext_cap(id: u16) -> bool {
    !HIDDEN_EXT_CAPS.contains(&id)
}

/// Where an 8-byte capability of ours (the NVIDIA GPUDirect P2P clique capability) can go in
/// 0x40..0x100 without overlapping any of the device's capabilities.
///
/// NVIDIA's driver (open-gpu-kernel-modules, `objClLoadPcieVirtualP2PApproval` in
/// chipset_pcie.c) walks the standard capability list from 0x34 and takes the first
/// vendor-specific (0x09) capability whose bytes 3..5 read "P2P" and whose version (bits 0..2 of
/// byte 6) is 0; the offset does not matter to it as long as the capability is linked. Its
/// header reserves 0xC8 for it, and NVIDIA's updated note recommends 0xD4 on Turing and later,
/// where MSI-X sits at 0xC8 (Ampere, Ada); Hopper (H100/H200) has MSI-X at 0xB0 and 0xC8 free.
/// QEMU tries 0xC8, then 0xD4. So: 0xC8 when free, else 0xD4, else the highest free
/// dword-aligned spot. (0xD4 is also NVIDIA's reserved place for another virtual capability,
/// "BTS" config bits, which this VMM does not add.)
pub fn free_slot(caps: &[Cap], len: usize) -> Option<usize> {
    let free = |at: usize| {
        at + len <= CONVENTIONAL_CONFIG_END
            && caps
                .iter()
                .all(|c| at + len <= c.offset || c.offset + c.len <= at)
    };
    const PREFERRED: [usize; 2] = [0xc8, 0xd4];
    if let Some(at) = PREFERRED.into_iter().find(|&at| free(at)) {
        return Some(at);
    }
    (FIRST_CAPABILITY_OFFSET..=CONVENTIONAL_CONFIG_END - len)
        .rev()
        .step_by(4)
        .map(|at| at & !3)
        .find(|&at| free(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config space with capabilities `(id, offset, body)` chained in the given order.
    pub(crate) fn with_caps(caps: &[(u8, usize, &[u8])]) -> Vec<u8> {
        let mut cfg = vec![0u8; 256];
        cfg[6] = STATUS_CAPABILITIES_LIST as u8;
        cfg[CAPABILITY_POINTER_OFFSET] = caps.first().map_or(0, |c| c.1 as u8);
        for (i, (id, off, body)) in caps.iter().enumerate() {
            cfg[*off] = *id;
            cfg[off + 1] = caps.get(i + 1).map_or(0, |c| c.1 as u8);
            cfg[off + 2..off + 2 + body.len()].copy_from_slice(body);
        }
        cfg
    }

    #[test]
    fn conventional_list_has_spec_lengths_and_never_overlaps() {
        // PM at 0x40, MSI (64-bit, maskable) at 0x48, vendor (len 0x0c) at 0x60, PCIe v2 at
        // 0x70, an unknown ID at 0xc0 (runs to the end), MSI-X at 0xb0 (out of order).
        let cfg = with_caps(&[
            (0x01, 0x40, &[0x03, 0x00]),
            (0x05, 0x48, &[0x80, 0x01]),
            (0x09, 0x60, &[0x0c]),
            (0x10, 0x70, &[0x02]),
            (0x11, 0xb0, &[0x03, 0x00]),
            (0x42, 0xc0, &[]),
        ]);
        let caps = conventional(&cfg);
        let lens: Vec<(u8, usize, usize)> = caps.iter().map(|c| (c.id, c.offset, c.len)).collect();
        assert_eq!(
            lens,
            vec![
                (0x01, 0x40, 8),
                (0x05, 0x48, 24),
                (0x09, 0x60, 12),
                (0x10, 0x70, 0x3c),
                (0x11, 0xb0, 12),
                (0x42, 0xc0, 0x40),
            ]
        );
        // A PCIe capability squeezed by its neighbour is clamped.
        let squeezed = with_caps(&[(0x10, 0x40, &[0x02]), (0x01, 0x50, &[])]);
        assert_eq!(conventional(&squeezed)[0].len, 0x10);
    }

    #[test]
    fn looping_or_absent_lists_end() {
        let mut cfg = with_caps(&[(0x01, 0x40, &[]), (0x05, 0x50, &[])]);
        cfg[0x51] = 0x40;
        assert_eq!(conventional(&cfg).len(), 2);
        cfg[6] = 0;
        assert!(conventional(&cfg).is_empty(), "status says no list");
        assert!(conventional(&[]).is_empty());
    }

    #[test]
    fn extended_list_walks_from_0x100() {
        let mut cfg = vec![0u8; 4096];
        let put = |cfg: &mut Vec<u8>, off: usize, v: u32| {
            cfg[off..off + 4].copy_from_slice(&v.to_le_bytes())
        };
        put(&mut cfg, 0x100, 0x1481_0001); // AER v1 -> 0x148
        put(&mut cfg, 0x148, 0x2001_0010); // SR-IOV -> 0x200
        put(&mut cfg, 0x200, 0x0001_000b); // vendor-specific, last
        let ext = extended(&cfg);
        assert_eq!(ext.len(), 3);
        assert_eq!((ext[0].id, ext[0].offset, ext[0].len), (1, 0x100, 0x48));
        assert_eq!((ext[1].id, ext[1].len), (0x10, 0xb8));
        assert_eq!(ext[2].len, 0xe00);
        assert!(!passes_ext_cap(0x10) && passes_ext_cap(1));
        assert!(extended(&cfg[..256]).is_empty(), "no extended space");
        let mut ones = vec![0xffu8; 4096];
        ones[..256].fill(0);
        assert!(extended(&ones).is_empty());
        put(&mut cfg, 0x200, 0x2001_000b); // points back at itself
        assert_eq!(extended(&cfg).len(), 3);
    }

    #[test]
    fn free_slot_prefers_0xc8_then_0xd4_and_avoids_capabilities() {
        let caps = conventional(&with_caps(&[(0x01, 0x40, &[]), (0x10, 0x60, &[0x02])]));
        assert_eq!(free_slot(&caps, 8), Some(0xc8));
        // Hopper (H100 PCIe, H20): PM 0x40, MSI 0x48, PCIe 0x60, vendor 0x9c, MSI-X 0xb0.
        let hopper = conventional(&with_caps(&[
            (0x01, 0x40, &[0x03, 0x00]),
            (0x05, 0x48, &[0x80, 0x01]),
            (0x10, 0x60, &[0x02, 0x00]),
            (0x09, 0x9c, &[0x14]),
            (0x11, 0xb0, &[0x08, 0x00]),
        ]));
        assert_eq!(free_slot(&hopper, 8), Some(0xc8));
        // Ampere / Ada (A100, L20): PM 0x60, null 0x68, PCIe 0x78, vendor 0xb4, MSI-X 0xc8.
        let ada = conventional(&with_caps(&[
            (0x01, 0x60, &[0x03, 0x00]),
            (0x00, 0x68, &[]),
            (0x10, 0x78, &[0x02, 0x00]),
            (0x09, 0xb4, &[0x14]),
            (0x11, 0xc8, &[0x05, 0x00]),
        ]));
        assert_eq!(free_slot(&ada, 8), Some(0xd4), "MSI-X holds 0xc8..0xd4");
        let busy = conventional(&with_caps(&[(0x01, 0xc4, &[]), (0x05, 0xd4, &[0x80])]));
        let at = free_slot(&busy, 8).unwrap();
        assert_eq!(
            at, 0xf8,
            "the highest free spot (PM at 0xc4, MSI 0xd4..0xe2)"
        );
        let full = conventional(&with_caps(&[(0x42, 0x40, &[])]));
        assert_eq!(
            free_slot(&full, 8),
            None,
            "an unknown capability runs to the end"
        );
        assert!(passes_cap(0x01) && !passes_cap(0x14));
        assert_eq!(msi_len(0), 10);
    }
}
