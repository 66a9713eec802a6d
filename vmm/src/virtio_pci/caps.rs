//! The virtio vendor-specific PCI capabilities (virtio 1.2 section 4.1.4) and the BAR layout
//! they describe.

use pci::PciCapability;

/// PCI capability ID for vendor-specific capabilities.
const PCI_CAP_ID_VNDR: u8 = 0x09;

pub const CFG_TYPE_COMMON: u8 = 1;
pub const CFG_TYPE_NOTIFY: u8 = 2;
pub const CFG_TYPE_ISR: u8 = 3;
pub const CFG_TYPE_DEVICE: u8 = 4;

/// Everything lives in BAR 0 (64-bit, 64 KiB):
pub const BAR_INDEX: usize = 0;
pub const BAR_SIZE: u64 = 0x1_0000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const COMMON_LEN: u64 = 0x1000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const ISR_LEN: u64 = 0x1000;
pub const DEVICE_OFFSET: u64 = 0x2000;
pub const DEVICE_LEN: u64 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const NOTIFY_LEN: u64 = 0x1000;
/// Queue `i` is notified at NOTIFY_OFFSET + i * NOTIFY_MULTIPLIER.
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u32 = 0x8000;
pub const MSIX_PBA_OFFSET: u32 = 0xc000;

/// `struct virtio_pci_cap` (+ `notify_off_multiplier` for the notify capability).
pub struct VirtioPciCap {
    pub cfg_type: u8,
    pub offset: u32,
    pub length: u32,
    pub notify_multiplier: Option<u32>,
}

impl PciCapability for VirtioPciCap {
    fn id(&self) -> u8 {
        PCI_CAP_ID_VNDR
    }

    fn bytes(&self) -> Vec<u8> {
        let cap_len: u8 = if self.notify_multiplier.is_some() {
            20
        } else {
            16
        };
        // From byte 2: cap_len, cfg_type, bar, id, padding[2], offset, length.
        let mut b = vec![cap_len, self.cfg_type, BAR_INDEX as u8, 0, 0, 0];
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.length.to_le_bytes());
        if let Some(m) = self.notify_multiplier {
            b.extend_from_slice(&m.to_le_bytes());
        }
        b
    }
}

/// The four capabilities every device exposes.
pub fn all(num_queues: usize) -> [VirtioPciCap; 4] {
    [
        VirtioPciCap {
            cfg_type: CFG_TYPE_COMMON,
            offset: COMMON_OFFSET as u32,
            length: COMMON_LEN as u32,
            notify_multiplier: None,
        },
        VirtioPciCap {
            cfg_type: CFG_TYPE_ISR,
            offset: ISR_OFFSET as u32,
            length: ISR_LEN as u32,
            notify_multiplier: None,
        },
        VirtioPciCap {
            cfg_type: CFG_TYPE_DEVICE,
            offset: DEVICE_OFFSET as u32,
            length: DEVICE_LEN as u32,
            notify_multiplier: None,
        },
        VirtioPciCap {
            cfg_type: CFG_TYPE_NOTIFY,
            offset: NOTIFY_OFFSET as u32,
            length: (num_queues as u32 * NOTIFY_MULTIPLIER).max(NOTIFY_MULTIPLIER),
            notify_multiplier: Some(NOTIFY_MULTIPLIER),
        },
    ]
}
