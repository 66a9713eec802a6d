//! Which IOVAs the host IOMMU lets the VM use. Guest RAM is DMA-mapped at IOVA = guest
//! physical address, so every RAM range must lie inside one range the kernel reports as usable
//! (VFIO_IOMMU_GET_INFO's VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE): the MSI window
//! 0xfee00000–0xfeefffff is reserved everywhere (the guest's 32-bit hole covers it), and on AMD
//! hosts so is 0xfd_0000_0000–0xff_ffff_ffff (HyperTransport), which a guest with more than
//! about 1011 GiB of RAM would reach. A guest that cannot fit is refused before anything is
//! mapped, with the range in the way and the largest RAM size that fits. With iommufd the
//! IOAS says the same through IOMMU_IOAS_IOVA_RANGES.

use std::io;
use std::os::fd::RawFd;

use super::seccomp::{IOMMU_IOAS_IOVA_RANGES, VFIO_IOMMU_GET_INFO};

/// `VFIO_IOMMU_INFO_CAPS`: the info has a capability chain.
const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
const CAP_IOVA_RANGE: u16 = 1;
/// `sizeof(struct vfio_iommu_type1_info)`.
const INFO_LEN: usize = 24;

/// The usable IOVA ranges `(first, last)` (inclusive, as the kernel gives them) of the
/// container `fd`; `None` when the kernel does not say (before Linux 5.4): nothing is checked.
pub fn usable_ranges(container: RawFd) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut buf = vec![0u8; INFO_LEN];
    loop {
        let argsz = buf.len() as u32;
        buf[0..4].copy_from_slice(&argsz.to_le_bytes());
        // SAFETY: the kernel writes at most argsz bytes into `buf`, which is that long.
        if unsafe { libc::ioctl(container, VFIO_IOMMU_GET_INFO as _, buf.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let want = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        if want > buf.len() && want <= 1 << 20 {
            buf = vec![0u8; want];
            continue;
        }
        return Ok(parse_info(&buf));
    }
}

/// The usable IOVA ranges `(first, last)` of the IOAS `ioas` in the iommufd `fd`
/// (IOMMU_IOAS_IOVA_RANGES: asked with room for 16, then as many as the kernel says).
pub fn ioas_ranges(fd: RawFd, ioas: u32) -> io::Result<Vec<(u64, u64)>> {
    let mut room = 16u32;
    loop {
        // struct iommu_iova_range { __aligned_u64 start; __aligned_u64 last; }
        let mut ranges = vec![[0u64; 2]; room as usize];
        // struct iommu_ioas_iova_ranges { u32 size, ioas_id, num_iovas, __reserved;
        // __aligned_u64 allowed_iovas; __aligned_u64 out_iova_alignment; }
        let mut arg = [0u64; 4];
        arg[0] = 32 | (u64::from(ioas) << 32);
        arg[1] = u64::from(room);
        arg[2] = ranges.as_mut_ptr() as u64;
        // SAFETY: the kernel reads `arg` (32 bytes, as its size field says) and writes at most
        // num_iovas ranges into `ranges`, which has room for that many.
        let rc = unsafe { libc::ioctl(fd, IOMMU_IOAS_IOVA_RANGES as _, arg.as_mut_ptr()) };
        let n = arg[1] as u32;
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EMSGSIZE) && n > room && n <= 4096 {
                room = n;
                continue;
            }
            return Err(e);
        }
        return Ok(ranges
            .iter()
            .take(n.min(room) as usize)
            .map(|r| (r[0], r[1]))
            .collect());
    }
}

/// The IOVA ranges in a `vfio_iommu_type1_info` and its capability chain.
pub fn parse_info(buf: &[u8]) -> Option<Vec<(u64, u64)>> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(buf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(buf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(buf.get(o..o + 8)?.try_into().ok()?));
    if u32_at(4)? & VFIO_IOMMU_INFO_CAPS == 0 {
        return None;
    }
    let mut cap = u32_at(16)? as usize;
    let mut hops = 0;
    while cap != 0 && hops < 64 {
        if u16_at(cap)? == CAP_IOVA_RANGE {
            let n = u32_at(cap + 8)? as usize;
            return (0..n)
                .map(|i| {
                    let at = cap + 16 + i * 16;
                    Some((u64_at(at)?, u64_at(at + 8)?))
                })
                .collect();
        }
        cap = u32_at(cap + 4)? as usize;
        hops += 1;
    }
    None
}

