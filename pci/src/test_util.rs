//! Shared fixtures for this crate's tests and the fuzz targets (feature `test-util`): a
//! header, a PCI function with every feature (BARs of each kind, ROM, MSI, MSI-X), and a
//! tiny PRNG.

use std::sync::Arc;

use crate::bar::{BarConfig, BarInfo, BarKind};
use crate::configuration::{ConfigWriteResult, PciConfiguration, PciHeader};
use crate::device::PciDevice;
use crate::interrupt::RecordingMsiGroup;
use crate::msi::Msi;
use crate::msix::{Msix, MsixParams};

pub fn header() -> PciHeader {
    PciHeader {
        vendor_id: 0x1af4,
        device_id: 0x1041,
        class_code: 0x02_00_00,
        revision_id: 1,
        subsystem_vendor_id: 0x1af4,
        subsystem_id: 0x0001,
        multi_function: false,
        interrupt_pin: 1,
    }
}

/// BAR 0: 32 I/O ports; BAR 1: 4 KiB MSI-X table (0) and PBA (0x800);
/// BAR 2 (+3): 16 KiB prefetchable 64-bit memory; a 2 KiB ROM.
pub struct TestDevice {
    pub config: PciConfiguration,
    pub msi: Msi,
    pub msix: Msix,
    pub msi_group: Arc<RecordingMsiGroup>,
    pub msix_group: Arc<RecordingMsiGroup>,
    pub memory: Vec<u8>,
    pub last_bar_write: Option<(usize, u64, Vec<u8>)>,
}

pub const TEST_BARS: [BarConfig; 3] = [
    BarConfig {
        index: 0,
        size: 0x20,
        kind: BarKind::Io,
        prefetchable: false,
        addr: 0xc000,
    },
    BarConfig {
        index: 1,
        size: 0x1000,
        kind: BarKind::Mem32,
        prefetchable: false,
        addr: 0xc000_0000,
    },
    BarConfig {
        index: 2,
        size: 0x4000,
        kind: BarKind::Mem64,
        prefetchable: true,
        addr: 0x1_0000_0000,
    },
];

impl Default for TestDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDevice {
    pub fn new() -> Self {
        Self::with_bars(&TEST_BARS)
    }

    /// BARs laid out like [`TEST_BARS`] (BAR 1 a memory BAR of at least
    /// 4 KiB for MSI-X), at other addresses.
    pub fn with_bars(bars: &[BarConfig]) -> Self {
        let mut config = PciConfiguration::new(&header());
        for bar in bars {
            config.add_bar(bar).unwrap();
        }
        config.add_rom_bar(0x800, 0xc010_0000).unwrap();
        let msi_group = Arc::new(RecordingMsiGroup::new());
        let msix_group = Arc::new(RecordingMsiGroup::new());
        let msi = Msi::new(&mut config, 4, true, msi_group.clone()).unwrap();
        let params = MsixParams {
            vectors: 4,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800,
        };
        let msix = Msix::new(&mut config, params, msix_group.clone()).unwrap();
        Self {
            config,
            msi,
            msix,
            msi_group,
            msix_group,
            memory: vec![0; 0x4000],
            last_bar_write: None,
        }
    }
}

impl PciDevice for TestDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_config_register(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        let mut result = self.config.write_config_register(reg, offset, data);
        result.msi_changed = self.msi.handle_config_write(&mut self.config, reg);
        result.msix_changed = self.msix.handle_config_write(&self.config, reg);
        result
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if self.msix.read_bar(bar, offset, data) {
            return;
        }
        let start = offset as usize;
        match self.memory.get(start..start.saturating_add(data.len())) {
            Some(bytes) if bar == 2 => data.copy_from_slice(bytes),
            _ => data.fill(0xff),
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.last_bar_write = Some((bar, offset, data.to_vec()));
        if self.msix.write_bar(bar, offset, data) {
            return;
        }
        let start = offset as usize;
        if let Some(bytes) = self.memory.get_mut(start..start.saturating_add(data.len())) {
            if bar == 2 {
                bytes.copy_from_slice(data);
            }
        }
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.config.bars()
    }
}

/// xorshift64*: deterministic pseudo-random numbers for fuzz-style tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
