//! The MSI-X table and pending bit array as they appear in a BAR: 16 bytes
//! per vector (address low/high, data, vector control) read and written as
//! aligned dwords or qwords, and one pending bit per vector.

use std::io;
use std::sync::Arc;

use log::{debug, warn};

use crate::interrupt::{MsiInterruptGroup, MsiMessage};

/// Bytes per table entry.
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// Most vectors MSI-X allows.
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Vector control: the vector is masked.
pub const MSIX_VECTOR_MASKED: u32 = 1;

/// One table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixTableEntry {
    pub addr_lo: u32,
    pub addr_hi: u32,
    pub data: u32,
    pub vector_control: u32,
}

impl Default for MsixTableEntry {
    /// Entries come out of reset masked.
    fn default() -> Self {
        Self {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            vector_control: MSIX_VECTOR_MASKED,
        }
    }
}

impl MsixTableEntry {
    pub fn masked(&self) -> bool {
        self.vector_control & MSIX_VECTOR_MASKED != 0
    }

    pub fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.addr_hi) << 32 | u64::from(self.addr_lo),
            data: self.data,
        }
    }

    fn field(&self, index: u64) -> u32 {
        match index {
            0 => self.addr_lo,
            1 => self.addr_hi,
            2 => self.data,
            _ => self.vector_control,
        }
    }

    fn set_field(&mut self, index: u64, value: u32) {
        match index {
            0 => self.addr_lo = value,
            1 => self.addr_hi = value,
            2 => self.data = value,
            // Only the mask bit is implemented; the rest are reserved zeros.
            _ => self.vector_control = value & MSIX_VECTOR_MASKED,
        }
    }
}

/// Dword index and dword count of a supported access (aligned 4 or 8 bytes).
fn dwords(offset: u64, len: usize) -> Option<(u64, u64)> {
    match len {
        4 if offset.is_multiple_of(4) => Some((offset / 4, 1)),
        8 if offset.is_multiple_of(8) => Some((offset / 4, 2)),
        _ => None,
    }
}

/// The emulated table, PBA, and the capability's enable and function-mask bits.
pub struct MsixTable {
    entries: Vec<MsixTableEntry>,
    pba: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    group: Arc<dyn MsiInterruptGroup>,
}

impl MsixTable {
    /// A table of `vectors` masked entries; `vectors` is clamped to 1..=2048
    /// ([`crate::Msix::new`] validates it).
    pub fn new(vectors: u16, group: Arc<dyn MsiInterruptGroup>) -> Self {
        let n = usize::from(vectors.clamp(1, MSIX_MAX_VECTORS));
        Self {
            entries: vec![MsixTableEntry::default(); n],
            pba: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
            group,
        }
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Bytes of the table.
    pub fn table_len(&self) -> u64 {
        self.entries.len() as u64 * MSIX_TABLE_ENTRY_SIZE
    }

    /// Bytes of the pending bit array.
    pub fn pba_len(&self) -> u64 {
        self.pba.len() as u64 * 8
    }

    pub fn entry(&self, vector: u16) -> Option<MsixTableEntry> {
        self.entries.get(usize::from(vector)).copied()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Every entry, in vector order (a snapshot saves them).
    pub fn entries(&self) -> &[MsixTableEntry] {
        &self.entries
    }

    /// The pending bit array, 64 vectors per word.
    pub fn pba_words(&self) -> &[u64] {
        &self.pba
    }

    /// Put back a saved table and pending bits, before MSI-X is enabled (which then pushes
    /// every entry's route, as when a driver enables it). Sizes must match this table's.
    pub fn restore(&mut self, entries: &[MsixTableEntry], pba: &[u64]) -> Result<(), String> {
        if self.enabled {
            return Err("MSI-X is already enabled".into());
        }
        if entries.len() != self.entries.len() || pba.len() != self.pba.len() {
            return Err(format!(
                "{} vectors saved, the device has {}",
                entries.len(),
                self.entries.len()
            ));
        }
        self.entries.copy_from_slice(entries);
        self.pba.copy_from_slice(pba);
        Ok(())
    }

    pub fn is_function_masked(&self) -> bool {
        self.function_masked
    }

    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pba
            .get(v / 64)
            .is_some_and(|w| w & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: usize, pending: bool) {
        if let Some(word) = self.pba.get_mut(vector / 64) {
            let bit = 1u64 << (vector % 64);
            *word = if pending { *word | bit } else { *word & !bit };
        }
    }

    fn effective_mask(&self, vector: usize) -> bool {
        self.function_masked || self.entries[vector].masked()
    }

    /// A guest read at `offset` in the table; unsupported sizes or
    /// alignments and entries beyond the table read as all-ones.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some((first, count)) = dwords(offset, data.len()) else {
            debug!(
                "msix: unsupported {}-byte table read at {offset:#x}",
                data.len()
            );
            return;
        };
        let Some(entry) = self.entries.get((first / 4) as usize) else {
            debug!("msix: table read beyond the last entry at {offset:#x}");
            return;
        };
        for i in 0..count {
            let value = entry.field((first + i) % 4);
            let at = (4 * i) as usize;
            data[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
    }

    /// A guest write at `offset` in the table; unsupported accesses and
    /// entries beyond the table are ignored.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let Some((first, count)) = dwords(offset, data.len()) else {
            debug!(
                "msix: unsupported {}-byte table write at {offset:#x}",
                data.len()
            );
            return;
        };
        let vector = (first / 4) as usize;
        let Some(old) = self.entries.get(vector).copied() else {
            debug!("msix: table write beyond the last entry at {offset:#x}");
            return;
        };
        for i in 0..count {
            let at = (4 * i) as usize;
            let value = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            self.entries[vector].set_field((first + i) % 4, value);
        }
        self.entry_changed(vector, old);
    }