/// Every `(gpa, size)` RAM range inside one usable range, or why not.
pub fn check_ram(ram: &[(u64, u64)], usable: &[(u64, u64)]) -> Result<(), String> {
    for &(start, size) in ram {
        let last = start + size - 1;
        if usable.iter().any(|&(a, b)| a <= start && last <= b) {
            continue;
        }
        // The first reserved stretch the range reaches: from the end of the usable range
        // it starts in (or its start) to the next usable one.
        let hole_start = usable
            .iter()
            .find(|&&(a, b)| a <= start && start <= b)
            .map_or(start, |&(_, b)| b + 1);
        let hole_end = usable
            .iter()
            .map(|&(a, _)| a)
            .filter(|&a| a > hole_start)
            .min()
            .map_or(u64::MAX, |a| a - 1);
        let total: u64 = ram.iter().map(|r| r.1).sum();
        let fits = total - (last + 1 - hole_start);
        return Err(format!(
            "guest RAM at {start:#x}-{last:#x} reaches IOVAs {hole_start:#x}-{hole_end:#x}, \
             which this host's IOMMU reserves{}; a VM with passed-through devices can have at \
             most {} of RAM here",
            if hole_start == 0xfd_0000_0000 {
                " (AMD's HyperTransport range)"
            } else {
                ""
            },
            pci::format_size(fits)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// What an AMD host reports: all but the MSI window and HyperTransport's range.
    fn amd() -> Vec<(u64, u64)> {
        vec![
            (0, 0xfedf_ffff),
            (0xfef0_0000, 0xfc_ffff_ffff),
            (0x100_0000_0000, 0xffff_ffff_ffff),
        ]
    }

    #[test]
    fn guests_below_the_hypertransport_range_fit() {
        let ram = [(0, 3 * GIB), (4 * GIB, 1000 * GIB)];
        check_ram(&ram, &amd()).unwrap();
    }

    #[test]
    fn a_guest_reaching_the_hypertransport_range_is_refused_with_what_fits() {
        let ram = [(0, 3 * GIB), (4 * GIB, 1100 * GIB)];
        let e = check_ram(&ram, &amd()).unwrap_err();
        assert!(e.contains("0xfd00000000-0xffffffffff"), "{e}");
        assert!(e.contains("HyperTransport"), "{e}");
        // 3 GiB below 4 GiB + (0xfd00000000 - 4 GiB) above = 1011 GiB.
        assert!(e.contains("at most 1011 GiB"), "{e}");
    }

    #[test]
    fn ram_in_the_msi_window_is_refused() {
        let e = check_ram(&[(0, 0xfee0_1000)], &amd()).unwrap_err();
        assert!(e.contains("0xfee00000-0xfeefffff"), "{e}");
    }

    #[test]
    fn the_capability_chain_is_parsed_as_the_kernel_lays_it_out() {
        // vfio_iommu_type1_info (flags: PGSIZES | CAPS, cap_offset 24), then a migration
        // capability (id 2, next 40), then the IOVA ranges (id 1, 3 ranges).
        let mut b = vec![0u8; 24];
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[16..20].copy_from_slice(&24u32.to_le_bytes());
        let mut cap2 = vec![0u8; 16];
        cap2[0..2].copy_from_slice(&2u16.to_le_bytes());
        cap2[4..8].copy_from_slice(&40u32.to_le_bytes());
        b.extend_from_slice(&cap2);
        let mut cap1 = vec![0u8; 16];
        cap1[0..2].copy_from_slice(&1u16.to_le_bytes());
        cap1[8..12].copy_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&cap1);
        for (a, z) in amd() {
            b.extend_from_slice(&a.to_le_bytes());
            b.extend_from_slice(&z.to_le_bytes());
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(parse_info(&b), Some(amd()));
        // No CAPS flag: the kernel says nothing.
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse_info(&b), None);
        // A truncated chain is no answer, not a panic.
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(parse_info(&b[..60]), None);
    }
}
