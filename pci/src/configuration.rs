//! A PCI function's configuration space: the 256-byte type-0 header plus the
//! 4 KiB PCI Express extended space, kept as dword registers with a mask of
//! guest-writable bits and a mask of write-1-to-clear bits per register.
//!
//! BARs live in [`crate::bar`], capabilities in [`crate::capability`]; both
//! extend [`PciConfiguration`] with their own `impl` blocks.

use log::debug;

use crate::bar::{BarMeta, BarReprogram, NUM_BAR_SLOTS};

/// Dword registers in the whole (extended) configuration space.
pub const NUM_CONFIGURATION_REGISTERS: usize = 1024;
/// Dword registers reachable through the legacy 0xcf8/0xcfc mechanism.
pub const NUM_CONVENTIONAL_REGISTERS: usize = 64;

/// Register index of vendor ID (low half) and device ID (high half).
pub const VENDOR_DEVICE_REG: usize = 0;
/// Register index of the command (low half) and status (high half) registers.
pub const COMMAND_STATUS_REG: usize = 1;
/// Register index of revision ID (byte 0) and class code (bytes 1..=3).
pub const CLASS_REVISION_REG: usize = 2;
/// Register index of cache line size, latency timer, header type and BIST.
pub const HEADER_TYPE_REG: usize = 3;
/// Register index of subsystem vendor ID (low half) and subsystem ID.
pub const SUBSYSTEM_REG: usize = 11;
/// Register index of interrupt line (byte 0) and interrupt pin (byte 1).
pub const INTERRUPT_REG: usize = 15;

/// Command register: respond to I/O space accesses (I/O BARs decode).
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
/// Command register: respond to memory space accesses (memory BARs decode).
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Command register: the function may master the bus (DMA, MSI writes).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register: parity error response.
pub const COMMAND_PARITY_ERROR_RESPONSE: u16 = 1 << 6;
/// Command register: SERR# enable.
pub const COMMAND_SERR_ENABLE: u16 = 1 << 8;
/// Command register: INTx emulation disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Command bits a guest may change.
pub const COMMAND_WRITABLE: u16 = COMMAND_IO_SPACE
    | COMMAND_MEMORY_SPACE
    | COMMAND_BUS_MASTER
    | COMMAND_PARITY_ERROR_RESPONSE
    | COMMAND_SERR_ENABLE
    | COMMAND_INTX_DISABLE;

/// Status register: an INTx interrupt is pending (read-only).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status register: the capability list at 0x34 is valid (read-only).
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;
/// Status bits the guest clears by writing 1: master data parity error,
/// signaled/received target abort, received master abort, signaled system
/// error, detected parity error.
pub const STATUS_W1C: u16 = 0xf900;

/// Header type byte: bit 7 marks a multi-function device.
pub const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;

/// What a type-0 header says about the function; fixed at construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciHeader {
    pub vendor_id: u16,
    pub device_id: u16,
    /// Base class, subclass and programming interface: `0xCCSSPP`.
    pub class_code: u32,
    pub revision_id: u8,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    pub multi_function: bool,
    /// 0 for none, 1..=4 for INTA#..INTD#.
    pub interrupt_pin: u8,
}

/// What the VMM must do after a configuration write, returned instead of
/// calling back into the VMM (crosvm style).
///
/// `bar_moves` lists every BAR whose *decoded* address changed: a BAR is
/// decoded at its programmed address while the command register enables its
/// space (I/O or memory; the expansion ROM also needs its enable bit) and not
/// at all otherwise. So a move is emitted when decoding turns on
/// (`old_addr: None`), turns off (`new_addr: None`), or when a decoded BAR's
/// address changes; writes to BARs while decoding is off, and writes that
/// leave the address unchanged, emit nothing. Each 64-bit BAR half is
/// separate, as on hardware: moving a decoded 64-bit BAR low dword first
/// emits a move to the intermediate address, then one to the final address.
#[must_use]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigWriteResult {
    /// Apply each as "remove at `old_addr`, insert at `new_addr`", in order.
    pub bar_moves: Vec<BarReprogram>,
    /// The MSI capability's state changed (already pushed to its interrupt group).
    pub msi_changed: bool,
    /// The MSI-X capability's state changed (already pushed to its interrupt group).
    pub msix_changed: bool,
}

