//! The power-management registers of a hardware-reduced ACPI platform (ACPI 6.5
//! sections 4.8.3.7 and 4.8.3.6): the sleep control, sleep status and reset registers,
//! one byte each, which the FADT describes as 8-bit system I/O registers.
//!
//! Insert as one range, base [`PORT_BASE`] (0x600), len [`PORT_LEN`] (3):
//!
//! | offset | port  | register      | read | write                                     |
//! |--------|-------|---------------|------|-------------------------------------------|
//! | 0      | 0x600 | sleep control | 0    | SLP_EN + SLP_TYP = [`S5_SLEEP_TYPE`]: off |
//! | 1      | 0x601 | sleep status  | 0    | write-1-to-clear WAK_STS (never set)      |
//! | 2      | 0x602 | reset         | 0    | [`RESET_VALUE`]: reset                    |
//!
//! Linux enters S5 by writing `SLP_TYP << 2 | SLP_EN` (0x34) to the sleep control
//! register, SLP_TYP coming from the DSDT's `\_S5_`, and resets (`reboot=acpi`) by
//! writing the FADT's RESET_VALUE to the reset register. Anything else, including
//! accesses wider than a byte, does nothing; reads of other widths read all-ones.

use std::sync::Arc;

use log::{debug, info, warn};

use super::read_open_bus;
use crate::{BusDevice, Interrupt};

/// First I/O port of the block: clear of the i8042 (0x60-0x64), CMOS (0x70-0x71), POST
/// (0x80), COM1 (0x3f8-0x3ff) and PCI config (0xcf8-0xcff) ports, and below 0x1000
/// where Linux starts handing out PCI I/O BARs.
pub const PORT_BASE: u16 = 0x600;
/// Ports in the block.
pub const PORT_LEN: u64 = 3;
/// Offset of the sleep control register.
pub const SLEEP_CONTROL_OFFSET: u64 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS_OFFSET: u64 = 1;
/// Offset of the reset register.
pub const RESET_OFFSET: u64 = 2;
/// What the guest writes to the reset register to reset (the FADT's RESET_VALUE; the
/// value of a full reset through the chipset's 0xcf9 register).
pub const RESET_VALUE: u8 = 0x06;
/// SLP_TYP of S5 (soft off): the DSDT's `\_S5_` must say the same.
pub const S5_SLEEP_TYPE: u8 = 5;
/// Sleep control: SLP_EN, bit 5.
pub const SLP_EN: u8 = 1 << 5;
/// Sleep control: SLP_TYP, bits 2..=4.
pub const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;

/// The sleep control, sleep status and reset registers.
pub struct AcpiPm {
    reset: Arc<dyn Interrupt>,
    power_off: Arc<dyn Interrupt>,
}

impl AcpiPm {
    /// `reset` is triggered when the guest writes [`RESET_VALUE`] to the reset
    /// register, `power_off` when it enters S5.
    pub fn new(reset: Arc<dyn Interrupt>, power_off: Arc<dyn Interrupt>) -> Self {
        AcpiPm { reset, power_off }
    }

    fn sleep_control(&self, value: u8) {
        if value & SLP_EN == 0 {
            return;
        }
        let sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        if sleep_type != S5_SLEEP_TYPE {
            debug!("acpi pm: ignoring request for unsupported sleep type {sleep_type}");
            return;
        }
        info!("acpi pm: guest entered S5 (power off)");
        if let Err(e) = self.power_off.trigger() {
            warn!("acpi pm: failed to signal power-off: {e}");
        }
    }

