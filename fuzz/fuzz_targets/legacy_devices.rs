//! The legacy PC devices on the port bus, as `vmm::legacy` places them: the 16550A UART
//! (`devices::legacy::Serial`) at 0x3f8, the i8042 at 0x60, the CMOS/RTC at 0x70, the POST
//! debug port at 0x80 and the ACPI PM block at 0x600, driven through `devices::Bus` (and so
//! `devices::BusDevice`) with random port, size, direction and value, plus host console
//! input into the UART. The RTC's wall clock and the RAM sizes the CMOS reports also come
//! from the input.
//!
//! Properties: no panic; accesses never reach a device outside its range; the debug port's
//! event log stays bounded.
//!
//! Input layout (little endian):
//! ```text
//! 0   u64  RAM below 4 GiB (mod 4 GiB), u64 RAM above 4 GiB (mod 2^46)
//! 16  u64  RTC clock: seconds from 1970 (bit 63 set: before 1970), mod 2^34
//! 24  operations, each an opcode byte and its operands:
//!     0 write   u8 device (0 serial, 1 i8042, 2 cmos, 3 debug, 4 acpi-pm, else any port:
//!               u16 port follows), u8 offset (mod range + 2), u8 size (mod 9), u64 value
//!     1 read    the same operands (the value is read and ignored)
//!     2 input   u8 length, bytes: host console input for the UART
//! ```
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;

use devices::legacy::{AcpiPm, Cmos, DebugPort, Serial, I8042};
use devices::{Bus, BusDevice, CountingInterrupt, SharedBuffer};
use vmm_fuzz::{trace, Cursor};

/// (base, length) of each device, in the order of the operand byte.
const RANGES: [(u64, u64); 5] = [(0x3f8, 8), (0x60, 5), (0x70, 2), (0x80, 1), (0x600, 3)];

/// Counts the accesses that reach it: it sits right after every device's range.
#[derive(Default)]
struct Fence(Arc<Mutex<u64>>);

impl BusDevice for Fence {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        *self.0.lock().unwrap() += 1;
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {
        *self.0.lock().unwrap() += 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let below = c.u64() % (1 << 32);
    let above = c.u64() % (1 << 46);
    let t = c.u64();
    let secs = Duration::from_secs(t % (1 << 34));
    let now = if t >> 63 != 0 {
        UNIX_EPOCH.checked_sub(secs)
    } else {
        UNIX_EPOCH.checked_add(secs)
    }
    .unwrap_or(UNIX_EPOCH);

    let irq = Arc::new(CountingInterrupt::new());
    let serial = Arc::new(Mutex::new(Serial::new(
        irq.clone(),
        Some(Box::new(SharedBuffer::new())),
    )));
    let debug = Arc::new(Mutex::new(DebugPort::new(Instant::now())));
    let bus = Bus::new();
    bus.insert(serial.clone(), RANGES[0].0, RANGES[0].1)
        .unwrap();
    let i8042 = I8042::with_irqs(irq.clone(), Some(irq.clone()), Some(irq.clone()));
    bus.insert(Arc::new(Mutex::new(i8042)), RANGES[1].0, RANGES[1].1)
        .unwrap();
    let cmos = Cmos::with_clock(below, above, Box::new(move || now));
    bus.insert(Arc::new(Mutex::new(cmos)), RANGES[2].0, RANGES[2].1)
        .unwrap();
    bus.insert(debug.clone(), RANGES[3].0, RANGES[3].1).unwrap();
    let pm = AcpiPm::new(irq.clone(), irq.clone());
    bus.insert(Arc::new(Mutex::new(pm)), RANGES[4].0, RANGES[4].1)
        .unwrap();
    let fenced = Arc::new(Mutex::new(0u64));
    for (base, len) in RANGES {
        let fence = Fence(fenced.clone());
        // 0x60..0x65 and 0x70 are neighbours' fences: skip where taken.
        let _ = bus.insert(Arc::new(Mutex::new(fence)), base + len, 1);
    }

    let mut ops = 0;
    while !c.is_empty() && ops < 2000 {
        ops += 1;
        let op = c.u8() % 3;
        if op == 2 {
            let bytes = c.short_bytes();
            let _ = serial.lock().unwrap().enqueue_input(bytes);
            continue;
        }
        let dev = usize::from(c.u8());
        let port = match RANGES.get(dev) {
            Some(&(base, len)) => base + u64::from(c.u8()) % (len + 2),
            None => u64::from(c.u16()),
        };
        let size = usize::from(c.u8() % 9);
        let mut buf = c.u64().to_le_bytes()[..size].to_vec();
        let before = *fenced.lock().unwrap();
        let claimed = if op == 0 {
            bus.write(port, &buf)
        } else {
            bus.read(port, &mut buf)
        };
        let fence_hit = *fenced.lock().unwrap() != before;
        // Only an access that starts on a fence may reach it (the bus never spreads one
        // access over two devices).
        if fence_hit {
            assert!(claimed);
            assert!(
                RANGES.iter().any(|&(b, l)| port == b + l),
                "access at {port:#x} reached a fence"
            );
        }
    }
    let events = debug.lock().unwrap().events().len();
    assert!(events <= devices::legacy::debug_port::MAX_EVENTS);
    trace!("{ops} ops, {} interrupts, {events} POST codes", irq.count());
});
