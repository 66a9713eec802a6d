//! A 16550A UART (COM1: ports 0x3f8..0x400, IRQ 4), built on
//! `vm_superio::Serial`. Insert as one range: base 0x3f8, len 8.

use std::io::{self, Write};
use std::sync::Arc;

use log::debug;
use vm_superio::serial::Error as UartError;
use vm_superio::Trigger;

use super::read_open_bus;
use crate::{BusDevice, Interrupt};

/// Number of ports (bytes) the UART decodes.
pub const SERIAL_PORT_LEN: u64 = 8;

/// Adapts an [`Interrupt`] to vm-superio's `Trigger`.
struct IrqTrigger(Arc<dyn Interrupt>);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

/// Where transmitted bytes go, calling the first-byte hook before the
/// first one is passed on.
struct Output {
    out: Option<Box<dyn Write + Send>>,
    first_byte_hook: Option<Box<dyn FnOnce() + Send>>,
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            if let Some(hook) = self.first_byte_hook.take() {
                hook();
            }
        }
        match self.out.as_mut() {
            Some(out) => out.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |out| out.flush())
    }
}

type Uart = vm_superio::Serial<IrqTrigger, vm_superio::serial::NoEvents, Output>;

/// The UART's registers and receive FIFO (snapshots).
pub use vm_superio::serial::SerialState;

pub struct Serial {
    uart: Uart,
}

impl Serial {
    /// `out`: where guest-transmitted bytes go (stdout, a file, or `None`
    /// to drop them). `irq`: raised per the UART's IER/IIR rules (THR
    /// empty, data ready).
    pub fn new(irq: Arc<dyn Interrupt>, out: Option<Box<dyn Write + Send>>) -> Self {
        let output = Output {
            out,
            first_byte_hook: None,
        };
        Serial {
            uart: vm_superio::Serial::new(IrqTrigger(irq), output),
        }
    }

    /// A UART in `state` (a restored snapshot); an interrupt it had pending is raised again.
    /// Fails on a state that cannot be (a receive FIFO over 64 bytes) or when raising fails.
    pub fn from_state(
        irq: Arc<dyn Interrupt>,
        out: Option<Box<dyn Write + Send>>,
        state: &SerialState,
    ) -> io::Result<Self> {
        let output = Output {
            out,
            first_byte_hook: None,
        };
        let uart = vm_superio::Serial::from_state(
            state,
            IrqTrigger(irq),
            vm_superio::serial::NoEvents,
            output,
        )
        .map_err(|e| match e {
            UartError::Trigger(e) | UartError::IOError(e) => e,
            UartError::FullFifo => io::Error::new(
                io::ErrorKind::InvalidData,
                "the saved receive FIFO holds more than 64 bytes",
            ),
        })?;
        Ok(Serial { uart })
    }

    /// The UART's registers and receive FIFO now.
    pub fn state(&self) -> SerialState {
        self.uart.state()
    }

