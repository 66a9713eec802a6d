//! The legacy PC devices on the port bus: COM1, i8042, CMOS/RTC and the debug port.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::legacy::{serial::SERIAL_PORT_LEN, Cmos, DebugPort, Serial, I8042};
use devices::{BusError, EventFdInterrupt, Interrupt};
use hypervisor::Vm;

use crate::config::SerialConfig;
use crate::vcpu::exit::Buses;
use crate::vcpu::{ExitSignal, VmExitReason};

pub const COM1_PORT: u64 = 0x3f8;
pub const COM1_GSI: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot open the serial output file {path}: {source}")]
    SerialFile { path: String, source: std::io::Error },
    #[error("creating an interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("wiring the serial interrupt: {0}")]
    Irqfd(#[from] hypervisor::HypervisorError),
    #[error("placing a legacy device on the port bus: {0}")]
    Bus(#[from] BusError),
}

/// The i8042's reset line ends the VM as a reset.
struct ResetLine(Arc<ExitSignal>);

impl Interrupt for ResetLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.report(VmExitReason::Reset);
        Ok(())
    }
}

/// Handles the VMM keeps to legacy devices after setup.
pub struct LegacyDevices {
    pub serial: Option<Arc<Mutex<Serial>>>,
}

fn serial_output(cfg: &SerialConfig) -> Result<Option<Box<dyn Write + Send>>, LegacyError> {
    Ok(match cfg {
        SerialConfig::Tty => Some(Box::new(std::io::stdout())),
        SerialConfig::File(p) => Some(Box::new(File::create(p).map_err(|source| LegacyError::SerialFile {
            path: p.display().to_string(),
            source,
        })?)),
        SerialConfig::Null | SerialConfig::Off => None,
    })
}

/// Create the devices and put them on the port bus. `first_byte` runs when the guest first
/// transmits on COM1 (first light).
pub fn setup(
    vm: &dyn Vm,
    buses: &Buses,
    serial_cfg: &SerialConfig,
    ram: (u64, u64),
    exit: Arc<ExitSignal>,
    start: Instant,
    first_byte: Box<dyn FnOnce() + Send>,
) -> Result<LegacyDevices, LegacyError> {
    let serial = if *serial_cfg == SerialConfig::Off {
        None
    } else {
        let irq = EventFdInterrupt::new().map_err(LegacyError::EventFd)?;
        vm.register_irqfd(irq.eventfd(), COM1_GSI)?;
        let mut s = Serial::new(Arc::new(irq), serial_output(serial_cfg)?);
        s.set_first_byte_hook(first_byte);
        let s = Arc::new(Mutex::new(s));
        buses.pio.insert(s.clone(), COM1_PORT, SERIAL_PORT_LEN)?;
        Some(s)
    };
    buses.pio.insert(Arc::new(Mutex::new(I8042::new(Arc::new(ResetLine(exit))))), 0x60, 5)?;
    buses.pio.insert(Arc::new(Mutex::new(Cmos::new(ram.0, ram.1))), 0x70, 2)?;
    buses.pio.insert(Arc::new(Mutex::new(DebugPort::new(start))), 0x80, 1)?;
    Ok(LegacyDevices { serial })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;

    #[test]
    fn i8042_reset_command_ends_the_vm_as_reset_and_serial_irq_is_gsi4() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let exit = Arc::new(ExitSignal::new().unwrap());
        setup(vm.as_ref(), &buses, &SerialConfig::Null, (128 << 20, 0), exit.clone(), Instant::now(), Box::new(|| {})).unwrap();
        assert!(hv.calls().contains(&Call::RegisterIrqfd { gsi: 4, resample: false }));
        assert!(buses.pio.write(0x64, &[0xfe]));
        assert_eq!(exit.reason(), Some(VmExitReason::Reset));
        // The serial port answers: LSR shows the transmitter empty.
        let mut lsr = [0u8];
        assert!(buses.pio.read(0x3fd, &mut lsr));
        assert_ne!(lsr[0] & 0x20, 0);
    }

    #[test]
    fn serial_off_leaves_com1_unclaimed() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let exit = Arc::new(ExitSignal::new().unwrap());
        let d = setup(vm.as_ref(), &buses, &SerialConfig::Off, (128 << 20, 0), exit, Instant::now(), Box::new(|| {})).unwrap();
        assert!(d.serial.is_none());
        assert!(!buses.pio.write(0x3f8, b"x"));
    }
}
