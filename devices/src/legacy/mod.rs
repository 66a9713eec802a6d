//! Legacy PC devices on the x86 port-I/O bus.
//!
//! | device       | base   | len | notes                                   |
//! |--------------|--------|-----|-----------------------------------------|
//! | [`Serial`]   | 0x3f8  | 8   | COM1, 16550A, IRQ 4                     |
//! | [`I8042`]    | 0x60   | 5   | offset 0 = data, 4 = status/command     |
//! | [`Cmos`]     | 0x70   | 2   | offset 0 = index, 1 = data              |
//! | [`DebugPort`]| 0x80   | 1   | POST codes                              |
//! | [`AcpiPm`]   | 0x600  | 3   | ACPI sleep control/status, reset        |
//!
//! All of them accept single-byte accesses only; other sizes (and offsets
//! outside the range) are ignored on write and read as all-ones, like an
//! undecoded ISA port.

pub mod acpi_pm;
mod clock;
pub mod cmos;
pub mod debug_port;
pub mod i8042;
pub mod serial;

pub use acpi_pm::AcpiPm;
pub use cmos::Cmos;
pub use debug_port::{DebugPort, DebugPortRange};
pub use i8042::I8042;
pub use serial::Serial;

/// What a read of an undecoded ISA port returns: all ones.
pub(crate) fn read_open_bus(data: &mut [u8]) {
    data.fill(0xff);
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::BusDevice;

    /// Offsets from 0 to a bit past `range_len`, plus far-away ones.
    fn offsets(range_len: u64) -> impl Iterator<Item = u64> {
        (0..range_len + 4).chain([0x100, u64::MAX - 1, u64::MAX])
    }

    /// Throws 0, 1, 2, 4 and 8-byte reads and writes of assorted values at
    /// every offset of the range (and beyond); the device must not panic.
    pub(crate) fn hammer(device: &mut dyn BusDevice, range_len: u64) {
        for offset in offsets(range_len) {
            for size in [0usize, 1, 2, 4, 8] {
                for value in [0x00u8, 0x01, 0x20, 0x55, 0x60, 0x80, 0xaa, 0xd3, 0xfe, 0xff] {
                    let mut buf = vec![value; size];
                    device.read(offset, &mut buf);
                    device.write(offset, &vec![value; size]);
                    device.read(offset, &mut buf);
                }
            }
        }
    }
}
