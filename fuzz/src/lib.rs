//! Shared pieces of the fuzz targets: a byte cursor that decodes the inputs (every target's
//! layout is written at the top of its file, and the seed corpus in `corpus/<target>/`
//! follows it), and the small guest memory the virtio targets lay their rings into.
//!
//! Keep the layouts stable: a changed layout silently turns the committed corpus into noise.

use std::sync::OnceLock;

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Whether `FUZZ_DEBUG` is set: the targets then say what each input did (to check that a
/// seed reaches what it was written for: `FUZZ_DEBUG=1 fuzz/target/*/release/<t> <seed>`).
pub fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

/// `eprintln!` when [`debug`] is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::debug() {
            eprintln!($($arg)*);
        }
    };
}

/// Reads little-endian integers and byte strings off the fuzz input; past the end every
/// read returns zeros (or an empty slice), so a harness never has to check lengths.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A byte string prefixed by a one-byte length.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }
}

/// Guest RAM for the virtio targets: 64 KiB at 0, 4 KiB right after it (a region boundary
/// with no gap) and 4 KiB at 128 KiB (a hole in between), so buffers that straddle regions or
/// fall into holes are part of what gets fuzzed.
pub const GUEST_REGIONS: [(u64, usize); 3] =
    [(0, 0x1_0000), (0x1_0000, 0x1000), (0x2_0000, 0x1000)];

/// End of the highest guest region.
pub const GUEST_END: u64 = 0x2_1000;

/// Fresh guest memory holding `image` from address 0 (the part of it that fits).
pub fn guest_memory(image: &[u8]) -> GuestMemoryMmap {
    let ranges: Vec<(GuestAddress, usize)> = GUEST_REGIONS
        .iter()
        .map(|&(a, l)| (GuestAddress(a), l))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).expect("fuzz guest memory");
    let n = image.len().min(GUEST_REGIONS[0].1);
    vm_memory::Bytes::write_slice(&mem, &image[..n], GuestAddress(0)).expect("image fits");
    mem
}

/// Whether `[addr, addr + len)` lies entirely in guest RAM (the definition the virtio
/// targets check the device code's answers against; independent of `check_range`).
pub fn in_guest_ram(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    if len == 0 {
        return GUEST_REGIONS
            .iter()
            .any(|&(a, l)| addr >= a && addr <= a + l as u64);
    }
    // Walk the regions in order: the range must be covered without a hole.
    let mut at = addr;
    for &(a, l) in &GUEST_REGIONS {
        let r_end = a + l as u64;
        if at >= a && at < r_end {
            at = r_end.min(end);
            if at == end {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_zeros_past_the_end() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16(), 0x0201);
        assert_eq!(c.u32(), 3);
        assert_eq!(c.u64(), 0);
        assert!(c.is_empty());
    }

    #[test]
    fn in_guest_ram_follows_the_regions() {
        assert!(in_guest_ram(0, 0x1_1000));
        assert!(in_guest_ram(0xfff0, 0x20));
        assert!(!in_guest_ram(0x1_0ff0, 0x20));
        assert!(in_guest_ram(0x2_0000, 0x1000));
        assert!(!in_guest_ram(0x2_0000, 0x1001));
        assert!(!in_guest_ram(u64::MAX, 2));
    }
}
