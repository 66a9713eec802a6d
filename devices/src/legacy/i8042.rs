//! A minimal i8042 keyboard controller: enough for Linux's i8042 driver to
//! probe it without hanging, and the "pulse reset line" command the kernel
//! uses to reboot (`reboot=k`).
//!
//! Insert as one range, base 0x60, len 5:
//!
//! | offset | port | read                         | write              |
//! |--------|------|------------------------------|--------------------|
//! | 0      | 0x60 | output buffer (0 when empty) | command parameter  |
//! | 1      | 0x61 | 0x20 (PIT channel 2 high)    | ignored            |
//! | 2, 3   |      | 0xff                         | ignored            |
//! | 4      | 0x64 | status                       | controller command |
//!
//! Port 0x61 reads 0x20, as in kvmtool and Cloud Hypervisor, so that
//! Linux's PIT-based TSC calibration loop (which waits for bit 5) ends.
//! No keyboard or mouse is attached: bytes for the devices are dropped.
//!
//! Interrupts are optional ([`I8042::with_irqs`]): without an AUX line
//! (IRQ 12), Linux's AUX IRQ probe waits 250 ms before giving up on the
//! mouse port; pass `i8042.noaux` on the kernel command line, or wire it.

use std::collections::VecDeque;
use std::sync::Arc;

use log::{debug, warn};

use super::read_open_bus;
use crate::{BusDevice, Interrupt};

/// Offset of the data port (0x60) in the range.
pub const DATA_OFFSET: u64 = 0;
/// Offset of port 0x61 (system control port B) in the range.
pub const PORT_B_OFFSET: u64 = 1;
/// Offset of the status/command port (0x64) in the range.
pub const COMMAND_OFFSET: u64 = 4;

// Status register bits.
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_AUX_DATA: u8 = 0x20;

// Controller configuration byte ("command byte") bits.
const CTR_KBD_INT: u8 = 0x01;
const CTR_AUX_INT: u8 = 0x02;
const CTR_KBD_DISABLE: u8 = 0x10;
const CTR_AUX_DISABLE: u8 = 0x20;
/// Keyboard interrupt, system flag, AUX disabled, scancode translation:
/// what a BIOS typically leaves behind.
const CTR_DEFAULT: u8 = 0x65;

/// Output port bit 0: system reset line (active low).
const OUTPUT_PORT_RESET: u8 = 0x01;
/// Reset line high, A20 enabled.
const OUTPUT_PORT_DEFAULT: u8 = 0x03;

const PORT_B_VALUE: u8 = 0x20;
const SELF_TEST_OK: u8 = 0x55;
const PORT_TEST_OK: u8 = 0x00;
const RAM_SIZE: usize = 0x20;
const OUTPUT_QUEUE_MAX: usize = 16;

/// What the next data-port write means, after a command that takes a
/// parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    WriteRam(u8),
    WriteOutputPort,
    EchoKeyboard,
    EchoAux,
    ToAux,
}

pub struct I8042 {
    reset: Arc<dyn Interrupt>,
    kbd_irq: Option<Arc<dyn Interrupt>>,
    aux_irq: Option<Arc<dyn Interrupt>>,
    /// Internal RAM; byte 0 is the configuration byte.
    ram: [u8; RAM_SIZE],
    output_port: u8,
    /// Bytes waiting for the guest, and whether each came from the AUX port.
    output: VecDeque<(u8, bool)>,
    pending: Pending,
}

impl I8042 {
    /// `reset` is triggered when the guest pulses the reset line.
    pub fn new(reset: Arc<dyn Interrupt>) -> Self {
        Self::with_irqs(reset, None, None)
    }

    /// Like [`I8042::new`], also raising `kbd_irq` (IRQ 1) / `aux_irq`
    /// (IRQ 12) when a byte from that port reaches the head of the output
    /// buffer and the configuration byte enables that port's interrupt.
    pub fn with_irqs(
        reset: Arc<dyn Interrupt>,
        kbd_irq: Option<Arc<dyn Interrupt>>,
        aux_irq: Option<Arc<dyn Interrupt>>,
    ) -> Self {
        let mut ram = [0u8; RAM_SIZE];
        ram[0] = CTR_DEFAULT;
        I8042 {
            reset,
            kbd_irq,
            aux_irq,
            ram,
            output_port: OUTPUT_PORT_DEFAULT,
            output: VecDeque::new(),
            pending: Pending::None,
        }
    }

