//! BAR mappings aligned in the VMM's address space like the BAR is in physical memory.
//!
//! Since Linux 6.12 (huge PFN mappings), vfio-pci maps a BAR with 2 MiB or 1 GiB page table
//! entries where the virtual address is aligned like the physical one, and KVM then maps the
//! guest's view of the BAR with huge pages as well: fewer faults when the guest first touches a
//! GPU's 32–256 GiB BAR, and far fewer TLB misses. `mmap` on its own aligns to 4 KiB only. A BAR
//! is naturally aligned (its physical address is a multiple of its size), so an area at
//! `offset` within it lines up when `virtual ≡ offset (mod align)`, with `align` the largest
//! power of two not above the area's size, capped at 1 GiB.

use std::io;
use std::os::fd::RawFd;

/// The largest alignment worth asking for.
const MAX_ALIGN: u64 = 1 << 30;
/// Below this an area cannot use a huge mapping anyway.
const MIN_ALIGN: u64 = 2 << 20;

/// The alignment for an area of `size` bytes (0: none beyond the page).
pub fn alignment(size: u64) -> u64 {
    if size < MIN_ALIGN {
        return 0;
    }
    let pow2 = 1u64 << (63 - size.leading_zeros());
    pow2.min(MAX_ALIGN)
}

/// An inaccessible, unbacked reservation of `span` bytes of address space (PROT_NONE,
/// MAP_NORESERVE); the kernel picks the address. Guest RAM uses it too (`memory.rs`).
pub(crate) fn reserve(span: usize) -> io::Result<usize> {
    // SAFETY: a new private reservation; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(base as usize)
    }
}

/// The first address at or above `base` that is `residue` modulo `align` (a power of two).
pub(crate) fn first_at(base: u64, align: u64, residue: u64) -> u64 {
    (base - residue).next_multiple_of(align) + residue
}

/// Releases the parts of the reservation `[base, base+span)` around `[at, at+len)`, which
/// stays as it is (a mapping placed there, or a hole another mapping is to take).
pub(crate) fn release_around(base: usize, span: usize, at: usize, len: usize) {
    for (from, to) in [(base, at), (at + len, base + span)] {
        if to > from {
            // SAFETY: what is left of a reservation the caller owns.
            unsafe { libc::munmap(from as *mut libc::c_void, to - from) };
        }
    }
}

/// `mmap(size, prot, MAP_SHARED, fd, file_offset)` at an address congruent to `offset_in_bar`
/// modulo [`alignment`]`(size)`. The spare address space reserved to find that address is
/// released before returning.
pub fn mmap_aligned(
    fd: RawFd,
    file_offset: u64,
    size: u64,
    prot: libc::c_int,
    offset_in_bar: u64,
) -> io::Result<*mut u8> {
    let align = alignment(size);
    if align == 0 {
        // SAFETY: a new shared mapping of `fd`; the kernel picks the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                prot,
                libc::MAP_SHARED,
                fd,
                file_offset as i64,
            )
        };
        return if addr == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(addr.cast())
        };
    }
    // Reserve enough address space (no memory) to place the mapping at the right residue.
    let span = size
        .checked_add(2 * align)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))? as usize;
    let base = reserve(span)?;
    let target = first_at(base as u64, align, offset_in_bar % align);
    // SAFETY: [target, target+size) lies inside the reservation we own; MAP_FIXED replaces
    // that part.
    let addr = unsafe {
        libc::mmap(
            target as *mut libc::c_void,
            size as usize,
            prot,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd,
            file_offset as i64,
        )
    };
    let failed = addr == libc::MAP_FAILED;
    let err = io::Error::last_os_error();
    if failed {
        // SAFETY: the whole reservation is ours to release.
        unsafe { libc::munmap(base as *mut libc::c_void, span) };
    } else {
        release_around(base, span, target as usize, size as usize);
    }
    if failed {
        Err(err)
    } else {
        Ok(addr.cast())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn alignment_is_the_largest_power_of_two_up_to_1_gib() {
        assert_eq!(alignment(4096), 0);
        assert_eq!(alignment((2 << 20) - 4096), 0);
        assert_eq!(alignment(2 << 20), 2 << 20);
        assert_eq!(alignment(16 << 20), 16 << 20);
        assert_eq!(
            alignment((16 << 20) - (64 << 10)),
            8 << 20,
            "an area short of its BAR"
        );
        assert_eq!(alignment(256 << 30), 1 << 30);
    }

    /// /proc/self/maps lines covering `[addr, addr + len)`.
    fn maps_around(addr: u64, len: u64) -> Vec<(u64, u64)> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(|l| {
                let range = l.split_whitespace().next()?;
                let (a, b) = range.split_once('-')?;
                let (a, b) = (
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                );
                (a < addr + len + (2 << 30) && b + (2 << 30) > addr).then_some((a, b))
            })
            .collect()
    }

    #[test]
    fn areas_land_at_their_residue_and_see_the_file_and_no_spare_space_remains() {
        let file = vmm_sys_util::tempfile::TempFile::new().unwrap();
        let f = file.as_file();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"bar-start", 0).unwrap();
        f.write_all_at(b"at-4k", 4096).unwrap();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // A whole 32 MiB "BAR", then an area of 16 MiB starting 4 KiB into it.
        for (file_offset, size, offset_in_bar, want) in [
            (0u64, 32u64 << 20, 0u64, &b"bar-start"[..]),
            (4096, 16 << 20, 4096, &b"at-4k"[..]),
        ] {
            let addr = mmap_aligned(f.as_raw_fd(), file_offset, size, prot, offset_in_bar).unwrap();
            let align = alignment(size);
            assert_eq!((addr as u64) % align, offset_in_bar % align, "{size:#x}");
            // SAFETY: the mapping is `size` bytes long and backed by the file.
            let seen = unsafe { std::slice::from_raw_parts(addr, want.len()) };
            assert_eq!(seen, want);
            // The reservation's spare parts were released: the mapping stands alone.
            let maps = maps_around(addr as u64, size);
            assert!(
                maps.iter()
                    .any(|&(a, b)| a == addr as u64 && b == addr as u64 + size),
                "{maps:x?}"
            );
            // SAFETY: unmapping what mmap_aligned returned.
            assert_eq!(unsafe { libc::munmap(addr.cast(), size as usize) }, 0);
        }
        // A small area is a plain mapping.
        let addr = mmap_aligned(f.as_raw_fd(), 0, 8192, prot, 0).unwrap();
        // SAFETY: 8 KiB mapping of the file.
        assert_eq!(unsafe { std::slice::from_raw_parts(addr, 9) }, b"bar-start");
        // SAFETY: as above.
        unsafe { libc::munmap(addr.cast(), 8192) };
    }
}
