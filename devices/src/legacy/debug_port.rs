//! The POST/debug port (0x80, one byte): firmware, boot loaders, kernels
//! and user space write progress codes here; each is recorded with the time
//! elapsed since VM start and logged like Cloud Hypervisor does.

use std::fmt;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::read_open_bus;
use crate::BusDevice;

/// At most this many codes are kept; later ones are still logged.
pub const MAX_EVENTS: usize = 4096;

/// Who a debug code belongs to, by Cloud Hypervisor's convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugPortRange {
    /// 0x00..=0x1f
    Firmware,
    /// 0x20..=0x3f
    Bootloader,
    /// 0x40..=0x5f
    Kernel,
    /// 0x60..=0x7f
    Userspace,
    /// 0x80..=0xff
    Custom,
}

impl From<u8> for DebugPortRange {
    fn from(code: u8) -> Self {
        match code {
            0x00..=0x1f => Self::Firmware,
            0x20..=0x3f => Self::Bootloader,
            0x40..=0x5f => Self::Kernel,
            0x60..=0x7f => Self::Userspace,
            _ => Self::Custom,
        }
    }
}

impl fmt::Display for DebugPortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Firmware => "Firmware",
            Self::Bootloader => "Bootloader",
            Self::Kernel => "Kernel",
            Self::Userspace => "Userspace",
            Self::Custom => "Custom",
        };
        f.write_str(name)
    }
}

pub struct DebugPort {
    start: Instant,
    events: Vec<(u8, Duration)>,
    dropped: u64,
    last: u8,
}

impl DebugPort {
    /// `start`: the instant codes are timed from (usually VM creation).
    pub fn new(start: Instant) -> Self {
        DebugPort {
            start,
            events: Vec::new(),
            dropped: 0,
            last: 0,
        }
    }

    /// Codes written so far (up to [`MAX_EVENTS`]), with their times since
    /// `start`, in the order the guest wrote them.
    pub fn events(&self) -> &[(u8, Duration)] {
        &self.events
    }

    /// How many codes arrived after the event list was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn record(&mut self, code: u8) {
        let elapsed = self.start.elapsed();
        info!(
            "[Debug I/O port: {} code {code:#x}] {}.{:06} seconds",
            DebugPortRange::from(code),
            elapsed.as_secs(),
            elapsed.subsec_micros()
        );
        self.last = code;
        if self.events.len() < MAX_EVENTS {
            self.events.push((code, elapsed));
        } else {
            self.dropped += 1;
        }
    }
}

impl BusDevice for DebugPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            // Like common chipsets, the port reads back the last code.
            (0, 1) => data[0] = self.last,
            _ => {
                debug!("debug port: read of {} bytes at {offset:#x}", data.len());
                read_open_bus(data);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (0, &[code]) => self.record(code),
            _ => debug!(
                "debug port: ignoring {}-byte write at {offset:#x}",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::test_util::hammer;

    #[test]
    fn records_codes_in_order_with_non_decreasing_times() {
        let start = Instant::now();
        let mut port = DebugPort::new(start);
        for code in [0x10, 0x41, 0x42, 0x70] {
            port.write(0, &[code]);
        }
        let codes: Vec<u8> = port.events().iter().map(|&(c, _)| c).collect();
        assert_eq!(codes, [0x10, 0x41, 0x42, 0x70]);
        let times: Vec<Duration> = port.events().iter().map(|&(_, t)| t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(*times.last().unwrap() <= start.elapsed());
    }

    #[test]
    fn reads_return_the_last_code() {
        let mut port = DebugPort::new(Instant::now());
        port.write(0, &[0x5a]);
        let mut data = [0u8; 1];
        port.read(0, &mut data);
        assert_eq!(data, [0x5a]);
    }

    #[test]
    fn codes_map_to_cloud_hypervisor_ranges() {
        assert_eq!(DebugPortRange::from(0x00), DebugPortRange::Firmware);
        assert_eq!(DebugPortRange::from(0x1f), DebugPortRange::Firmware);
        assert_eq!(DebugPortRange::from(0x20), DebugPortRange::Bootloader);
        assert_eq!(DebugPortRange::from(0x41), DebugPortRange::Kernel);
        assert_eq!(DebugPortRange::from(0x7f), DebugPortRange::Userspace);
        assert_eq!(DebugPortRange::from(0x80), DebugPortRange::Custom);
        assert_eq!(DebugPortRange::Kernel.to_string(), "Kernel");
    }

    #[test]
    fn event_list_is_bounded() {
        let mut port = DebugPort::new(Instant::now());
        for i in 0..MAX_EVENTS + 10 {
            port.write(0, &[i as u8]);
        }
        assert_eq!(port.events().len(), MAX_EVENTS);
        assert_eq!(port.dropped(), 10);
    }

    #[test]
    fn wide_or_misplaced_writes_are_not_recorded() {
        let mut port = DebugPort::new(Instant::now());
        port.write(0, &[1, 2]);
        port.write(1, &[3]);
        port.write(0, &[]);
        assert!(port.events().is_empty());
    }

    #[test]
    fn survives_any_access_size_at_any_offset() {
        let mut port = DebugPort::new(Instant::now());
        hammer(&mut port, 1);
        port.write(0, &[0x42]);
        assert_eq!(port.events().last().map(|e| e.0), Some(0x42));
    }
}