/// The value and byte-enable mask of a write of `data` at byte `offset` of a
/// dword, or `None` when the access does not fit in one dword.
pub(crate) fn dword_access(offset: u64, data: &[u8]) -> Option<(u32, u32)> {
    let offset = usize::try_from(offset).ok()?;
    if data.is_empty() || offset >= 4 || offset + data.len() > 4 {
        return None;
    }
    let (mut value, mut mask) = (0u32, 0u32);
    for (i, byte) in data.iter().enumerate() {
        let shift = 8 * (offset + i);
        value |= u32::from(*byte) << shift;
        mask |= 0xff << shift;
    }
    Some((value, mask))
}

/// Configuration space of one PCI function.
#[derive(Clone, Debug)]
pub struct PciConfiguration {
    registers: Vec<u32>,
    writable: Vec<u32>,
    w1c: Vec<u32>,
    /// BARs 0..=5 and the expansion ROM (slot 6); a 64-bit BAR's upper
    /// slot stays `None` (see [`crate::bar`]).
    pub(crate) bars: [Option<BarMeta>; NUM_BAR_SLOTS],
    /// Offset and end of the last capability in the 0x40..0x100 list.
    pub(crate) last_capability: Option<(usize, usize)>,
    /// Offset and end of the last extended capability (0x100..0x1000).
    pub(crate) last_extended_capability: Option<(usize, usize)>,
}

impl PciConfiguration {
    /// A header describing `header`, with no BARs or capabilities.
    pub fn new(header: &PciHeader) -> Self {
        let mut config = Self {
            registers: vec![0; NUM_CONFIGURATION_REGISTERS],
            writable: vec![0; NUM_CONFIGURATION_REGISTERS],
            w1c: vec![0; NUM_CONFIGURATION_REGISTERS],
            bars: [None; NUM_BAR_SLOTS],
            last_capability: None,
            last_extended_capability: None,
        };
        let ids = u32::from(header.device_id) << 16 | u32::from(header.vendor_id);
        config.registers[VENDOR_DEVICE_REG] = ids;
        config.writable[COMMAND_STATUS_REG] = u32::from(COMMAND_WRITABLE);
        config.w1c[COMMAND_STATUS_REG] = u32::from(STATUS_W1C) << 16;
        let class = (header.class_code & 0x00ff_ffff) << 8;
        config.registers[CLASS_REVISION_REG] = class | u32::from(header.revision_id);
        let header_type = if header.multi_function {
            HEADER_TYPE_MULTI_FUNCTION
        } else {
            0
        };
        config.registers[HEADER_TYPE_REG] = u32::from(header_type) << 16;
        // Cache line size is read/write; latency timer and BIST are zero.
        config.writable[HEADER_TYPE_REG] = 0xff;
        let subsystem = u32::from(header.subsystem_id) << 16;
        config.registers[SUBSYSTEM_REG] = subsystem | u32::from(header.subsystem_vendor_id);
        let pin = if header.interrupt_pin <= 4 {
            header.interrupt_pin
        } else {
            0
        };
        config.registers[INTERRUPT_REG] = u32::from(pin) << 8;
        // Interrupt line is a scratch byte for the guest's IRQ routing.
        config.writable[INTERRUPT_REG] = 0xff;
        config
    }

    /// The register at dword index `reg`; all-ones beyond the 4 KiB space.
    pub fn read_config_register(&self, reg: usize) -> u32 {
        match self.registers.get(reg) {
            Some(value) => *value,
            None => {
                debug!("pci config: read of register {reg:#x} beyond the config space");
                0xffff_ffff
            }
        }
    }

