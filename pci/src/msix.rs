//! The MSI-X capability (table size, table and PBA locations, function mask,
//! enable) and [`Msix`], which ties it to the [`MsixTable`] it describes.

use std::io;
use std::sync::Arc;

use crate::bar::{BarKind, NUM_BARS};
use crate::capability::{CapabilityError, PciCapability, PCI_CAP_ID_MSIX};
use crate::configuration::PciConfiguration;
use crate::interrupt::MsiInterruptGroup;
use crate::msix_table::{MsixTable, MSIX_MAX_VECTORS, MSIX_TABLE_ENTRY_SIZE};

/// Message control: MSI-X enable.
pub const MSIX_CTRL_ENABLE: u16 = 1 << 15;
/// Message control: all vectors masked.
pub const MSIX_CTRL_FUNCTION_MASK: u16 = 1 << 14;
const MSIX_CTRL_TABLE_SIZE: u16 = 0x7ff;
/// Capability length: ID, next, control, table and PBA locations.
const MSIX_CAP_LEN: usize = 12;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsixError {
    #[error("MSI-X vector count {0} is not in 1..=2048")]
    InvalidVectorCount(u16),
    #[error("MSI-X {what} BAR {bar} is not a declared memory BAR")]
    InvalidBar { what: &'static str, bar: usize },
    #[error("MSI-X {what} offset {offset:#x} is not 8-byte aligned")]
    UnalignedOffset { what: &'static str, offset: u32 },
    #[error("MSI-X {what} ({offset:#x}+{len:#x}) does not fit BAR {bar} of {bar_size:#x} bytes")]
    DoesNotFit {
        what: &'static str,
        bar: usize,
        offset: u32,
        len: u64,
        bar_size: u64,
    },
    #[error("MSI-X table and PBA overlap in BAR {0}")]
    Overlap(usize),
    #[error("cannot add the MSI-X capability: {0}")]
    Capability(#[from] CapabilityError),
}

/// Where the table and PBA live and how many vectors there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixParams {
    pub vectors: u16,
    pub table_bar: usize,
    pub table_offset: u32,
    pub pba_bar: usize,
    pub pba_offset: u32,
}

impl MsixParams {
    fn table_len(&self) -> u64 {
        u64::from(self.vectors) * MSIX_TABLE_ENTRY_SIZE
    }

    fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }

    /// Checks the parameters against the BARs declared in `config`.
    fn validate(&self, config: &PciConfiguration) -> Result<(), MsixError> {
        if self.vectors == 0 || self.vectors > MSIX_MAX_VECTORS {
            return Err(MsixError::InvalidVectorCount(self.vectors));
        }
        let regions = [
            ("table", self.table_bar, self.table_offset, self.table_len()),
            ("PBA", self.pba_bar, self.pba_offset, self.pba_len()),
        ];
        for (what, bar, offset, len) in regions {
            let info = config.bars().into_iter().find(|b| b.index == bar);
            let Some(info) = info.filter(|b| bar < NUM_BARS && b.kind != BarKind::Io) else {
                return Err(MsixError::InvalidBar { what, bar });
            };
            if offset % 8 != 0 {
                return Err(MsixError::UnalignedOffset { what, offset });
            }
            if u64::from(offset) + len > info.size {
                let bar_size = info.size;
                return Err(MsixError::DoesNotFit {
                    what,
                    bar,
                    offset,
                    len,
                    bar_size,
                });
            }
        }
        let (t, p) = (u64::from(self.table_offset), u64::from(self.pba_offset));
        if self.table_bar == self.pba_bar && t < p + self.pba_len() && p < t + self.table_len() {
            return Err(MsixError::Overlap(self.table_bar));
        }
        Ok(())
    }
}

/// The capability's layout, for [`PciConfiguration::add_capability`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability(pub MsixParams);

impl PciCapability for MsixCapability {
    fn id(&self) -> u8 {
        PCI_CAP_ID_MSIX
    }

    fn bytes(&self) -> Vec<u8> {
        let p = &self.0;
        let control = (p.vectors - 1) & MSIX_CTRL_TABLE_SIZE;
        let table = p.table_offset | p.table_bar as u32;
        let pba = p.pba_offset | p.pba_bar as u32;
        let mut body = Vec::with_capacity(MSIX_CAP_LEN - 2);
        body.extend_from_slice(&control.to_le_bytes());
        body.extend_from_slice(&table.to_le_bytes());
        body.extend_from_slice(&pba.to_le_bytes());
        body
    }

    fn writable_bits(&self) -> Vec<u8> {
        (MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK)
            .to_le_bytes()
            .to_vec()
    }
}

/// A function's MSI-X: the capability in config space and the table and
/// PBA in its BARs.
pub struct Msix {
    offset: usize,
    params: MsixParams,
    table: MsixTable,
}

impl Msix {
    /// Adds the MSI-X capability to `config`; the table and PBA BARs must
    /// already be declared there and be large enough.
    pub fn new(
        config: &mut PciConfiguration,
        params: MsixParams,
        group: Arc<dyn MsiInterruptGroup>,
    ) -> Result<Self, MsixError> {
        params.validate(config)?;
        let offset = config.add_capability(&MsixCapability(params))?;
        Ok(Self {
            offset,
            params,
            table: MsixTable::new(params.vectors, group),
        })
    }

    /// Byte offset of the capability in config space.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn params(&self) -> MsixParams {
        self.params
    }

    pub fn table(&self) -> &MsixTable {
        &self.table
    }

    /// See [`MsixTable::restore`].
    pub fn restore_table(
        &mut self,
        entries: &[crate::MsixTableEntry],
        pba: &[u64],
    ) -> Result<(), String> {
        self.table.restore(entries, pba)
    }

    /// Whether register `reg` holds part of the capability.
    pub fn contains(&self, reg: usize) -> bool {
        (self.offset / 4..(self.offset + MSIX_CAP_LEN).div_ceil(4)).contains(&reg)
    }

    /// Call after a guest write to register `reg`: applies the enable and
    /// function-mask bits; true when either changed.
    pub fn handle_config_write(&mut self, config: &PciConfiguration, reg: usize) -> bool {
        if !self.contains(reg) {
            return false;
        }
        let control = config.read_u16(self.offset + 2);
        self.table.set_control(
            control & MSIX_CTRL_ENABLE != 0,
            control & MSIX_CTRL_FUNCTION_MASK != 0,
        )
    }

    /// Which region of BAR `bar` holds `offset`, and the offset within it.
    fn region(&self, bar: usize, offset: u64) -> Option<(bool, u64)> {
        let p = &self.params;
        let within = |start: u32, len: u64| {
            let rel = offset.checked_sub(u64::from(start))?;
            (rel < len).then_some(rel)
        };
        if bar == p.table_bar {
            if let Some(rel) = within(p.table_offset, self.table.table_len()) {
                return Some((true, rel));
            }
        }
        if bar == p.pba_bar {
            if let Some(rel) = within(p.pba_offset, self.table.pba_len()) {
                return Some((false, rel));
            }
        }
        None
    }

    /// Handles a BAR read that starts in the table or the PBA; false when
    /// the access is elsewhere (the device handles it).
    pub fn read_bar(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        match self.region(bar, offset) {
            Some((true, rel)) => self.table.read_table(rel, data),
            Some((false, rel)) => self.table.read_pba(rel, data),
            None => return false,
        }
        true
    }

    /// Handles a BAR write that starts in the table or the PBA; false when
    /// the access is elsewhere.
    pub fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) -> bool {
        match self.region(bar, offset) {
            Some((true, rel)) => self.table.write_table(rel, data),
            Some((false, rel)) => self.table.write_pba(rel, data),
            None => return false,
        }
        true
    }

    /// Raises `vector` (see [`MsixTable::trigger`]).
    pub fn trigger(&mut self, vector: u16) -> io::Result<()> {
        self.table.trigger(vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::BarConfig;
    use crate::interrupt::{MsiEvent, RecordingMsiGroup};
    use crate::test_util::header;

    fn config_with_bar(size: u64) -> PciConfiguration {
        let mut config = PciConfiguration::new(&header());
        let bar = BarConfig {
            index: 1,
            size,
            kind: BarKind::Mem32,
            prefetchable: false,
            addr: 0,
        };
        config.add_bar(&bar).unwrap();
        config
    }

    fn params(vectors: u16) -> MsixParams {
        MsixParams {
            vectors,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800,
        }
    }

    fn msix(vectors: u16) -> (PciConfiguration, Msix, Arc<RecordingMsiGroup>) {
        let mut config = config_with_bar(0x1000);
        let group = Arc::new(RecordingMsiGroup::new());
        let msix = Msix::new(&mut config, params(vectors), group.clone()).unwrap();
        (config, msix, group)
    }

    #[test]
    fn capability_describes_table_and_pba() {
        let (config, msix, _) = msix(5);
        let off = msix.offset();
        assert_eq!(config.find_capability(PCI_CAP_ID_MSIX), Some(off));
        assert_eq!(config.read_u16(off + 2), 4, "table size is N-1");
        assert_eq!(config.read_u32(off + 4), 1, "table at offset 0 of BAR 1");
        assert_eq!(config.read_u32(off + 8), 0x801);
    }

    #[test]
    fn only_enable_and_function_mask_are_writable() {
        let (mut config, mut msix, group) = msix(2);
        let reg = msix.offset() / 4;
        let _ = config.write_config_register(reg, 2, &[0xff, 0xff]);
        let _ = config.write_config_register(reg + 1, 0, &[0; 4]);
        assert!(msix.handle_config_write(&config, reg));
        assert_eq!(config.read_u16(msix.offset() + 2), 0xc001);
        assert_eq!(config.read_u32(msix.offset() + 4), 1);
        assert!(msix.table().is_enabled() && msix.table().is_function_masked());
        assert_eq!(group.events().last(), Some(&MsiEvent::Enable));
        assert!(!msix.handle_config_write(&config, reg + 1), "no change");
        assert!(
            !msix.handle_config_write(&config, reg + 3),
            "outside the capability"
        );
    }

    #[test]
    fn bar_accesses_are_routed_to_table_and_pba() {
        let (mut config, mut msix, group) = msix(2);
        let reg = msix.offset() / 4;
        let _ = config.write_config_register(reg, 3, &[0x80]);
        msix.handle_config_write(&config, reg);
        assert!(msix.write_bar(1, 16, &0xfee0_0000u32.to_le_bytes()));
        assert_eq!(msix.table().entry(1).unwrap().addr_lo, 0xfee0_0000);
        msix.trigger(1).unwrap();
        let mut pba = [0u8; 8];
        assert!(msix.read_bar(1, 0x800, &mut pba));
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        assert!(msix.write_bar(1, 16 + 12, &0u32.to_le_bytes()));
        assert_eq!(group.triggered(), vec![1]);
        let mut data = [0u8; 4];
        assert!(!msix.read_bar(1, 0x20, &mut data), "past the table");
        assert!(!msix.read_bar(0, 0, &mut data), "another BAR");
        assert!(!msix.write_bar(1, 0x808, &data), "past the PBA");
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        let group: Arc<dyn MsiInterruptGroup> = Arc::new(RecordingMsiGroup::new());
        let mut config = config_with_bar(0x1000);
        let cases = [
            (params(0), MsixError::InvalidVectorCount(0)),
            (params(2049), MsixError::InvalidVectorCount(2049)),
            (
                MsixParams {
                    table_bar: 0,
                    ..params(1)
                },
                MsixError::InvalidBar {
                    what: "table",
                    bar: 0,
                },
            ),
            (
                MsixParams {
                    pba_offset: 0x804,
                    ..params(1)
                },
                MsixError::UnalignedOffset {
                    what: "PBA",
                    offset: 0x804,
                },
            ),
            (
                MsixParams {
                    table_offset: 0x800,
                    pba_offset: 0,
                    ..params(129)
                },
                MsixError::DoesNotFit {
                    what: "table",
                    bar: 1,
                    offset: 0x800,
                    len: 129 * 16,
                    bar_size: 0x1000,
                },
            ),
            (
                MsixParams {
                    pba_offset: 0x18,
                    ..params(2)
                },
                MsixError::Overlap(1),
            ),
        ];
        for (p, err) in cases {
            assert_eq!(Msix::new(&mut config, p, group.clone()).err(), Some(err));
        }
        assert!(config.capabilities().is_empty());
    }
}
