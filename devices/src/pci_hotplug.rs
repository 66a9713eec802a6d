//! The ACPI PCI hotplug controller: four 32-bit registers on the port bus that the DSDT's
//! `\_SB_.PHPR` methods read and write (the AML is in `arch::acpi::hotplug`), as in QEMU's
//! and Cloud Hypervisor's ACPI PCI hotplug; the first three speak of the PCI segment `PSEG`
//! selects (Cloud Hypervisor's way to serve every segment with one register block):
//!
//! | offset | name | guest reads | guest writes |
//! |---|---|---|---|
//! | 0 | `PCIU` | slots where a device arrived since the last read (then cleared) | ignored |
//! | 4 | `PCID` | slots whose device the VMM asks to remove (then cleared) | ignored |
//! | 8 | `B0EJ` | 0 | a slot bitmask: the guest released these devices (`_EJ0`) |
//! | 12 | `PSEG` | the selected segment | selects a segment (0 to 15; others ignored) |
//!
//! The VMM sets a bit with [`PciHotplugState::announce_add`] or
//! [`PciHotplugState::request_remove`] and raises the hotplug GED interrupt; the guest's
//! `_EVT` reads both registers and notifies each slot (1: check it, 3: eject request). When
//! its driver has let go, the guest runs the slot's `_EJ0`, which writes `B0EJ`: the VMM,
//! waiting in [`PciHotplugState::wait_ejected`], then takes the device away.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::bus::BusDevice;

/// Bytes of port space the registers take.
pub const PORT_LEN: u64 = 16;
const PCIU: u64 = 0;
const PCID: u64 = 4;
const B0EJ: u64 = 8;
const PSEG: u64 = 12;
/// PCI segments the registers speak of (the most a VM has).
pub const SEGMENTS: usize = 16;

/// One segment's slot bitmaps.
#[derive(Clone, Copy, Debug, Default)]
struct SegmentRegs {
    up: u32,
    down: u32,
    /// Slots the guest ejected that the VMM has not taken yet.
    ejected: u32,
}

#[derive(Debug, Default)]
struct Regs {
    segments: [SegmentRegs; SEGMENTS],
    /// The segment `PSEG` selects.
    selected: usize,
}

impl Regs {
    /// Segment `segment`'s bitmaps (segments beyond [`SEGMENTS`] share a scratch one that
    /// no guest reads).
    fn of(&mut self, segment: u16) -> &mut SegmentRegs {
        let i = usize::from(segment).min(SEGMENTS - 1);
        &mut self.segments[i]
    }
}

/// What the VMM and the register device share.
#[derive(Debug, Default)]
pub struct PciHotplugState {
    regs: Mutex<Regs>,
    ejected: Condvar,
}

impl PciHotplugState {
    fn regs(&self) -> std::sync::MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A device was put in `slot` (0..32) of PCI segment `segment` (below [`SEGMENTS`]): the
    /// guest is to check it.
    pub fn announce_add(&self, segment: u16, slot: u8) {
        let mut r = self.regs();
        let s = r.of(segment);
        s.up |= 1 << slot;
        s.ejected &= !(1 << slot);
    }

    /// The VMM wants the device in `slot` of `segment` gone: the guest is to release and
    /// eject it.
    pub fn request_remove(&self, segment: u16, slot: u8) {
        let mut r = self.regs();
        let s = r.of(segment);
        s.down |= 1 << slot;
        s.ejected &= !(1 << slot);
    }