    /// A guest write of `data` at byte `offset` of register `reg`. Only
    /// writable bits change, write-1-to-clear bits clear where `data` has
    /// ones; accesses that leave the dword or the config space are dropped.
    pub fn write_config_register(
        &mut self,
        reg: usize,
        offset: u64,
        data: &[u8],
    ) -> ConfigWriteResult {
        let Some((value, byte_mask)) = dword_access(offset, data) else {
            debug!(
                "pci config: dropped {}-byte write at offset {offset} of register {reg:#x}",
                data.len()
            );
            return ConfigWriteResult::default();
        };
        if reg >= NUM_CONFIGURATION_REGISTERS {
            debug!("pci config: write to register {reg:#x} beyond the config space");
            return ConfigWriteResult::default();
        }
        let before = self
            .affects_bar_decoding(reg)
            .then(|| self.bar_decode_state());
        let writable = self.writable[reg] & byte_mask;
        let cleared = self.w1c[reg] & byte_mask & value;
        let old = self.registers[reg];
        self.registers[reg] = (old & !writable & !cleared) | (value & writable);
        ConfigWriteResult {
            bar_moves: before.map_or_else(Vec::new, |b| self.bar_moves_since(&b)),
            ..Default::default()
        }
    }

    /// Sets register `reg` to `value` regardless of masks (device side).
    /// Out-of-range registers are ignored.
    pub fn set_register(&mut self, reg: usize, value: u32) {
        if let Some(r) = self.registers.get_mut(reg) {
            *r = value;
        }
    }

    /// Which bits of register `reg` the guest may write.
    pub fn set_writable_bits(&mut self, reg: usize, mask: u32) {
        if let Some(m) = self.writable.get_mut(reg) {
            *m = mask;
        }
    }

    /// Which bits of register `reg` the guest clears by writing 1.
    pub fn set_w1c_bits(&mut self, reg: usize, mask: u32) {
        if let Some(m) = self.w1c.get_mut(reg) {
            *m = mask;
        }
    }

    /// The writable-bit mask of register `reg` (0 beyond the config space).
    pub fn writable_bits(&self, reg: usize) -> u32 {
        self.writable.get(reg).copied().unwrap_or(0)
    }

    /// The byte at config-space byte `offset` (0xff beyond the space).
    pub fn read_u8(&self, offset: usize) -> u8 {
        (self.read_config_register(offset / 4) >> (8 * (offset % 4))) as u8
    }

    /// The little-endian word at byte `offset`; bytes beyond the space read 0xff.
    pub fn read_u16(&self, offset: usize) -> u16 {
        u16::from(self.read_u8(offset)) | u16::from(self.read_u8(offset.saturating_add(1))) << 8
    }

    /// The little-endian dword at byte `offset`, which need not be aligned.
    pub fn read_u32(&self, offset: usize) -> u32 {
        u32::from(self.read_u16(offset)) | u32::from(self.read_u16(offset.saturating_add(2))) << 16
    }

    /// Sets the byte at `offset` regardless of masks (device side).
    pub fn set_u8(&mut self, offset: usize, value: u8) {
        Self::put_byte(&mut self.registers, offset, value);
    }

