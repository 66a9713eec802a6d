//! The address bus (port I/O or MMIO) that routes a guest access to the
//! device covering the accessed address.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use log::debug;

/// A device reachable through a [`Bus`].
pub trait BusDevice: Send {
    /// `offset` is relative to the base of the range the device was inserted at.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("zero-length bus range at {0:#x}")]
    ZeroLength(u64),
    #[error("bus range {base:#x}+{len:#x} wraps past the end of the address space")]
    Wraps { base: u64, len: u64 },
}

type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Entry {
    len: u64,
    device: SharedDevice,
}

/// A set of non-overlapping `[base, base + len)` ranges, each owned by a
/// device. Insertion and removal work through `&self`, so a bus can be
/// shared between vCPU threads behind an `Arc`.
#[derive(Default)]
pub struct Bus {
    devices: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
        self.devices.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Entry>> {
        self.devices.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `device` at `[base, base + len)`; the range must not overlap any
    /// existing one.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength(base));
        }
        let last = base
            .checked_add(len - 1)
            .ok_or(BusError::Wraps { base, len })?;
        let mut map = self.map_mut();
        // Ranges are disjoint and sorted, so only the range starting at or
        // before `last` with the highest base can overlap the new one.
        if let Some((&other_base, other)) = map.range(..=last).next_back() {
            if other_base + (other.len - 1) >= base {
                return Err(BusError::Overlap { base, len });
            }
        }
        map.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device inserted at exactly `base`.
    pub fn remove(&self, base: u64) -> Option<SharedDevice> {
        self.map_mut().remove(&base).map(|entry| entry.device)
    }

    /// Removes every device; returns how many there were. A VM's teardown calls this once its
    /// vCPUs are stopped: devices can hold the bus they sit on (a PCI segment moves BARs on
    /// it), and that cycle would otherwise keep them, their files and their threads alive.
    pub fn clear(&self) -> usize {
        let devices = std::mem::take(&mut *self.map_mut());
        devices.len()
    }

    /// The device whose range holds all of `[addr, addr + size)` (for a
    /// zero-sized access: holds `addr`), and `addr`'s offset in that range.
    fn resolve(&self, addr: u64, size: usize) -> Option<(SharedDevice, u64)> {
        let map = self.map();
        let (&base, entry) = map.range(..=addr).next_back()?;
        let offset = addr - base;
        let end = u128::from(offset) + size.max(1) as u128;
        if end > u128::from(entry.len) {
            return None;
        }
        Some((entry.device.clone(), offset))
    }

