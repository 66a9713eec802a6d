//! What each byte of the guest's view of a passed-through device's config space is: emulated
//! header, passed to the device, fixed (capability IDs and rewritten next pointers, our own
//! capability), emulated MSI/MSI-X, or hidden.

use super::caps::{self, Cap, ExtCap};
use crate::capability::{
    CONVENTIONAL_CONFIG_END, EXTENDED_CONFIG_END, FIRST_CAPABILITY_OFFSET,
    FIRST_EXTENDED_CAPABILITY_OFFSET, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_CAP_ID_VENDOR,
};

/// Where one config byte comes from and goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byte {
    /// The emulated header (`PciConfiguration`).
    Header,
    /// Passed through to the device.
    Device,
    /// Reads this value; writes are dropped.
    Fixed(u8),
    /// Byte `n` of the emulated MSI capability.
    Msi(u8),
    /// Byte `n` of the emulated MSI-X capability.
    Msix(u8),
    /// Beyond the device's config space: reads 0xff, writes dropped.
    Absent,
}

/// An 8-byte capability of our own (the NVIDIA GPUDirect clique capability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraCap {
    pub offset: usize,
    pub bytes: [u8; 8],
}

/// The NVIDIA GPUDirect P2P clique capability: a vendor-specific capability of 8 bytes whose
/// body is its length, the signature "P2P", and the clique ID in bits 3..7 of the next byte
/// (the layout the NVIDIA driver looks for, as QEMU emits it).
pub fn gpudirect_clique_cap(offset: usize, clique: u8) -> ExtraCap {
    ExtraCap {
        offset,
        bytes: [
            PCI_CAP_ID_VENDOR,
            0,
            8,
            b'P',
            b'2',
            b'P',
            (clique & 0xf) << 3,
            0,
        ],
    }
}

/// What the builder needs to know.
pub struct LayoutInput<'a> {
    /// The device's config space as read at start.
    pub config: &'a [u8],
    pub caps: &'a [Cap],
    pub ext_caps: &'a [ExtCap],
    /// MSI and MSI-X are emulated (otherwise they are hidden).
    pub msi: bool,
    pub msix: bool,
    pub extra: Option<ExtraCap>,
}

/// The per-byte map and the first capability the guest sees.
pub struct Layout {
    pub bytes: Vec<Byte>,
    /// The value of the capabilities pointer (0: no list).
    pub first_cap: u8,
}

fn visible(cap: &Cap, input: &LayoutInput<'_>) -> bool {
    match cap.id {
        PCI_CAP_ID_MSI => input.msi,
        PCI_CAP_ID_MSIX => input.msix,
        id => caps::passes_cap(id),
    }
}

/// Builds the map: the header is emulated (except the status register, which the device
/// model merges), capabilities keep their offsets, everything else is passed through.
pub fn build(input: &LayoutInput<'_>) -> Layout {
    let size = input
        .config
        .len()
        .clamp(CONVENTIONAL_CONFIG_END, EXTENDED_CONFIG_END);
    let mut bytes = vec![Byte::Absent; EXTENDED_CONFIG_END];
    bytes[..FIRST_CAPABILITY_OFFSET].fill(Byte::Header);
    bytes[FIRST_CAPABILITY_OFFSET..size].fill(Byte::Device);
    let first_cap = conventional(input, &mut bytes);
    if size > CONVENTIONAL_CONFIG_END {
        extended(input, &mut bytes);
    }
    Layout { bytes, first_cap }
}

fn conventional(input: &LayoutInput<'_>, bytes: &mut [Byte]) -> u8 {
    let mut shown: Vec<(usize, u8)> = Vec::new();
    for cap in input.caps {
        let range = cap.offset..cap.offset + cap.len;
        if !visible(cap, input) {
            bytes[range].fill(Byte::Fixed(0));
            continue;
        }
        for (rel, b) in bytes[range].iter_mut().enumerate().skip(2) {
            *b = match cap.id {
                PCI_CAP_ID_MSI => Byte::Msi(rel as u8),
                PCI_CAP_ID_MSIX => Byte::Msix(rel as u8),
                _ => Byte::Device,
            };
        }
        shown.push((cap.offset, cap.id));
    }
    if let Some(extra) = input.extra {
        for (i, v) in extra.bytes.iter().enumerate() {
            bytes[extra.offset + i] = Byte::Fixed(*v);
        }
        shown.push((extra.offset, extra.bytes[0]));
    }
    for (i, &(offset, id)) in shown.iter().enumerate() {
        let next = shown.get(i + 1).map_or(0, |n| n.0 as u8);
        bytes[offset] = Byte::Fixed(id);
        bytes[offset + 1] = Byte::Fixed(next);
    }
    shown.first().map_or(0, |c| c.0 as u8)
}

fn put_header(bytes: &mut [Byte], offset: usize, header: u32) {
    for (i, b) in header.to_le_bytes().into_iter().enumerate() {
        bytes[offset + i] = Byte::Fixed(b);
    }
}