    /// Sets the little-endian word at `offset` regardless of masks.
    pub fn set_u16(&mut self, offset: usize, value: u16) {
        for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
            self.set_u8(offset.saturating_add(i), byte);
        }
    }

    /// Sets the little-endian dword at `offset` regardless of masks.
    pub fn set_u32(&mut self, offset: usize, value: u32) {
        for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
            self.set_u8(offset.saturating_add(i), byte);
        }
    }

    /// Sets which bits of the byte at `offset` the guest may write.
    pub(crate) fn set_writable_u8(&mut self, offset: usize, mask: u8) {
        Self::put_byte(&mut self.writable, offset, mask);
    }

    fn put_byte(regs: &mut [u32], offset: usize, value: u8) {
        let shift = 8 * (offset % 4);
        if let Some(r) = regs.get_mut(offset / 4) {
            *r = (*r & !(0xff << shift)) | u32::from(value) << shift;
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.registers[COMMAND_STATUS_REG] as u16
    }

    /// The status register.
    pub fn status(&self) -> u16 {
        (self.registers[COMMAND_STATUS_REG] >> 16) as u16
    }

    /// Sets or clears read-only status bits such as [`STATUS_INTERRUPT`]
    /// (device side).
    pub fn set_status_bits(&mut self, bits: u16, set: bool) {
        let bits = u32::from(bits) << 16;
        let reg = &mut self.registers[COMMAND_STATUS_REG];
        *reg = if set { *reg | bits } else { *reg & !bits };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::header;

    fn write(config: &mut PciConfiguration, reg: usize, offset: u64, data: &[u8]) {
        let result = config.write_config_register(reg, offset, data);
        assert!(result.bar_moves.is_empty());
    }

    #[test]
    fn header_fields_are_set_at_construction() {
        let config = PciConfiguration::new(&header());
        assert_eq!(config.read_config_register(0), 0x1041_1af4);
        assert_eq!(config.read_config_register(2), 0x0200_0001);
        assert_eq!(config.read_config_register(11), 0x0001_1af4);
        assert_eq!(config.read_u8(0x3d), 1, "interrupt pin INTA#");
        assert_eq!(config.read_u8(0x0e), 0, "type-0 single function header");
        let multi = PciConfiguration::new(&PciHeader {
            multi_function: true,
            ..header()
        });
        assert_eq!(multi.read_u8(0x0e), HEADER_TYPE_MULTI_FUNCTION);
    }

    #[test]
    fn read_only_fields_ignore_writes() {
        let mut config = PciConfiguration::new(&header());
        for reg in [0, 2, 11, 13] {
            let before = config.read_config_register(reg);
            write(&mut config, reg, 0, &[0xff; 4]);
            assert_eq!(config.read_config_register(reg), before, "register {reg}");
        }
        write(&mut config, 15, 1, &[4]);
        assert_eq!(config.read_u8(0x3d), 1, "interrupt pin is read-only");
        write(&mut config, 3, 0, &[0xff; 4]);
        assert_eq!(config.read_config_register(3), 0xff, "only cache line size");
    }

    #[test]
    fn interrupt_line_is_writable() {
        let mut config = PciConfiguration::new(&header());
        write(&mut config, 15, 0, &[11]);
        assert_eq!(config.read_u8(0x3c), 11);
        assert_eq!(config.read_u8(0x3d), 1);
    }

    #[test]
    fn command_register_keeps_only_writable_bits() {
        let mut config = PciConfiguration::new(&header());
        write(&mut config, 1, 0, &[0xff, 0xff]);
        assert_eq!(config.command(), COMMAND_WRITABLE);
        write(&mut config, 1, 0, &[0x00, 0x00]);
        assert_eq!(config.command(), 0);
        write(&mut config, 1, 0, &[0x06]);
        assert_eq!(config.command(), COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER);
    }

    #[test]
    fn status_error_bits_are_write_one_to_clear() {
        let mut config = PciConfiguration::new(&header());
        config.set_status_bits(0x8000 | 0x2000 | STATUS_INTERRUPT, true);
        // Writing 0 leaves them; writing 1 to one clears only that one.
        write(&mut config, 1, 2, &[0x00, 0x00]);
        assert_eq!(config.status(), 0xa000 | STATUS_INTERRUPT);
        write(&mut config, 1, 2, &[0x00, 0x80]);
        assert_eq!(config.status(), 0x2000 | STATUS_INTERRUPT);
        // The interrupt status bit is not W1C, and status writes never set bits.
        write(&mut config, 1, 0, &[0, 0, 0xff, 0xff]);
        assert_eq!(config.status(), STATUS_INTERRUPT);
    }

    #[test]
    fn command_write_does_not_touch_status() {
        let mut config = PciConfiguration::new(&header());
        config.set_status_bits(0x4000, true);
        write(&mut config, 1, 0, &[0x07, 0x00]);
        assert_eq!(config.status(), 0x4000);
    }

    #[test]
    fn accesses_outside_one_dword_are_dropped() {
        let mut config = PciConfiguration::new(&header());
        write(&mut config, 15, 3, &[1, 2]);
        write(&mut config, 15, 4, &[1]);
        write(&mut config, 15, 0, &[1, 2, 3, 4, 5]);
        write(&mut config, 15, 0, &[]);
        write(&mut config, 15, u64::MAX, &[1]);
        assert_eq!(config.read_u8(0x3c), 0);
        write(&mut config, NUM_CONFIGURATION_REGISTERS, 0, &[1]);
        assert_eq!(
            config.read_config_register(NUM_CONFIGURATION_REGISTERS),
            0xffff_ffff
        );
    }

    #[test]
    fn byte_and_word_writes_hit_only_their_bytes() {
        let mut config = PciConfiguration::new(&header());
        config.set_writable_bits(0x20, 0xffff_ffff);
        write(&mut config, 0x20, 0, &[0x11, 0x22, 0x33, 0x44]);
        write(&mut config, 0x20, 1, &[0xaa]);
        assert_eq!(config.read_config_register(0x20), 0x4433_aa11);
        write(&mut config, 0x20, 2, &[0xbb, 0xcc]);
        assert_eq!(config.read_config_register(0x20), 0xccbb_aa11);
        write(&mut config, 0x20, 1, &[0x01, 0x02, 0x03]);
        assert_eq!(config.read_config_register(0x20), 0x0302_0111);
    }

    #[test]
    fn dword_access_computes_value_and_byte_mask() {
        assert_eq!(dword_access(0, &[1, 2, 3, 4]), Some((0x0403_0201, !0)));
        assert_eq!(
            dword_access(2, &[0xaa, 0xbb]),
            Some((0xbbaa_0000, 0xffff_0000))
        );
        assert_eq!(dword_access(3, &[0xcc]), Some((0xcc00_0000, 0xff00_0000)));
        assert_eq!(dword_access(3, &[1, 2]), None);
        assert_eq!(dword_access(0, &[]), None);
    }

    #[test]
    fn device_side_setters_ignore_masks_and_bounds() {
        let mut config = PciConfiguration::new(&header());
        config.set_u16(0x3e, 0xbeef);
        config.set_u32(0x41, 0x1234_5678);
        assert_eq!(config.read_u16(0x3e), 0xbeef);
        assert_eq!(config.read_u32(0x41), 0x1234_5678);
        config.set_u32(0xffe, 0xaabb_ccdd);
        assert_eq!(config.read_u16(0xffe), 0xccdd);
        assert_eq!(
            config.read_u16(0xfff),
            0xffcc,
            "byte past the end reads 0xff"
        );
        config.set_u32(usize::MAX - 1, 1);
        assert_eq!(config.read_u32(usize::MAX - 1), 0xffff_ffff);
        config.set_register(NUM_CONFIGURATION_REGISTERS, 1);
        config.set_writable_bits(NUM_CONFIGURATION_REGISTERS, 1);
        assert_eq!(config.writable_bits(NUM_CONFIGURATION_REGISTERS), 0);
    }

    #[test]
    fn invalid_interrupt_pin_reads_as_none() {
        let config = PciConfiguration::new(&PciHeader {
            interrupt_pin: 9,
            ..header()
        });
        assert_eq!(config.read_u8(0x3d), 0);
    }
}