    fn ctr_mut(&mut self) -> &mut u8 {
        &mut self.ram[0]
    }

    fn push_output(&mut self, byte: u8, aux: bool) {
        if self.output.len() >= OUTPUT_QUEUE_MAX {
            debug!("i8042: output buffer full, dropping {byte:#x}");
            return;
        }
        self.output.push_back((byte, aux));
        if self.output.len() == 1 {
            self.interrupt_for_head();
        }
    }

    /// Raises the interrupt of the port whose byte is now at the head of
    /// the output buffer, if that port's interrupt is enabled.
    fn interrupt_for_head(&self) {
        let Some(&(_, aux)) = self.output.front() else {
            return;
        };
        let (enable_bit, irq) = if aux {
            (CTR_AUX_INT, &self.aux_irq)
        } else {
            (CTR_KBD_INT, &self.kbd_irq)
        };
        if self.ram[0] & enable_bit == 0 {
            return;
        }
        if let Some(Err(e)) = irq.as_ref().map(|irq| irq.trigger()) {
            warn!("i8042: failed to raise interrupt: {e}");
        }
    }

    fn status(&self) -> u8 {
        match self.output.front() {
            Some(&(_, true)) => STATUS_OUTPUT_FULL | STATUS_AUX_DATA,
            Some(&(_, false)) => STATUS_OUTPUT_FULL,
            None => 0,
        }
    }

    fn read_data(&mut self) -> u8 {
        let byte = self.output.pop_front().map_or(0, |(byte, _)| byte);
        self.interrupt_for_head();
        byte
    }

    fn request_reset(&self) {
        if let Err(e) = self.reset.trigger() {
            warn!("i8042: failed to signal reset request: {e}");
        }
    }

    fn command(&mut self, cmd: u8) {
        self.pending = Pending::None;
        match cmd {
            0x20..=0x3f => self.push_output(self.ram[usize::from(cmd & 0x1f)], false),
            0x60..=0x7f => self.pending = Pending::WriteRam(cmd & 0x1f),
            0xa7 => *self.ctr_mut() |= CTR_AUX_DISABLE,
            0xa8 => *self.ctr_mut() &= !CTR_AUX_DISABLE,
            0xa9 | 0xab => self.push_output(PORT_TEST_OK, false),
            0xaa => self.push_output(SELF_TEST_OK, false),
            0xad => *self.ctr_mut() |= CTR_KBD_DISABLE,
            0xae => *self.ctr_mut() &= !CTR_KBD_DISABLE,
            0xd0 => self.push_output(self.output_port, false),
            0xd1 => self.pending = Pending::WriteOutputPort,
            0xd2 => self.pending = Pending::EchoKeyboard,
            0xd3 => self.pending = Pending::EchoAux,
            0xd4 => self.pending = Pending::ToAux,
            // Pulse output lines: a low bit 0 pulses the reset line.
            0xf0..=0xff if cmd & OUTPUT_PORT_RESET == 0 => self.request_reset(),
            _ => debug!("i8042: ignoring command {cmd:#x}"),
        }
    }