fn extended(input: &LayoutInput<'_>, bytes: &mut [Byte]) {
    let shown: Vec<&ExtCap> = input
        .ext_caps
        .iter()
        .filter(|c| caps::passes_ext_cap(c.id))
        .collect();
    for cap in input
        .ext_caps
        .iter()
        .filter(|c| !caps::passes_ext_cap(c.id))
    {
        bytes[cap.offset..cap.offset + cap.len].fill(Byte::Fixed(0));
    }
    for (i, cap) in shown.iter().enumerate() {
        let next = shown.get(i + 1).map_or(0, |n| n.offset as u32);
        let header = u32::from(cap.id) | u32::from(cap.version) << 16 | next << 20;
        put_header(bytes, cap.offset, header);
    }
    // The list must start at 0x100: a hidden first capability becomes a null one (ID 0)
    // pointing at the first visible one.
    let starts_visible = shown
        .first()
        .is_some_and(|c| c.offset == FIRST_EXTENDED_CAPABILITY_OFFSET);
    if !input.ext_caps.is_empty() && !starts_visible {
        let next = shown.first().map_or(0, |c| c.offset as u32);
        put_header(bytes, FIRST_EXTENDED_CAPABILITY_OFFSET, next << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(id: u8, offset: usize, len: usize) -> Cap {
        Cap { id, offset, len }
    }

    fn ext(id: u16, offset: usize, len: usize) -> ExtCap {
        ExtCap {
            id,
            version: 1,
            offset,
            len,
        }
    }

    fn fixed(l: &Layout, at: usize) -> u8 {
        match l.bytes[at] {
            Byte::Fixed(v) => v,
            other => panic!("byte {at:#x} is {other:?}"),
        }
    }

    #[test]
    fn hidden_capabilities_are_skipped_and_ours_is_appended() {
        let config = vec![0u8; 256];
        // PM at 0x40, EA (hidden) at 0x48, MSI at 0x50, PCIe at 0x70.
        let caps = [
            cap(0x01, 0x40, 8),
            cap(0x14, 0x48, 8),
            cap(0x05, 0x50, 14),
            cap(0x10, 0x70, 0x3c),
        ];
        let input = LayoutInput {
            config: &config,
            caps: &caps,
            ext_caps: &[],
            msi: true,
            msix: false,
            extra: Some(gpudirect_clique_cap(0xc8, 5)),
        };
        let l = build(&input);
        assert_eq!(l.first_cap, 0x40);
        assert_eq!(
            (fixed(&l, 0x40), fixed(&l, 0x41)),
            (0x01, 0x50),
            "PM skips EA"
        );
        assert_eq!(l.bytes[0x42], Byte::Device);
        assert_eq!(fixed(&l, 0x48), 0, "hidden EA reads zero");
        assert_eq!(fixed(&l, 0x51), 0x70);
        assert_eq!(l.bytes[0x52], Byte::Msi(2));
        assert_eq!(
            fixed(&l, 0x71),
            0xc8,
            "PCIe points at the clique capability"
        );
        let clique: Vec<u8> = (0xc8..0xd0).map(|a| fixed(&l, a)).collect();
        assert_eq!(clique, vec![0x09, 0, 8, b'P', b'2', b'P', 5 << 3, 0]);
        assert_eq!(l.bytes[0x30], Byte::Header);
        assert_eq!(
            l.bytes[0xb0],
            Byte::Device,
            "vendor registers outside capabilities"
        );
        assert_eq!(l.bytes[0x100], Byte::Absent, "a conventional device");
    }

    #[test]
    fn a_device_without_msi_resources_hides_msi() {
        let config = vec![0u8; 256];
        let caps = [cap(0x05, 0x40, 10)];
        let input = LayoutInput {
            config: &config,
            caps: &caps,
            ext_caps: &[],
            msi: false,
            msix: false,
            extra: None,
        };
        let l = build(&input);
        assert_eq!(l.first_cap, 0);
        assert!(l.bytes[0x40..0x4a].iter().all(|b| *b == Byte::Fixed(0)));
    }

    #[test]
    fn extended_list_skips_hidden_ones_and_keeps_0x100() {
        let config = vec![0u8; 4096];
        // SR-IOV (hidden) at 0x100, AER at 0x140, resizable BAR (hidden) at 0x180, DSN at 0x1c0.
        let e = [
            ext(0x10, 0x100, 0x40),
            ext(0x01, 0x140, 0x40),
            ext(0x15, 0x180, 0x40),
            ext(0x03, 0x1c0, 0xe40),
        ];
        let input = LayoutInput {
            config: &config,
            caps: &[],
            ext_caps: &e,
            msi: false,
            msix: false,
            extra: None,
        };
        let l = build(&input);
        let header = |at: usize| u32::from_le_bytes([0, 1, 2, 3].map(|i| fixed(&l, at + i)));
        assert_eq!(
            header(0x100),
            0x140 << 20,
            "null capability pointing at AER"
        );
        assert_eq!(header(0x140), 0x1c0 << 20 | 1 << 16 | 1);
        assert_eq!(header(0x1c0), 1 << 16 | 3);
        assert_eq!(fixed(&l, 0x184), 0, "hidden body reads zero");
        assert_eq!(l.bytes[0x144], Byte::Device);
    }
}