    /// Host input (stdin) for the guest to read; returns how many bytes
    /// were accepted (fewer than offered, or 0, when the FIFO fills up, and
    /// 0 in loopback mode). Errors only when raising the interrupt fails.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(accepted) => Ok(accepted),
            Err(UartError::FullFifo) => Ok(0),
            Err(UartError::Trigger(e)) | Err(UartError::IOError(e)) => Err(e),
        }
    }

    /// How many more input bytes the receive FIFO can take right now.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Calls `hook` once, just before the first byte the guest transmits
    /// is written out (used to measure "first light"). Replaces any hook
    /// that has not fired yet; a hook set after the first byte fires on
    /// the next one.
    pub fn set_first_byte_hook(&mut self, hook: Box<dyn FnOnce() + Send>) {
        self.uart.writer_mut().first_byte_hook = Some(hook);
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data.len()) {
            (Ok(port), 1) if u64::from(port) < SERIAL_PORT_LEN => data[0] = self.uart.read(port),
            _ => {
                debug!("serial: read of {} bytes at offset {offset:#x}", data.len());
                read_open_bus(data);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (u8::try_from(offset), data) {
            (Ok(port), &[value]) if u64::from(port) < SERIAL_PORT_LEN => {
                if let Err(e) = self.uart.write(port, value) {
                    debug!("serial: write {value:#x} to port {port}: {e}");
                }
            }
            _ => debug!("serial: ignoring {}-byte write at {offset:#x}", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::hammer;
    use crate::{CountingInterrupt, SharedBuffer};
    use std::sync::atomic::{AtomicU32, Ordering};

    const THR: u64 = 0;
    const RBR: u64 = 0;
    const DLL: u64 = 0;
    const IER: u64 = 1;
    const DLM: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const LSR_DATA_READY: u8 = 0x01;
    const LSR_THR_EMPTY: u8 = 0x20;
    const IER_RDA: u8 = 0x01;
    const IER_THRE: u8 = 0x02;
    const LCR_DLAB: u8 = 0x80;

    fn serial() -> (Serial, Arc<CountingInterrupt>, SharedBuffer) {
        let irq = Arc::new(CountingInterrupt::new());
        let out = SharedBuffer::new();
        let serial = Serial::new(irq.clone(), Some(Box::new(out.clone())));
        (serial, irq, out)
    }

    fn read(serial: &mut Serial, offset: u64) -> u8 {
        let mut data = [0u8; 1];
        serial.read(offset, &mut data);
        data[0]
    }

    #[test]
    fn thr_write_reaches_the_output() {
        let (mut serial, _, out) = serial();
        for &byte in b"hi\n" {
            serial.write(THR, &[byte]);
        }
        assert_eq!(out.contents(), b"hi\n");
    }

    #[test]
    fn output_none_drops_bytes_without_error() {
        let irq = Arc::new(CountingInterrupt::new());
        let mut serial = Serial::new(irq, None);
        serial.write(THR, b"x");
        assert_ne!(read(&mut serial, LSR) & LSR_THR_EMPTY, 0);
    }

    #[test]
    fn lsr_reports_thr_empty() {
        let (mut serial, _, _) = serial();
        assert_ne!(read(&mut serial, LSR) & LSR_THR_EMPTY, 0);
        serial.write(THR, b"a");
        assert_ne!(read(&mut serial, LSR) & LSR_THR_EMPTY, 0);
    }

    #[test]
    fn enabling_thr_empty_interrupt_fires_it() {
        let (mut serial, irq, _) = serial();
        assert_eq!(irq.count(), 0);
        serial.write(IER, &[IER_THRE]);
        assert_eq!(irq.count(), 1);
        // IIR identifies the THR-empty interrupt (0x02); reading clears it.
        assert_eq!(read(&mut serial, IIR) & 0x0f, 0x02);
        assert_eq!(read(&mut serial, IIR) & 0x0f, 0x01);
        serial.write(THR, b"a");
        assert_eq!(irq.count(), 2);
    }

    #[test]
    fn no_interrupt_while_ier_is_clear() {
        let (mut serial, irq, _) = serial();
        serial.write(THR, b"a");
        serial.enqueue_input(b"b").unwrap();
        assert_eq!(irq.count(), 0);
    }

    #[test]
    fn enqueued_input_is_readable_through_rbr_with_data_ready() {
        let (mut serial, irq, _) = serial();
        serial.write(IER, &[IER_RDA]);
        assert_eq!(read(&mut serial, LSR) & LSR_DATA_READY, 0);
        assert_eq!(serial.enqueue_input(b"ok").unwrap(), 2);
        assert_eq!(irq.count(), 1);
        assert_ne!(read(&mut serial, LSR) & LSR_DATA_READY, 0);
        assert_eq!(read(&mut serial, RBR), b'o');
        assert_eq!(read(&mut serial, RBR), b'k');
        assert_eq!(read(&mut serial, LSR) & LSR_DATA_READY, 0);
    }

    #[test]
    fn full_fifo_accepts_only_what_fits() {
        let (mut serial, _, _) = serial();
        let capacity = serial.input_capacity();
        assert!(capacity > 0);
        let input = vec![b'z'; capacity + 10];
        assert_eq!(serial.enqueue_input(&input).unwrap(), capacity);
        assert_eq!(serial.input_capacity(), 0);
        assert_eq!(serial.enqueue_input(b"more").unwrap(), 0);
        assert_eq!(serial.enqueue_input(b"").unwrap(), 0);
    }

    #[test]
    fn first_byte_hook_fires_exactly_once() {
        let (mut serial, _, out) = serial();
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        serial.set_first_byte_hook(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        serial.write(IER, &[0]);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        for &byte in b"boot" {
            serial.write(THR, &[byte]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(out.contents(), b"boot");
    }

    #[test]
    fn divisor_latch_writes_do_not_emit_bytes() {
        let (mut serial, _, out) = serial();
        serial.write(LCR, &[LCR_DLAB | 0x03]);
        serial.write(DLL, &[0x01]);
        serial.write(DLM, &[0x00]);
        assert_eq!(read(&mut serial, DLL), 0x01);
        assert_eq!(read(&mut serial, DLM), 0x00);
        assert!(out.contents().is_empty());
        serial.write(LCR, &[0x03]);
        serial.write(THR, b"x");
        assert_eq!(out.contents(), b"x");
    }

    #[test]
    fn loopback_mode_feeds_transmitted_bytes_back() {
        let (mut serial, _, out) = serial();
        serial.write(MCR, &[0x10]);
        serial.write(THR, b"L");
        assert!(out.contents().is_empty());
        assert_eq!(read(&mut serial, RBR), b'L');
    }

    #[test]
    fn wide_and_out_of_range_accesses_are_ignored() {
        let (mut serial, _, out) = serial();
        serial.write(THR, b"ab");
        serial.write(8, b"c");
        assert!(out.contents().is_empty());
        let mut wide = [0u8; 4];
        serial.read(LSR, &mut wide);
        assert_eq!(wide, [0xff; 4]);
    }

    #[test]
    fn survives_any_access_size_at_any_offset() {
        let (mut serial, _, out) = serial();
        hammer(&mut serial, SERIAL_PORT_LEN);
        out.take();
        serial.write(LCR, &[0x03]);
        serial.write(MCR, &[0x08]);
        serial.write(THR, b"!");
        assert_eq!(out.contents(), b"!");
    }
}