    fn data(&mut self, value: u8) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::WriteRam(index) => self.ram[usize::from(index)] = value,
            Pending::WriteOutputPort => {
                self.output_port = value;
                if value & OUTPUT_PORT_RESET == 0 {
                    self.request_reset();
                }
            }
            Pending::EchoKeyboard => self.push_output(value, false),
            Pending::EchoAux => self.push_output(value, true),
            Pending::ToAux => debug!("i8042: no mouse attached, dropping {value:#x}"),
            Pending::None => debug!("i8042: no keyboard attached, dropping {value:#x}"),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (DATA_OFFSET, 1) => self.read_data(),
            (PORT_B_OFFSET, 1) => PORT_B_VALUE,
            (COMMAND_OFFSET, 1) => self.status(),
            _ => {
                debug!("i8042: read of {} bytes at offset {offset:#x}", data.len());
                return read_open_bus(data);
            }
        };
        data[0] = value;
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (DATA_OFFSET, &[value]) => self.data(value),
            (COMMAND_OFFSET, &[cmd]) => self.command(cmd),
            _ => debug!("i8042: ignoring {}-byte write at {offset:#x}", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::hammer;
    use crate::CountingInterrupt;

    fn device() -> (I8042, Arc<CountingInterrupt>) {
        let reset = Arc::new(CountingInterrupt::new());
        (I8042::new(reset.clone()), reset)
    }

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut data = [0u8; 1];
        dev.read(offset, &mut data);
        data[0]
    }

    /// Issues `cmd` and returns the byte it produced, as Linux's
    /// `i8042_command` does (wait for OBF, then read the data port).
    fn command_with_result(dev: &mut I8042, cmd: u8) -> Option<u8> {
        dev.write(COMMAND_OFFSET, &[cmd]);
        (read(dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0).then(|| read(dev, DATA_OFFSET))
    }

    #[test]
    fn reset_command_triggers_reset_exactly_once() {
        let (mut dev, reset) = device();
        dev.write(COMMAND_OFFSET, &[0xfe]);
        assert_eq!(reset.count(), 1);
        dev.write(DATA_OFFSET, &[0xfe]);
        dev.write(COMMAND_OFFSET, &[0xff]);
        assert_eq!(reset.count(), 1);
    }

    #[test]
    fn writing_output_port_with_reset_low_requests_reset() {
        let (mut dev, reset) = device();
        dev.write(COMMAND_OFFSET, &[0xd1]);
        dev.write(DATA_OFFSET, &[0xdf]); // A20 on, reset line high
        assert_eq!(reset.count(), 0);
        assert_eq!(command_with_result(&mut dev, 0xd0), Some(0xdf));
        dev.write(COMMAND_OFFSET, &[0xd1]);
        dev.write(DATA_OFFSET, &[0xde]);
        assert_eq!(reset.count(), 1);
    }

    #[test]
    fn self_test_returns_0x55_and_port_tests_return_0() {
        let (mut dev, _) = device();
        assert_eq!(command_with_result(&mut dev, 0xaa), Some(0x55));
        assert_eq!(command_with_result(&mut dev, 0xab), Some(0x00));
        assert_eq!(command_with_result(&mut dev, 0xa9), Some(0x00));
    }

    #[test]
    fn status_is_zero_when_no_data_is_pending() {
        let (mut dev, _) = device();
        assert_eq!(read(&mut dev, COMMAND_OFFSET), 0);
        dev.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(read(&mut dev, COMMAND_OFFSET), STATUS_OUTPUT_FULL);
        read(&mut dev, DATA_OFFSET);
        assert_eq!(read(&mut dev, COMMAND_OFFSET), 0);
        assert_eq!(read(&mut dev, DATA_OFFSET), 0);
    }

    #[test]
    fn command_byte_round_trips_through_0x60_and_0x20() {
        let (mut dev, _) = device();
        assert_eq!(command_with_result(&mut dev, 0x20), Some(CTR_DEFAULT));
        dev.write(COMMAND_OFFSET, &[0x60]);
        dev.write(DATA_OFFSET, &[0x47]);
        assert_eq!(command_with_result(&mut dev, 0x20), Some(0x47));
    }

    #[test]
    fn port_enable_disable_commands_toggle_command_byte_bits() {
        let (mut dev, _) = device();
        dev.write(COMMAND_OFFSET, &[0xa8]);
        assert_eq!(
            command_with_result(&mut dev, 0x20).unwrap() & CTR_AUX_DISABLE,
            0
        );
        dev.write(COMMAND_OFFSET, &[0xa7]);
        assert_ne!(
            command_with_result(&mut dev, 0x20).unwrap() & CTR_AUX_DISABLE,
            0
        );
        dev.write(COMMAND_OFFSET, &[0xad]);
        assert_ne!(
            command_with_result(&mut dev, 0x20).unwrap() & CTR_KBD_DISABLE,
            0
        );
        dev.write(COMMAND_OFFSET, &[0xae]);
        assert_eq!(
            command_with_result(&mut dev, 0x20).unwrap() & CTR_KBD_DISABLE,
            0
        );
    }

    #[test]
    fn aux_loopback_echoes_with_the_aux_status_bit() {
        let (mut dev, _) = device();
        dev.write(COMMAND_OFFSET, &[0xd3]);
        dev.write(DATA_OFFSET, &[0x5a]);
        assert_eq!(
            read(&mut dev, COMMAND_OFFSET),
            STATUS_OUTPUT_FULL | STATUS_AUX_DATA
        );
        assert_eq!(read(&mut dev, DATA_OFFSET), 0x5a);
    }

    #[test]
    fn bytes_for_absent_devices_and_unknown_commands_are_dropped() {
        let (mut dev, reset) = device();
        dev.write(COMMAND_OFFSET, &[0xd4]);
        dev.write(DATA_OFFSET, &[0xf4]);
        dev.write(DATA_OFFSET, &[0xff]);
        dev.write(COMMAND_OFFSET, &[0xc8]);
        assert_eq!(read(&mut dev, COMMAND_OFFSET), 0);
        assert_eq!(reset.count(), 0);
    }

    #[test]
    fn output_queue_is_bounded() {
        let (mut dev, _) = device();
        for _ in 0..1000 {
            dev.write(COMMAND_OFFSET, &[0xaa]);
        }
        let mut drained = 0;
        while read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0 {
            read(&mut dev, DATA_OFFSET);
            drained += 1;
        }
        assert_eq!(drained, OUTPUT_QUEUE_MAX);
    }

    #[test]
    fn interrupts_fire_for_the_port_that_produced_the_byte_when_enabled() {
        let reset = Arc::new(CountingInterrupt::new());
        let kbd = Arc::new(CountingInterrupt::new());
        let aux = Arc::new(CountingInterrupt::new());
        let mut dev = I8042::with_irqs(reset, Some(kbd.clone()), Some(aux.clone()));
        // Default configuration: keyboard interrupt on, AUX interrupt off.
        dev.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!(kbd.count(), 1);
        dev.write(COMMAND_OFFSET, &[0xd3]);
        dev.write(DATA_OFFSET, &[0xa5]);
        read(&mut dev, DATA_OFFSET);
        read(&mut dev, DATA_OFFSET);
        assert_eq!((kbd.count(), aux.count()), (1, 0));
        // Enable the AUX interrupt, as Linux's AUX IRQ probe does.
        dev.write(COMMAND_OFFSET, &[0x60]);
        dev.write(DATA_OFFSET, &[CTR_KBD_INT | CTR_AUX_INT]);
        dev.write(COMMAND_OFFSET, &[0xd3]);
        dev.write(DATA_OFFSET, &[0xa5]);
        assert_eq!((kbd.count(), aux.count()), (1, 1));
        // Neither interrupt once the configuration byte disables both.
        read(&mut dev, DATA_OFFSET);
        dev.write(COMMAND_OFFSET, &[0x60]);
        dev.write(DATA_OFFSET, &[0]);
        dev.write(COMMAND_OFFSET, &[0xaa]);
        assert_eq!((kbd.count(), aux.count()), (1, 1));
    }

    #[test]
    fn port_0x61_reports_pit_channel_2_output_high() {
        let (mut dev, _) = device();
        assert_eq!(read(&mut dev, PORT_B_OFFSET), 0x20);
        assert_eq!(read(&mut dev, 2), 0xff);
    }

    #[test]
    fn garbage_offsets_and_sizes_do_not_panic() {
        let (mut dev, _) = device();
        hammer(&mut dev, 5);
        while read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0 {
            read(&mut dev, DATA_OFFSET);
        }
        assert_eq!(command_with_result(&mut dev, 0xaa), Some(0x55));
    }
}
