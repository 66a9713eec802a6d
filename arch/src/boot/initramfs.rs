//! The initramfs, placed page aligned as high as allowed in low RAM.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::PAGE_SIZE;

/// Why the initramfs cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("cannot read the initramfs file: {0}")]
    Io(#[source] std::io::Error),
    #[error("the initramfs file is empty")]
    Empty,
    #[error(
        "the initramfs ({size} bytes) does not fit: only {available} bytes are free between \
         the kernel end {lower:#x} and {top:#x}; give the VM more memory or use a smaller \
         initramfs"
    )]
    TooLarge {
        size: u64,
        available: u64,
        lower: u64,
        top: u64,
    },
    #[error("copying the initramfs to guest address {addr:#x} failed: {source}")]
    Copy { addr: u64, source: GuestMemoryError },
    #[error(
        "the initramfs file ended after {read} of {size} bytes (was it changed while loading?)"
    )]
    ShortRead { read: u64, size: u64 },
}

/// Where an initramfs of `size` bytes goes: page aligned, ending at or below `top`,
/// starting at or above `lower` (rounded up to a page).
pub fn place_initramfs(size: u64, lower: u64, top: u64) -> Result<u64, InitramfsError> {
    let lower = lower.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
    let available = top.saturating_sub(lower);
    if size > available {
        return Err(InitramfsError::TooLarge {
            size,
            available,
            lower,
            top,
        });
    }
    // top - size >= lower and lower is page aligned, so rounding down stays >= lower.
    Ok((top - size) & !(PAGE_SIZE - 1))
}

/// Copies `file` into guest memory (see [`place_initramfs`]); returns `(address, size)`.
pub fn load_initramfs(
    mem: &GuestMemoryMmap,
    file: &mut File,
    lower: u64,
    top: u64,
) -> Result<(u64, u64), InitramfsError> {
    let size = file.metadata().map_err(InitramfsError::Io)?.len();
    if size == 0 {
        return Err(InitramfsError::Empty);
    }
    let addr = place_initramfs(size, lower, top)?;
    file.seek(SeekFrom::Start(0)).map_err(InitramfsError::Io)?;
    // One read() moves at most ~2 GiB, so loop until everything is in.
    let mut done = 0u64;
    while done < size {
        let at = addr + done;
        let n = mem
            .read_volatile_from(GuestAddress(at), file, (size - done) as usize)
            .map_err(|source| InitramfsError::Copy { addr: at, source })?;
        if n == 0 {
            return Err(InitramfsError::ShortRead { read: done, size });
        }
        done += n as u64;
    }
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::test_util::file_with;

    #[test]
    fn placement_is_page_aligned_at_the_top() {
        assert_eq!(
            place_initramfs(5000, 0x20_0000, 0x800_0000).unwrap(),
            0x7ff_e000
        );
        assert_eq!(place_initramfs(0x1000, 0, 0x1000).unwrap(), 0);
        // An unaligned top (initrd_addr_max + 1) still ends at or below it.
        let a = place_initramfs(0x10, 0, 0x3800_0000 - 1).unwrap();
        assert_eq!(a % 0x1000, 0);
        assert!(a + 0x10 < 0x3800_0000);
    }

    #[test]
    fn too_large_reports_sizes() {
        let err = place_initramfs(0x100_0000, 0x7f0_0001, 0x800_0000).unwrap_err();
        match &err {
            InitramfsError::TooLarge {
                size,
                available,
                lower,
                top,
            } => {
                assert_eq!(
                    (*size, *available, *lower, *top),
                    (0x100_0000, 0xf_f000, 0x7f0_1000, 0x800_0000)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("16777216 bytes"));
        assert!(
            place_initramfs(1, 0x900_0000, 0x800_0000).is_err(),
            "kernel above top"
        );
    }

    #[test]
    fn empty_file_is_rejected() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let err = load_initramfs(&mem, &mut file_with(&[]), 0x10_0000, 0x100_0000).unwrap_err();
        assert!(matches!(err, InitramfsError::Empty));
    }

    #[test]
    fn huge_sparse_initramfs_that_does_not_fit_fails_without_reading() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let mut f = file_with(&[]);
        f.set_len(64 << 30).unwrap(); // sparse: nothing is read
        let err = load_initramfs(&mem, &mut f, 0x10_0000, 0x100_0000).unwrap_err();
        assert!(matches!(err, InitramfsError::TooLarge { size, .. } if size == 64 << 30));
    }

    #[test]
    fn contents_land_at_the_returned_address() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (addr, size) =
            load_initramfs(&mem, &mut file_with(&data), 0x10_0000, 0x100_0000).unwrap();
        assert_eq!(size, 10_000);
        let mut back = vec![0; 10_000];
        mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
        assert_eq!(back, data);
    }
}
