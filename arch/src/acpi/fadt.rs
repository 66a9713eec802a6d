//! The Fixed ACPI Description Table (ACPI 6.5 section 5.2.9), revision 6.5, for a
//! hardware-reduced platform: no SCI, PM1, PM timer, GPE blocks or FACS. Sleep goes
//! through the sleep control/status registers and reset through the reset register,
//! all 8-bit registers in system I/O space.

use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{to_bytes, PmPorts, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// IAPC_BOOT_ARCH: ISA devices (COM1, CMOS) are present.
pub const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// IAPC_BOOT_ARCH: there is an i8042 at 0x60/0x64 (its reset line reboots).
pub const IAPC_8042: u16 = 1 << 1;
/// IAPC_BOOT_ARCH: no VGA: the OS must not probe for it.
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IAPC_BOOT_ARCH: the OS must not enable PCIe ASPM.
pub const IAPC_PCIE_ASPM_CONTROLS: u16 = 1 << 4;
/// What the FADT sets: MSI stays allowed and the CMOS RTC present.
pub const IAPC_BOOT_ARCH: u16 =
    IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_PCIE_ASPM_CONTROLS;

/// An 8-bit register at I/O `port`, accessed a byte at a time.
fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT pointing at the DSDT at `dsdt_addr` (64-bit `X_DSDT` only), with the PM
/// registers at `pm`.
pub(super) fn build(dsdt_addr: u64, pm: &PmPorts) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .preferred_pm_profile(PmProfile::EnterpriseServer)
        .flag(Flags::Wbinvd)
        // No fixed-feature buttons (there are none on a hardware-reduced platform).
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .flag(Flags::HwReducedAcpi);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_register(pm.reset);
    fadt.reset_value = pm.reset_value;
    fadt.sleep_control_reg = io_register(pm.sleep_control);
    fadt.sleep_status_reg = io_register(pm.sleep_status);
    to_bytes(&fadt.finalize())
}

#[cfg(test)]
pub(crate) mod offsets {
    //! Field offsets from ACPI 6.5 table 5.9, written out independently of the crate.
    pub const FIRMWARE_CTRL: usize = 36;
    pub const DSDT: usize = 40;
    pub const PREFERRED_PM_PROFILE: usize = 45;
    pub const SCI_INT: usize = 46;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const IAPC_BOOT_ARCH: usize = 109;
    pub const FLAGS: usize = 112;
    pub const RESET_REG: usize = 116;
    pub const RESET_VALUE: usize = 128;
    pub const MINOR_VERSION: usize = 131;
    pub const X_FIRMWARE_CTRL: usize = 132;
    pub const X_DSDT: usize = 140;
    pub const SLEEP_CONTROL_REG: usize = 244;
    pub const SLEEP_STATUS_REG: usize = 256;
    pub const LEN: usize = 276;
}

#[cfg(test)]
pub(crate) mod flags {
    pub const WBINVD: u32 = 1 << 0;
    pub const PWR_BUTTON: u32 = 1 << 4;
    pub const SLP_BUTTON: u32 = 1 << 5;
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

#[cfg(test)]
mod tests {
    use super::offsets::*;
    use super::*;
    use crate::acpi::test_util::{assert_header, u16_at, u32_at, u64_at};

    const PM: PmPorts = PmPorts {
        sleep_control: 0x600,
        sleep_status: 0x601,
        reset: 0x602,
        reset_value: 0x06,
        s5_sleep_type: 5,
    };

    /// (space, bit width, bit offset, access size, address) of the GAS at `off`.
    fn gas(t: &[u8], off: usize) -> (u8, u8, u8, u8, u64) {
        (
            t[off],
            t[off + 1],
            t[off + 2],
            t[off + 3],
            u64_at(t, off + 4),
        )
    }

    #[test]
    fn fadt_is_revision_6_5_hardware_reduced_with_x_dsdt() {
        let f = build(0xe_0040, &PM);
        assert_header(&f, b"FACP", 6);
        assert_eq!(f.len(), LEN);
        assert_eq!(f[MINOR_VERSION], 5);
        assert_eq!(u64_at(&f, X_DSDT), 0xe_0040);
        assert_eq!(u32_at(&f, DSDT), 0, "only the 64-bit pointer is set");
        assert_eq!(u32_at(&f, FIRMWARE_CTRL), 0, "no FACS");
        assert_eq!(u64_at(&f, X_FIRMWARE_CTRL), 0, "no FACS");
        assert_eq!(u16_at(&f, SCI_INT), 0, "no SCI");
        assert_eq!(u32_at(&f, PM1A_CNT_BLK), 0, "no PM1 block");
        assert_eq!(f[PREFERRED_PM_PROFILE], 4, "enterprise server");
        let fl = u32_at(&f, FLAGS);
        for (bit, name) in [
            (flags::HW_REDUCED_ACPI, "HW_REDUCED_ACPI"),
            (flags::RESET_REG_SUP, "RESET_REG_SUP"),
            (flags::WBINVD, "WBINVD"),
            (flags::PWR_BUTTON, "PWR_BUTTON"),
            (flags::SLP_BUTTON, "SLP_BUTTON"),
        ] {
            assert_ne!(fl & bit, 0, "{name} in {fl:#x}");
        }
        let expected = flags::HW_REDUCED_ACPI
            | flags::RESET_REG_SUP
            | flags::WBINVD
            | flags::PWR_BUTTON
            | flags::SLP_BUTTON;
        assert_eq!(fl, expected, "no other flag");
    }

    #[test]
    fn iapc_boot_arch_has_8042_no_vga_no_aspm_and_keeps_cmos_and_msi() {
        let f = build(0, &PM);
        let arch = u16_at(&f, offsets::IAPC_BOOT_ARCH);
        assert_eq!(arch, 0b1_0111);
        assert_eq!(arch & (1 << 3), 0, "MSI must stay allowed");
        assert_eq!(arch & (1 << 5), 0, "the CMOS RTC is present");
    }

    #[test]
    fn reset_and_sleep_registers_are_8_bit_io_ports() {
        let f = build(0, &PM);
        assert_eq!(gas(&f, RESET_REG), (1, 8, 0, 1, 0x602));
        assert_eq!(f[RESET_VALUE], 0x06);
        assert_eq!(gas(&f, SLEEP_CONTROL_REG), (1, 8, 0, 1, 0x600));
        assert_eq!(gas(&f, SLEEP_STATUS_REG), (1, 8, 0, 1, 0x601));
    }
}
