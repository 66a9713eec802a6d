//! The legacy PC devices on the port bus: COM1, i8042, CMOS/RTC, the debug port and the
//! ACPI PM registers (sleep control/status and reset, which the FADT points at).

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::legacy::{acpi_pm, serial::SERIAL_PORT_LEN, AcpiPm, Cmos, DebugPort, Serial, I8042};
use devices::{BusError, EventFdInterrupt, Interrupt};
use hypervisor::Vm;

use crate::config::SerialConfig;
use crate::vcpu::exit::Buses;
use crate::vcpu::{ExitSignal, VmExitReason};

pub const COM1_PORT: u64 = 0x3f8;
pub const COM1_GSI: u32 = 4;
/// The IOAPIC input of the ACPI Generic Event Device that presses the power button.
pub const POWER_BUTTON_GSI: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot open the serial output file {path}: {source}")]
    SerialFile {
        path: String,
        source: std::io::Error,
    },
    #[error("creating an interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("wiring the serial interrupt: {0}")]
    Irqfd(#[from] hypervisor::HypervisorError),
    #[error("placing a legacy device on the port bus: {0}")]
    Bus(#[from] BusError),
    #[error("restoring the serial port: {0}")]
    SerialState(String),
}

/// The i8042's reset line ends the VM as a reset.
struct ResetLine(Arc<ExitSignal>);

impl Interrupt for ResetLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.report(VmExitReason::Reset);
        Ok(())
    }
}

/// The ACPI PM device's power-off (S5) line ends the VM as a power-off.
struct PowerOffLine(Arc<ExitSignal>);

impl Interrupt for PowerOffLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.report(VmExitReason::PowerOff);
        Ok(())
    }
}

/// Where the ACPI PM device's registers are and what it decodes, for the FADT and DSDT.
pub fn acpi_pm_ports() -> arch::PmPorts {
    let port = |offset: u64| acpi_pm::PORT_BASE + offset as u16;
    arch::PmPorts {
        sleep_control: port(acpi_pm::SLEEP_CONTROL_OFFSET),
        sleep_status: port(acpi_pm::SLEEP_STATUS_OFFSET),
        reset: port(acpi_pm::RESET_OFFSET),
        reset_value: acpi_pm::RESET_VALUE,
        s5_sleep_type: acpi_pm::S5_SLEEP_TYPE,
    }
}

/// COM1 for the DSDT, unless the serial port is off (then it is not on the bus).
pub fn acpi_serial(cfg: &SerialConfig) -> Option<arch::SerialPort> {
    (*cfg != SerialConfig::Off).then_some(arch::SerialPort {
        port: COM1_PORT as u16,
        gsi: COM1_GSI,
    })
}

/// Handles the VMM keeps to legacy devices after setup.
pub struct LegacyDevices {
    pub serial: Option<Arc<Mutex<Serial>>>,
    /// The RTC/CMOS, whose registers a snapshot saves.
    pub cmos: Arc<Mutex<Cmos>>,
    /// Raises the ACPI GED interrupt: the guest sees its power button pressed.
    pub power_button: Arc<dyn Interrupt>,
}

/// The UART's output. A file is created (or truncated) when the VM first boots; after a
/// reboot (under the API) the guest's output is appended to what it wrote before.
fn serial_output(
    cfg: &SerialConfig,
    append: bool,
) -> Result<Option<Box<dyn Write + Send>>, LegacyError> {
    Ok(match cfg {
        SerialConfig::Tty => Some(Box::new(std::io::stdout())),
        SerialConfig::File(p) => Some(Box::new(open_output(p, append).map_err(|source| {
            LegacyError::SerialFile {
                path: p.display().to_string(),
                source,
            }
        })?)),
        SerialConfig::Null | SerialConfig::Off => None,
    })
}

fn open_output(p: &std::path::Path, append: bool) -> std::io::Result<File> {
    if append {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    } else {
        File::create(p)
    }
}

/// COM1's configuration, and whether its file is appended to (a reboot) or created.
pub struct SerialSetup<'a> {
    pub cfg: &'a SerialConfig,
    pub append: bool,
    /// The UART's registers from a snapshot being restored.
    pub state: Option<&'a devices::legacy::serial::SerialState>,
}

