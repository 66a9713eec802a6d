//! What a VFIO device offers, read once before the VMM places it: config space, capability
//! lists, BARs, MSI and MSI-X.

use std::io;

use super::bars;
use super::caps::{self, Cap, ExtCap};
use super::ops::{VfioDeviceOps, VfioIrqKind, VFIO_PCI_CONFIG_REGION};
use crate::allocator::BarRequest;
use crate::capability::{EXTENDED_CONFIG_END, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX};
use crate::msix::MsixParams;

#[derive(Debug, thiserror::Error)]
pub enum VfioPciError {
    #[error("reading the device's config space: {0}")]
    ConfigRead(io::Error),
    #[error("the device has no config space region")]
    NoConfigRegion,
    #[error("header type {0:#x}: only type-0 (endpoint) functions can be passed, not bridges")]
    NotEndpoint(u8),
    #[error("declaring BAR {index}: {source}")]
    Bar {
        index: usize,
        source: crate::bar::BarError,
    },
    #[error("no room in config space for the GPUDirect clique capability")]
    NoRoomForClique,
}

/// The device as found.
#[derive(Clone, Debug)]
pub struct VfioPciInfo {
    /// Config space at probe time (256 bytes, or 4096 for PCIe).
    pub config: Vec<u8>,
    pub caps: Vec<Cap>,
    pub ext_caps: Vec<ExtCap>,
    /// BARs 0..=5 and the ROM (index 6) to place.
    pub bars: Vec<BarRequest>,
    /// Offset and message control of the MSI capability, if VFIO can drive it.
    pub msi: Option<(usize, u16)>,
    /// Offset and layout of the MSI-X capability, if VFIO can drive it.
    pub msix: Option<(usize, MsixParams)>,
    /// The interrupt pin (1..=4 for INTA#..INTD#) when VFIO can drive INTx; 0 otherwise.
    pub intx_pin: u8,
}

fn word(cfg: &[u8], off: usize) -> u16 {
    u16::from(cfg.get(off).copied().unwrap_or(0))
        | u16::from(cfg.get(off + 1).copied().unwrap_or(0)) << 8
}

fn dword(cfg: &[u8], off: usize) -> u32 {
    u32::from(word(cfg, off)) | u32::from(word(cfg, off + 2)) << 16
}

impl VfioPciInfo {
    /// Reads config space and region information from `ops`.
    pub fn probe(ops: &dyn VfioDeviceOps) -> Result<Self, VfioPciError> {
        let region = ops
            .region_info(VFIO_PCI_CONFIG_REGION)
            .ok_or(VfioPciError::NoConfigRegion)?;
        let size = (region.size as usize).clamp(256, EXTENDED_CONFIG_END);
        let mut config = vec![0u8; size];
        // A mediated device may report less than the 256-byte header (the kernel's mtty sample:
        // 255): what it does not have reads as zero.
        let head = (region.size as usize).min(256);
        ops.read_region(VFIO_PCI_CONFIG_REGION, 0, &mut config[..head])
            .map_err(VfioPciError::ConfigRead)?;
        if size > 256
            && ops
                .read_region(VFIO_PCI_CONFIG_REGION, 256, &mut config[256..])
                .is_err()
        {
            config.truncate(256);
        }
        let header_type = config[0x0e] & 0x7f;
        if header_type != 0 {
            return Err(VfioPciError::NotEndpoint(header_type));
        }
        let caps = caps::conventional(&config);
        let ext_caps = caps::extended(&config);
        let bars = bars::discover(&config, ops);
        let find = |id: u8| caps.iter().find(|c| c.id == id).map(|c| c.offset);
        let msi = find(PCI_CAP_ID_MSI)
            .filter(|_| ops.irq_count(VfioIrqKind::Msi) > 0)
            .map(|off| (off, word(&config, off + 2)));
        let msix = find(PCI_CAP_ID_MSIX)
            .filter(|_| ops.irq_count(VfioIrqKind::Msix) > 0)
            .map(|off| (off, msix_params(&config, off)));
        let pin = config[0x3d];
        let intx_pin = if (1..=4).contains(&pin) && ops.irq_count(VfioIrqKind::Intx) > 0 {
            pin
        } else {
            0
        };
        Ok(VfioPciInfo {
            intx_pin,
            config,
            caps,
            ext_caps,
            bars,
            msi,
            msix,
        })
    }

    pub fn vendor_id(&self) -> u16 {
        word(&self.config, 0)
    }

    pub fn device_id(&self) -> u16 {
        word(&self.config, 2)
    }

    /// Vectors the MSI capability can use (a power of two up to 32).
    pub fn msi_vectors(&self) -> Option<u16> {
        self.msi.map(|(_, c)| 1 << ((c >> 1) & 7).min(5))
    }

    pub fn msix_vectors(&self) -> Option<u16> {
        self.msix.map(|(_, p)| p.vectors)
    }
}

fn msix_params(cfg: &[u8], off: usize) -> MsixParams {
    let control = word(cfg, off + 2);
    let table = dword(cfg, off + 4);
    let pba = dword(cfg, off + 8);
    MsixParams {
        vectors: (control & 0x7ff) + 1,
        table_bar: (table & 7) as usize,
        table_offset: table & !7,
        pba_bar: (pba & 7) as usize,
        pba_offset: pba & !7,
    }
}