    /// Returns false when no device covers `addr` (the whole access must fit
    /// in one device's range). Only the target device is locked while it
    /// handles the access; a poisoned device lock is recovered, not
    /// propagated.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((device, offset)) = self.resolve(addr, data.len()) else {
            debug!("bus: unclaimed read of {} bytes at {addr:#x}", data.len());
            return false;
        };
        let mut device = device.lock().unwrap_or_else(|p| p.into_inner());
        device.read(offset, data);
        true
    }

    /// Like [`Bus::read`], for writes.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((device, offset)) = self.resolve(addr, data.len()) else {
            debug!("bus: unclaimed write of {} bytes at {addr:#x}", data.len());
            return false;
        };
        let mut device = device.lock().unwrap_or_else(|p| p.into_inner());
        device.write(offset, data);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access and answers reads with `tag + offset`.
    #[derive(Default)]
    struct Recorder {
        tag: u8,
        last_write: Option<(u64, Vec<u8>)>,
        last_read: Option<(u64, usize)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            self.last_read = Some((offset, data.len()));
            data.fill(self.tag.wrapping_add(offset as u8));
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn recorder(tag: u8) -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder {
            tag,
            ..Default::default()
        }))
    }

    #[test]
    fn insert_accepts_disjoint_and_adjacent_ranges() {
        let bus = Bus::new();
        bus.insert(recorder(0), 0x10, 0x10).unwrap();
        bus.insert(recorder(0), 0x20, 0x10).unwrap();
        bus.insert(recorder(0), 0x0, 0x10).unwrap();
        bus.insert(recorder(0), u64::MAX, 1).unwrap();
    }

    #[test]
    fn insert_rejects_overlapping_ranges() {
        let bus = Bus::new();
        bus.insert(recorder(0), 0x10, 0x10).unwrap();
        for (base, len) in [(0x10, 1), (0x1f, 1), (0x8, 0x9), (0x0, 0x100), (0x18, 0x2)] {
            let err = bus.insert(recorder(0), base, len).unwrap_err();
            assert!(
                matches!(err, BusError::Overlap { base: b, len: l } if b == base && l == len),
                "{base:#x}+{len:#x} gave {err:?}"
            );
        }
    }

    #[test]
    fn insert_rejects_zero_length_and_wrapping_ranges() {
        let bus = Bus::new();
        assert!(matches!(
            bus.insert(recorder(0), 0x3f8, 0),
            Err(BusError::ZeroLength(0x3f8))
        ));
        assert!(matches!(
            bus.insert(recorder(0), u64::MAX, 2),
            Err(BusError::Wraps { .. })
        ));
    }

    #[test]
    fn accesses_reach_the_covering_device_with_relative_offset() {
        let bus = Bus::new();
        let low = recorder(0x10);
        let high = recorder(0x80);
        bus.insert(low.clone(), 0x60, 5).unwrap();
        bus.insert(high.clone(), 0x3f8, 8).unwrap();

        assert!(bus.write(0x3fb, &[0x83]));
        assert_eq!(high.lock().unwrap().last_write, Some((3, vec![0x83])));
        assert_eq!(low.lock().unwrap().last_write, None);

        let mut data = [0u8; 1];
        assert!(bus.read(0x64, &mut data));
        assert_eq!(data, [0x14]);
        assert_eq!(low.lock().unwrap().last_read, Some((4, 1)));
    }

    #[test]
    fn accesses_outside_every_range_are_refused() {
        let bus = Bus::new();
        bus.insert(recorder(0), 0x70, 2).unwrap();
        let mut data = [0xaa; 1];
        assert!(!bus.read(0x6f, &mut data));
        assert!(!bus.read(0x72, &mut data));
        assert!(!bus.write(0x0, &[1]));
        assert_eq!(data, [0xaa]);
    }

    #[test]
    fn accesses_straddling_the_end_of_a_range_are_refused() {
        let bus = Bus::new();
        let dev = recorder(0);
        bus.insert(dev.clone(), 0x70, 2).unwrap();
        bus.insert(recorder(0), 0x72, 2).unwrap();
        assert!(!bus.write(0x71, &[1, 2]));
        let mut data = [0u8; 4];
        assert!(!bus.read(0x70, &mut data));
        assert!(bus.read(0x70, &mut data[..2]));
        assert_eq!(dev.lock().unwrap().last_write, None);
        bus.insert(recorder(0), u64::MAX, 1).unwrap();
        assert!(!bus.read(u64::MAX, &mut data));
        assert!(bus.read(u64::MAX, &mut data[..1]));
    }

    #[test]
    fn zero_length_access_is_dispatched_only_inside_a_range() {
        let bus = Bus::new();
        let dev = recorder(0);
        bus.insert(dev.clone(), 0x80, 1).unwrap();
        assert!(bus.write(0x80, &[]));
        assert_eq!(dev.lock().unwrap().last_write, Some((0, vec![])));
        assert!(!bus.write(0x81, &[]));
    }

    #[test]
    fn remove_returns_the_device_and_frees_its_range() {
        let bus = Bus::new();
        bus.insert(recorder(7), 0x80, 1).unwrap();
        assert!(bus.remove(0x81).is_none());
        let removed = bus.remove(0x80).expect("device at 0x80");
        let mut data = [0u8; 1];
        removed.lock().unwrap().read(0, &mut data);
        assert_eq!(data, [7]);
        assert!(!bus.write(0x80, &[1]));
        bus.insert(recorder(0), 0x80, 1).unwrap();
    }

    #[test]
    fn clear_drops_every_device_so_a_cycle_through_the_bus_is_broken() {
        /// A device that holds the bus it sits on (as a PCI segment holds the MMIO bus).
        struct HoldsBus(#[allow(dead_code)] Arc<Bus>);
        impl BusDevice for HoldsBus {
            fn read(&mut self, _: u64, _: &mut [u8]) {}
            fn write(&mut self, _: u64, _: &[u8]) {}
        }
        let bus = Arc::new(Bus::new());
        bus.insert(Arc::new(Mutex::new(HoldsBus(bus.clone()))), 0x1000, 0x10)
            .unwrap();
        bus.insert(recorder(1), 0x80, 1).unwrap();
        let weak = Arc::downgrade(&bus);
        assert_eq!(bus.clear(), 2);
        assert!(!bus.write(0x80, &[1]));
        drop(bus);
        assert!(weak.upgrade().is_none(), "the bus outlived its last holder");
    }

    #[test]
    fn bus_is_shareable_between_vcpu_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Bus>();
        let bus = Arc::new(Bus::new());
        let dev = recorder(0);
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let bus = bus.clone();
                std::thread::spawn(move || assert!(bus.write(0x3f8 + u64::from(i), &[i])))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(dev.lock().unwrap().last_write.is_some());
    }

    #[test]
    fn poisoned_device_lock_does_not_panic_the_caller() {
        let bus = Bus::new();
        let dev = recorder(0x40);
        bus.insert(dev.clone(), 0x80, 1).unwrap();
        let poisoner = dev.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison the device lock");
        })
        .join();
        assert!(dev.is_poisoned());
        let mut data = [0u8; 1];
        assert!(bus.read(0x80, &mut data));
        assert_eq!(data, [0x40]);
        assert!(bus.write(0x80, &[1]));
    }
}