    fn reset_register(&self, value: u8) {
        if value != RESET_VALUE {
            debug!("acpi pm: ignoring reset register write {value:#x}");
            return;
        }
        info!("acpi pm: guest requested a reset");
        if let Err(e) = self.reset.trigger() {
            warn!("acpi pm: failed to signal reset request: {e}");
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (SLEEP_CONTROL_OFFSET | SLEEP_STATUS_OFFSET | RESET_OFFSET, 1) => data[0] = 0,
            _ => {
                debug!("acpi pm: read of {} bytes at {offset:#x}", data.len());
                read_open_bus(data);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (SLEEP_CONTROL_OFFSET, &[value]) => self.sleep_control(value),
            // WAK_STS is never set, so clearing it changes nothing.
            (SLEEP_STATUS_OFFSET, &[_]) => {}
            (RESET_OFFSET, &[value]) => self.reset_register(value),
            _ => debug!("acpi pm: ignoring {}-byte write at {offset:#x}", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::hammer;
    use crate::CountingInterrupt;

    struct Pm {
        dev: AcpiPm,
        reset: Arc<CountingInterrupt>,
        off: Arc<CountingInterrupt>,
    }

    impl Pm {
        fn new() -> Self {
            let reset = Arc::new(CountingInterrupt::new());
            let off = Arc::new(CountingInterrupt::new());
            let dev = AcpiPm::new(reset.clone(), off.clone());
            Pm { dev, reset, off }
        }

        /// (resets, power-offs) so far.
        fn counts(&self) -> (u64, u64) {
            (self.reset.count(), self.off.count())
        }
    }

    #[test]
    fn s5_with_slp_en_powers_off_once() {
        let mut pm = Pm::new();
        // What ACPICA writes: SLP_TYP 5 << 2 | SLP_EN.
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[0x34]);
        assert_eq!(pm.counts(), (0, 1));
    }

    #[test]
    fn reserved_bits_do_not_hide_an_s5_request() {
        let mut pm = Pm::new();
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[0x34 | 0x80 | 0x01]);
        assert_eq!(pm.counts(), (0, 1));
    }

    #[test]
    fn reset_value_resets_once() {
        let mut pm = Pm::new();
        pm.dev.write(RESET_OFFSET, &[RESET_VALUE]);
        assert_eq!(pm.counts(), (1, 0));
    }

    #[test]
    fn other_sleep_types_or_no_slp_en_do_nothing() {
        let mut pm = Pm::new();
        for sleep_type in (0..8u8).filter(|t| *t != S5_SLEEP_TYPE) {
            pm.dev.write(
                SLEEP_CONTROL_OFFSET,
                &[sleep_type << SLP_TYP_SHIFT | SLP_EN],
            );
        }
        pm.dev
            .write(SLEEP_CONTROL_OFFSET, &[S5_SLEEP_TYPE << SLP_TYP_SHIFT]);
        assert_eq!(pm.counts(), (0, 0));
    }

    #[test]
    fn other_reset_values_and_misplaced_writes_do_nothing() {
        let mut pm = Pm::new();
        for v in (0..=u8::MAX).filter(|v| *v != RESET_VALUE) {
            pm.dev.write(RESET_OFFSET, &[v]);
        }
        // The right values at the wrong register.
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[RESET_VALUE]);
        pm.dev.write(SLEEP_STATUS_OFFSET, &[0x34]);
        pm.dev.write(SLEEP_STATUS_OFFSET, &[RESET_VALUE]);
        pm.dev.write(RESET_OFFSET, &[0x34]);
        pm.dev.write(PORT_LEN, &[0x34]);
        // The right values, too wide or empty.
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[0x34, 0]);
        pm.dev.write(RESET_OFFSET, &[RESET_VALUE, 0]);
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[0x34, 0, 0, 0]);
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[]);
        assert_eq!(pm.counts(), (0, 0));
    }

    #[test]
    fn registers_read_zero_and_other_accesses_read_open_bus() {
        let mut pm = Pm::new();
        for offset in [SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET, RESET_OFFSET] {
            let mut b = [0xaa];
            pm.dev.read(offset, &mut b);
            assert_eq!(b, [0], "offset {offset}");
        }
        // Clearing WAK_STS leaves the status register reading 0.
        pm.dev.write(SLEEP_STATUS_OFFSET, &[0x80]);
        let mut b = [0xaa];
        pm.dev.read(SLEEP_STATUS_OFFSET, &mut b);
        assert_eq!(b, [0]);
        let mut wide = [0u8; 2];
        pm.dev.read(SLEEP_CONTROL_OFFSET, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
        let mut past = [0u8];
        pm.dev.read(PORT_LEN, &mut past);
        assert_eq!(past, [0xff]);
    }

    struct Broken;

    impl Interrupt for Broken {
        fn trigger(&self) -> std::io::Result<()> {
            Err(std::io::Error::other("gone"))
        }
    }

    #[test]
    fn failing_lines_are_logged_not_fatal() {
        let mut dev = AcpiPm::new(Arc::new(Broken), Arc::new(Broken));
        dev.write(SLEEP_CONTROL_OFFSET, &[0x34]);
        dev.write(RESET_OFFSET, &[RESET_VALUE]);
    }

    #[test]
    fn survives_any_access_and_the_hammer_values_trigger_nothing() {
        let mut pm = Pm::new();
        hammer(&mut pm.dev, PORT_LEN);
        // None of hammer's values is 0x34-like (SLP_EN with SLP_TYP 5) or 0x06.
        assert_eq!(pm.counts(), (0, 0));
        pm.dev.write(SLEEP_CONTROL_OFFSET, &[0x34]);
        assert_eq!(pm.counts(), (0, 1));
    }
}
