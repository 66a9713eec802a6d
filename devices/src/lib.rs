//! Emulated devices for the VMM: the I/O bus that dispatches guest port and
//! MMIO accesses, the interrupt abstraction devices raise lines through, and
//! the legacy PC devices (16550A UART, i8042, CMOS/RTC, POST debug port).
//!
//! This crate deliberately knows nothing about KVM: devices see byte-sized
//! accesses at offsets relative to their bus range and raise interrupts
//! through the [`Interrupt`] trait.

pub mod bus;
pub mod interrupt;
pub mod legacy;
pub mod output;
pub mod pci_hotplug;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use interrupt::{CountingInterrupt, EventFdInterrupt, Interrupt};
pub use output::SharedBuffer;