    /// Waits until the guest ejected `slot` of `segment` (true, and the eject is taken) or
    /// `timeout` passed (false: the request is withdrawn, the device stays).
    pub fn wait_ejected(&self, segment: u16, slot: u8, timeout: Duration) -> bool {
        let bit = 1u32 << slot;
        let deadline = Instant::now() + timeout;
        let mut r = self.regs();
        loop {
            let s = r.of(segment);
            if s.ejected & bit != 0 {
                s.ejected &= !bit;
                s.down &= !bit;
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                s.down &= !bit;
                return false;
            }
            r = self
                .ejected
                .wait_timeout(r, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The registers as the guest sees them, for the port bus.
    pub fn device(self: &Arc<Self>) -> PciHotplugRegisters {
        PciHotplugRegisters(self.clone())
    }
}

/// The register window on the port bus.
pub struct PciHotplugRegisters(Arc<PciHotplugState>);

impl BusDevice for PciHotplugRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() != 4 {
            return;
        }
        let mut r = self.0.regs();
        let selected = r.selected;
        let s = &mut r.segments[selected];
        let v = match offset {
            PCIU => std::mem::take(&mut s.up),
            PCID => std::mem::take(&mut s.down),
            PSEG => selected as u32,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes(data.try_into().unwrap_or_default());
        match offset {
            PSEG => {
                if let Ok(s) = usize::try_from(v) {
                    if s < SEGMENTS {
                        self.0.regs().selected = s;
                    }
                }
            }
            B0EJ => {
                // Slot 0 is the host bridge: it is never ejected.
                let v = v & !1;
                if v != 0 {
                    let mut r = self.0.regs();
                    let selected = r.selected;
                    r.segments[selected].ejected |= v;
                    self.0.ejected.notify_all();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dev: &mut PciHotplugRegisters, offset: u64) -> u32 {
        let mut d = [0xffu8; 4];
        dev.read(offset, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn up_and_down_bits_are_read_once() {
        let s = Arc::new(PciHotplugState::default());
        let mut dev = s.device();
        s.announce_add(0, 3);
        s.announce_add(0, 5);
        s.request_remove(0, 7);
        assert_eq!(read(&mut dev, PCIU), (1 << 3) | (1 << 5));
        assert_eq!(read(&mut dev, PCIU), 0);
        assert_eq!(read(&mut dev, PCID), 1 << 7);
        assert_eq!(read(&mut dev, PCID), 0);
        assert_eq!(read(&mut dev, B0EJ), 0);
        // Only whole dwords.
        let mut b = [0xffu8; 2];
        s.announce_add(0, 1);
        dev.read(PCIU, &mut b);
        assert_eq!(b, [0, 0]);
        assert_eq!(read(&mut dev, PCIU), 1 << 1);
    }

    #[test]
    fn an_eject_wakes_the_waiter_and_a_timeout_withdraws_the_request() {
        let s = Arc::new(PciHotplugState::default());
        let mut dev = s.device();
        s.request_remove(0, 4);
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_ejected(0, 4, Duration::from_secs(5)))
        };
        std::thread::sleep(Duration::from_millis(20));
        dev.write(B0EJ, &(1u32 << 4).to_le_bytes());
        assert!(waiter.join().unwrap());
        // A guest that never ejects: the wait ends, the request is withdrawn.
        s.request_remove(0, 6);
        assert!(!s.wait_ejected(0, 6, Duration::from_millis(30)));
        assert_eq!(read(&mut dev, PCID), 0);
        // The host bridge (slot 0) cannot be ejected; other offsets and sizes are ignored.
        dev.write(B0EJ, &1u32.to_le_bytes());
        dev.write(PCIU, &(1u32 << 2).to_le_bytes());
        dev.write(B0EJ, &[1, 0]);
        assert!(!s.wait_ejected(0, 0, Duration::from_millis(1)));
        assert!(!s.wait_ejected(0, 2, Duration::from_millis(1)));
    }

    #[test]
    fn pseg_selects_the_segment_the_other_registers_speak_of() {
        let s = Arc::new(PciHotplugState::default());
        let mut dev = s.device();
        s.announce_add(0, 2);
        s.announce_add(3, 4);
        s.request_remove(3, 6);
        assert_eq!(read(&mut dev, PSEG), 0);
        assert_eq!(read(&mut dev, PCIU), 1 << 2);
        assert_eq!(read(&mut dev, PCID), 0);
        dev.write(PSEG, &3u32.to_le_bytes());
        assert_eq!(read(&mut dev, PSEG), 3);
        assert_eq!(read(&mut dev, PCIU), 1 << 4);
        assert_eq!(read(&mut dev, PCID), 1 << 6);
        // An eject speaks of the selected segment: segment 0's slot 6 is not segment 3's.
        dev.write(PSEG, &0u32.to_le_bytes());
        dev.write(B0EJ, &(1u32 << 6).to_le_bytes());
        assert!(!s.wait_ejected(3, 6, Duration::from_millis(1)));
        s.request_remove(3, 6);
        dev.write(PSEG, &3u32.to_le_bytes());
        dev.write(B0EJ, &(1u32 << 6).to_le_bytes());
        assert!(s.wait_ejected(3, 6, Duration::from_millis(1)));
        // A segment beyond the registers' is ignored: the selection stays.
        dev.write(PSEG, &16u32.to_le_bytes());
        assert_eq!(read(&mut dev, PSEG), 3);
    }

    #[test]
    fn an_eject_before_the_wait_is_not_lost_and_a_new_request_clears_a_stale_one() {
        let s = Arc::new(PciHotplugState::default());
        let mut dev = s.device();
        s.request_remove(0, 9);
        dev.write(B0EJ, &(1u32 << 9).to_le_bytes());
        assert!(s.wait_ejected(0, 9, Duration::from_millis(1)));
        // A stale eject (the guest ejected a slot nobody asked about) does not count for a
        // later removal of a device put there since.
        dev.write(B0EJ, &(1u32 << 10).to_le_bytes());
        s.announce_add(0, 10);
        s.request_remove(0, 10);
        assert!(!s.wait_ejected(0, 10, Duration::from_millis(1)));
    }
}