/// Create the devices and put them on the port bus. `first_byte` runs when the guest first
/// transmits on COM1 (first light).
pub fn setup(
    vm: &dyn Vm,
    buses: &Buses,
    serial: SerialSetup,
    ram: (u64, u64),
    exit: Arc<ExitSignal>,
    start: Instant,
    first_byte: Box<dyn FnOnce() + Send>,
) -> Result<LegacyDevices, LegacyError> {
    let serial_cfg = serial.cfg;
    let serial = if *serial_cfg == SerialConfig::Off {
        None
    } else {
        let irq = EventFdInterrupt::new().map_err(LegacyError::EventFd)?;
        vm.register_irqfd(irq.eventfd(), COM1_GSI)?;
        let out = serial_output(serial.cfg, serial.append)?;
        let mut s = match serial.state {
            Some(state) => Serial::from_state(Arc::new(irq), out, state)
                .map_err(|e| LegacyError::SerialState(e.to_string()))?,
            None => Serial::new(Arc::new(irq), out),
        };
        s.set_first_byte_hook(first_byte);
        let s = Arc::new(Mutex::new(s));
        buses.pio.insert(s.clone(), COM1_PORT, SERIAL_PORT_LEN)?;
        Some(s)
    };
    buses.pio.insert(
        Arc::new(Mutex::new(I8042::new(Arc::new(ResetLine(exit.clone()))))),
        0x60,
        5,
    )?;
    let cmos = Arc::new(Mutex::new(Cmos::new(ram.0, ram.1)));
    buses.pio.insert(cmos.clone(), 0x70, 2)?;
    buses
        .pio
        .insert(Arc::new(Mutex::new(DebugPort::new(start))), 0x80, 1)?;
    let pm = AcpiPm::new(
        Arc::new(ResetLine(exit.clone())),
        Arc::new(PowerOffLine(exit)),
    );
    buses.pio.insert(
        Arc::new(Mutex::new(pm)),
        u64::from(acpi_pm::PORT_BASE),
        acpi_pm::PORT_LEN,
    )?;
    let power_button = EventFdInterrupt::new().map_err(LegacyError::EventFd)?;
    vm.register_irqfd(power_button.eventfd(), POWER_BUTTON_GSI)?;
    Ok(LegacyDevices {
        serial,
        cmos,
        power_button: Arc::new(power_button),
    })
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
        setup(
            vm.as_ref(),
            &buses,
            SerialSetup {
                cfg: &SerialConfig::Null,
                append: false,
                state: None,
            },
            (128 << 20, 0),
            exit.clone(),
            Instant::now(),
            Box::new(|| {}),
        )
        .unwrap();
        assert!(hv.calls().contains(&Call::RegisterIrqfd {
            gsi: 4,
            resample: false
        }));
        assert!(buses.pio.write(0x64, &[0xfe]));
        assert_eq!(exit.reason(), Some(VmExitReason::Reset));
        // The serial port answers: LSR shows the transmitter empty.
        let mut lsr = [0u8];
        assert!(buses.pio.read(0x3fd, &mut lsr));
        assert_ne!(lsr[0] & 0x20, 0);
    }

    fn setup_with_exit() -> (Buses, Arc<ExitSignal>) {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let exit = Arc::new(ExitSignal::new().unwrap());
        setup(
            vm.as_ref(),
            &buses,
            SerialSetup {
                cfg: &SerialConfig::Null,
                append: false,
                state: None,
            },
            (128 << 20, 0),
            exit.clone(),
            Instant::now(),
            Box::new(|| {}),
        )
        .unwrap();
        (buses, exit)
    }

    /// The FADT the guest gets, read back from guest memory: (flags, reset port, reset value,
    /// sleep control port). Offsets from ACPI 6.5 table 5.9.
    fn fadt_from_guest() -> (u32, u16, u8, u16) {
        use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
        let layout = arch::MemoryLayout::new(128 << 20, 40).unwrap();
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&layout.ram_ranges()).unwrap();
        let cfg = arch::AcpiConfig {
            segments: &[],
            segment0_node: None,
            pci_buses: 0,
            num_vcpus: 1,
            layout: &layout,
            pm: acpi_pm_ports(),
            serial: None,
            power_button_gsi: None,
            pci_hotplug: None,
        };
        let rsdp = arch::create_acpi_tables(&mem, &cfg).unwrap();
        let u64_at = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        let xsdt = u64_at(rsdp + 24);
        let fadt = u64_at(xsdt + 36);
        assert_eq!(
            mem.read_obj::<[u8; 4]>(GuestAddress(fadt)).unwrap(),
            *b"FACP"
        );
        let flags = mem.read_obj::<u32>(GuestAddress(fadt + 112)).unwrap();
        let reset = u64_at(fadt + 116 + 4) as u16;
        let reset_value = mem.read_obj::<u8>(GuestAddress(fadt + 128)).unwrap();
        let sleep_control = u64_at(fadt + 244 + 4) as u16;
        (flags, reset, reset_value, sleep_control)
    }

    #[test]
    fn acpi_s5_from_the_fadts_sleep_control_register_ends_the_vm_as_power_off() {
        let (flags, _, _, sleep_control) = fadt_from_guest();
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        let (buses, exit) = setup_with_exit();
        // What Linux writes for S5: \_S5_'s SLP_TYP << 2 | SLP_EN.
        let value = (acpi_pm_ports().s5_sleep_type << 2) | 0x20;
        assert_eq!(value, 0x34);
        assert!(buses.pio.write(u64::from(sleep_control), &[value]));
        assert_eq!(exit.reason(), Some(VmExitReason::PowerOff));
    }

    #[test]
    fn acpi_reset_register_from_the_fadt_ends_the_vm_as_reset() {
        let (flags, reset, reset_value, _) = fadt_from_guest();
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        let (buses, exit) = setup_with_exit();
        assert!(buses
            .pio
            .write(u64::from(reset), &[reset_value.wrapping_add(1)]));
        assert_eq!(exit.reason(), None);
        assert!(buses.pio.write(u64::from(reset), &[reset_value]));
        assert_eq!(exit.reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn acpi_serial_follows_the_serial_config() {
        assert_eq!(
            acpi_serial(&SerialConfig::Null),
            Some(arch::SerialPort {
                port: 0x3f8,
                gsi: 4
            })
        );
        assert_eq!(acpi_serial(&SerialConfig::Off), None);
    }

    #[test]
    fn serial_off_leaves_com1_unclaimed() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let exit = Arc::new(ExitSignal::new().unwrap());
        let d = setup(
            vm.as_ref(),
            &buses,
            SerialSetup {
                cfg: &SerialConfig::Off,
                append: false,
                state: None,
            },
            (128 << 20, 0),
            exit,
            Instant::now(),
            Box::new(|| {}),
        )
        .unwrap();
        assert!(d.serial.is_none());
        assert!(!buses.pio.write(0x3f8, b"x"));
    }
}