    /// Pushes an entry's new route, and delivers it if it was just unmasked
    /// with its pending bit set.
    fn entry_changed(&mut self, vector: usize, old: MsixTableEntry) {
        let new = self.entries[vector];
        if old == new || !self.enabled {
            return;
        }
        let masked = self.effective_mask(vector);
        let was_masked = self.function_masked || old.masked();
        if new.message() != old.message() || masked != was_masked {
            log_err(
                "update",
                self.group.update(vector as u16, new.message(), masked),
            );
        }
        if was_masked && !masked && self.is_pending(vector as u16) {
            self.set_pending(vector, false);
            log_err("trigger", self.group.trigger(vector as u16));
        }
    }

    /// A guest read at `offset` in the PBA (aligned dwords or qwords).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some((first, count)) = dwords(offset, data.len()) else {
            debug!(
                "msix: unsupported {}-byte PBA read at {offset:#x}",
                data.len()
            );
            return;
        };
        let index = (first / 2) as usize;
        let Some(&word) = self.pba.get(index) else {
            debug!("msix: PBA read beyond its end at {offset:#x}");
            return;
        };
        // With the bits of masked vectors whose interrupt waits in the group (a device that
        // signalled a masked vector: the hardware's pending bit).
        let mut word = word;
        let vectors = index * 64..(index * 64 + 64).min(self.entries.len());
        for v in vectors {
            if self.effective_mask(v) && self.group.pending(v as u16) {
                word |= 1 << (v % 64);
            }
        }
        let bytes = word.to_le_bytes();
        let start = ((first % 2) * 4) as usize;
        let len = (count * 4) as usize;
        data.copy_from_slice(&bytes[start..start + len]);
    }

    /// The PBA is read-only; guest writes are ignored.
    pub fn write_pba(&mut self, offset: u64, data: &[u8]) {
        debug!(
            "msix: ignored {}-byte write to the PBA at {offset:#x}",
            data.len()
        );
    }

    /// Applies the capability's enable and function-mask bits; true when
    /// either changed.
    pub fn set_control(&mut self, enabled: bool, function_masked: bool) -> bool {
        let (was_enabled, was_masked) = (self.enabled, self.function_masked);
        if (enabled, function_masked) == (was_enabled, was_masked) {
            return false;
        }
        self.enabled = enabled;
        self.function_masked = function_masked;
        if enabled && !was_enabled {
            for v in 0..self.entries.len() {
                let (msg, masked) = (self.entries[v].message(), self.effective_mask(v));
                log_err("update", self.group.update(v as u16, msg, masked));
            }
            log_err("enable", self.group.enable());
        } else if !enabled && was_enabled {
            log_err("disable", self.group.disable());
        } else if enabled {
            // Only the function mask changed: individually masked entries stay masked.
            for v in (0..self.entries.len()).filter(|&v| !self.entries[v].masked()) {
                let msg = self.entries[v].message();
                log_err("update", self.group.update(v as u16, msg, function_masked));
            }
        }
        if enabled && !function_masked {
            self.deliver_pending();
        }
        true
    }

    fn deliver_pending(&mut self) {
        for v in 0..self.entries.len() {
            if !self.entries[v].masked() && self.is_pending(v as u16) {
                self.set_pending(v, false);
                log_err("trigger", self.group.trigger(v as u16));
            }
        }
    }

    /// Raises `vector`: delivered when enabled and unmasked, its PBA bit set
    /// while masked (by the entry or the function mask), dropped while
    /// MSI-X is disabled. A vector beyond the table is a device bug.
    pub fn trigger(&mut self, vector: u16) -> io::Result<()> {
        let v = usize::from(vector);
        if v >= self.entries.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "MSI-X vector {vector} beyond a {}-entry table",
                    self.entries.len()
                ),
            ));
        }
        if !self.enabled {
            debug!("msix: dropped vector {vector} while MSI-X is disabled");
            return Ok(());
        }
        if self.effective_mask(v) {
            self.set_pending(v, true);
            return Ok(());
        }
        self.group.trigger(vector)
    }
}

fn log_err(what: &str, result: io::Result<()>) {
    if let Err(e) = result {
        warn!("msix: interrupt group {what} failed: {e}");
    }
}

#[cfg(test)]
#[path = "msix_table_tests.rs"]
mod tests;
