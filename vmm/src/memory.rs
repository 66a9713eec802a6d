//! Guest RAM: anonymous mappings (or, shared with a vhost-user backend, one memfd) created lazily (nothing is touched until the guest touches it),
//! then registered with the hypervisor as memory slots.

use std::sync::{Arc, Mutex};

use hypervisor::{MemoryRegion, Vm};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap,
};

use crate::config::MemoryConfig;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {size} MiB of guest memory at {addr:#x}{hint}: {source}")]
    Mmap {
        addr: u64,
        size: u64,
        hint: &'static str,
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("cannot create the shared guest memory file (memfd): {0}")]
    SharedFile(#[source] std::io::Error),
    #[error("guest memory regions overlap or are invalid: {0}")]
    Regions(String),
    #[error("registering guest memory with the hypervisor: {0}")]
    Register(#[from] hypervisor::HypervisorError),
    #[error(
        "binding guest memory at {gpa:#x} (+{len:#x}) to host NUMA node {node}: {source}{hint}"
    )]
    Bind {
        gpa: u64,
        len: u64,
        node: u32,
        hint: &'static str,
        source: std::io::Error,
    },
}

/// MPOL_BIND (include/uapi/linux/mempolicy.h).
const MPOL_BIND: libc::c_int = 2;
/// MPOL_MF_MOVE: pages already faulted in (prefault=on) move to the node.
const MPOL_MF_MOVE: libc::c_uint = 1 << 1;

/// Binds `len` bytes of guest memory at `gpa` (inside one region) to host NUMA node `node`.
pub fn bind_to_host_node(
    mem: &GuestMemoryMmap,
    gpa: u64,
    len: u64,
    node: u32,
) -> Result<(), MemoryError> {
    let err = |hint, source| MemoryError::Bind {
        gpa,
        len,
        node,
        hint,
        source,
    };
    let host = mem
        .get_host_address(vm_memory::GuestAddress(gpa))
        .map_err(|e| err("", std::io::Error::other(e.to_string())))?;
    let words = node as usize / 64 + 1;
    let mut mask = vec![0u64; words];
    mask[node as usize / 64] |= 1 << (node % 64);
    // SAFETY: mbind changes only the memory policy of our own mapping; the mask outlives the
    // call and maxnode says how many bits it holds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            host,
            len as usize,
            MPOL_BIND,
            mask.as_ptr(),
            (words * 64 + 1) as libc::c_ulong,
            MPOL_MF_MOVE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    let hint = match e.raw_os_error() {
        Some(libc::EINVAL) => " (does the host have that node? see /sys/devices/system/node)",
        Some(libc::ENOSYS) => " (this host kernel has no NUMA support)",
        _ => "",
    };
    Err(err(hint, e))
}

/// A memory file of `size` bytes for shared guest RAM (hugetlb-backed with `hugepages`).
fn memfd(size: u64, hugepages: bool) -> Result<std::fs::File, MemoryError> {
    use std::os::fd::FromRawFd;
    let mut flags = libc::MFD_CLOEXEC;
    if hugepages {
        flags |= libc::MFD_HUGETLB;
    }
    // SAFETY: a NUL-terminated name; the fd returned is new and owned by the File.
    let fd = unsafe { libc::memfd_create(c"vmm-guest-ram".as_ptr(), flags) };
    if fd < 0 {
        return Err(MemoryError::SharedFile(std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(size).map_err(MemoryError::SharedFile)?;
    Ok(file)
}

/// Map the RAM ranges. With hugepages the mapping uses MAP_HUGETLB (pages must be reserved in
/// /proc/sys/vm/nr_hugepages); with prefault, MAP_POPULATE faults everything in now.
pub fn create(
    ranges: &[(GuestAddress, usize)],
    cfg: &MemoryConfig,
) -> Result<GuestMemoryMmap, MemoryError> {
    // MAP_NORESERVE: ordinary RAM is committed page by page as the guest touches it. Not with
    // huge pages: a hugetlb mapping without its reservation gets SIGBUS at the first fault
    // once the pool is short, killing the VMM mid-boot; reserved at mmap, a short pool is an
    // mmap error that says what to fix.
    //
    // Shared memory (`shared=on`, which a vhost-user device needs) is one memfd the regions map
    // at their offsets: the backend is given the file, not an address. Private memory stays
    // anonymous (no file, nothing to pay for it at first light).
    let mut flags = 0;
    if !cfg.hugepages {
        flags |= libc::MAP_NORESERVE;
    }
    let file = if cfg.shared {
        flags |= libc::MAP_SHARED;
        let total = ranges.iter().map(|r| r.1 as u64).sum();
        Some(Arc::new(memfd(total, cfg.hugepages)?))
    } else {
        flags |= libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if cfg.hugepages {
            flags |= libc::MAP_HUGETLB;
        }
        None
    };
    let mut offset = 0u64;
    if cfg.prefault {
        flags |= libc::MAP_POPULATE;
    }
    let mut regions = Vec::with_capacity(ranges.len());
    for &(addr, size) in ranges {
        let hint = if cfg.hugepages {
            " (are enough 2 MiB hugepages reserved in /proc/sys/vm/nr_hugepages?)"
        } else {
            ""
        };
        let mut builder = MmapRegionBuilder::new(size)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .with_hugetlbfs(cfg.hugepages);
        if let Some(f) = &file {
            builder = builder.with_file_offset(FileOffset::from_arc(f.clone(), offset));
            offset += size as u64;
        }
        let hole = AlignedHole::new(size, addr.0);
        let mapping = builder.build().map_err(|source| MemoryError::Mmap {
            addr: addr.0,
            size: (size >> 20) as u64,
            hint,
            source,
        })?;
        drop(hole);
        if !aligned_like(mapping.as_ptr(), addr.0) {
            log::debug!(
                "guest RAM at {:#x} is mapped at {:p}, not 2 MiB-aligned like it: no huge pages \
                 for the guest there",
                addr.0,
                mapping.as_ptr()
            );
        }
        if !cfg.hugepages {
            advise_thp(mapping.as_ptr(), addr.0, size);
        }
        let region = GuestRegionMmap::new(mapping, addr)
            .ok_or_else(|| MemoryError::Regions(format!("region at {:#x} overflows", addr.0)))?;
        regions.push(Arc::new(region));
    }
    GuestMemoryMmap::from_arc_regions(regions).map_err(|e| MemoryError::Regions(e.to_string()))
}

/// Map guest RAM from a snapshot's memory file: each `(gpa, size, offset)` region privately
/// (copy-on-write), so nothing is copied at restore, pages are read from the file as the guest
/// touches them, and every VM restored from one file shares the pages it has not written.
/// `prefault`: read everything in now instead ([`populate_read`]).
pub fn from_file(
    file: &std::fs::File,
    ranges: &[(GuestAddress, usize, u64)],
    prefault: bool,
) -> Result<GuestMemoryMmap, MemoryError> {
    let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
    let mut regions = Vec::with_capacity(ranges.len());
    for &(addr, size, offset) in ranges {
        let fd = file
            .try_clone()
            .map_err(|e| MemoryError::Regions(e.to_string()))?;
        let mapping = MmapRegionBuilder::new(size)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .with_file_offset(vm_memory::FileOffset::new(fd, offset))
            .build()
            .map_err(|source| MemoryError::Mmap {
                addr: addr.0,
                size: (size >> 20) as u64,
                hint: " (from the snapshot's memory file)",
                source,
            })?;
        if prefault {
            populate_read(mapping.as_ptr(), size);
        }
        let region = GuestRegionMmap::new(mapping, addr)
            .ok_or_else(|| MemoryError::Regions(format!("region at {:#x} overflows", addr.0)))?;
        regions.push(Arc::new(region));
    }
    GuestMemoryMmap::from_arc_regions(regions).map_err(|e| MemoryError::Regions(e.to_string()))
}

/// `madvise(MADV_POPULATE_READ)`, Linux 5.14.
pub const MADV_POPULATE_READ: libc::c_int = 22;

/// Map every page of a private file mapping for reading, now: the pages come from the page
/// cache and stay shared with every other mapping of the file until the guest writes one.
/// (MAP_POPULATE would fault a writable private mapping for writing: a private copy of every
/// page, in every clone.) Older kernels get MADV_WILLNEED (read-ahead only).
fn populate_read(host: *mut u8, size: usize) {
    // SAFETY: advice on a mapping of `size` bytes at `host` that the caller just created.
    let rc = unsafe { libc::madvise(host.cast(), size, MADV_POPULATE_READ) };
    if rc != 0 {
        // SAFETY: as above.
        unsafe { libc::madvise(host.cast(), size, libc::MADV_WILLNEED) };
    }
}

/// The alignment guest RAM's host mapping needs for 2 MiB pages: KVM maps a guest page with a
/// huge page only where the host address and the guest-physical address are aligned alike.
const RAM_ALIGN: u64 = 2 << 20;

/// Whether `host` is aligned like the guest-physical address `gpa` (modulo [`RAM_ALIGN`]).
fn aligned_like(host: *const u8, gpa: u64) -> bool {
    (host as u64).wrapping_sub(gpa).is_multiple_of(RAM_ALIGN)
}

/// A hole of exactly `size` bytes, at an address aligned like `gpa`, in a reservation of
/// address space (PROT_NONE, no memory), so that the next `mmap` of `size` bytes (vm-memory's,
/// which takes no address) lands there: the kernel places a mapping in the highest gap that
/// fits, and the reservation was just taken from the top. Linux 6.7+ aligns large anonymous
/// mappings itself; 6.1 does not, and there an unaligned guest boots ~20 % slower in the
/// nested lab (every guest page a 4 KiB page in KVM). Dropping it releases what is left of the
/// reservation; a mapping that landed elsewhere only loses the huge pages.
struct AlignedHole {
    base: usize,
    span: usize,
    start: usize,
    size: usize,
}

impl AlignedHole {
    fn new(size: usize, gpa: u64) -> Option<AlignedHole> {
        if (size as u64) < RAM_ALIGN {
            return None;
        }
        let span = size.checked_add(RAM_ALIGN as usize)?;
        let base = crate::vfio::aligned_mmap::reserve(span).ok()?;
        let start =
            crate::vfio::aligned_mmap::first_at(base as u64, RAM_ALIGN, gpa % RAM_ALIGN) as usize;
        // SAFETY: [start, start+size) lies inside the reservation made above.
        unsafe { libc::munmap(start as *mut libc::c_void, size) };
        Some(AlignedHole {
            base,
            span,
            start,
            size,
        })
    }
}

impl Drop for AlignedHole {
    fn drop(&mut self) {
        // The hole itself may hold guest RAM now: only its surroundings go.
        crate::vfio::aligned_mmap::release_around(self.base, self.span, self.start, self.size);
    }
}

/// Transparent huge pages cut the guest's fault and page-walk costs once it runs. The first
/// 2 MiB of guest-physical memory hold only boot structures (zero page, page tables, MP and
/// ACPI tables) written a few bytes at a time: huge pages there would make each boot zero and
/// keep a whole 2 MiB page for a few KiB, so they are left to 4 KiB pages. Advice only: where
/// THP is disabled nothing changes.
fn advise_thp(host: *mut u8, guest_addr: u64, size: usize) {
    const LOW: u64 = 2 << 20;
    let skip = LOW.saturating_sub(guest_addr).min(size as u64) as usize;
    if skip < size {
        // SAFETY: [host+skip, host+size) lies inside a mapping we just created and own.
        unsafe { libc::madvise(host.add(skip).cast(), size - skip, libc::MADV_HUGEPAGE) };
    }
}

/// Register every region as a slot, numbered from 0 in address order.
pub fn register(vm: &dyn Vm, mem: &GuestMemoryMmap) -> Result<Vec<MemoryRegion>, MemoryError> {
    let mut slots = Vec::new();
    for (slot, r) in mem.iter().enumerate() {
        let region = MemoryRegion {
            slot: slot as u32,
            guest_phys_addr: r.start_addr().0,
            size: r.len(),
            host_addr: r.as_ptr() as u64,
            readonly: false,
        };
        // SAFETY: `mem` owns the mappings and the VMM keeps it alive as long as the VM.
        unsafe { vm.set_memory_region(region)? };
        slots.push(region);
    }
    Ok(slots)
}

/// KVM memory slot numbers for mappings made after guest RAM (VFIO BAR areas). RAM takes
/// slots `0..n` at boot; these start at `n` and are reused once freed.
#[derive(Debug)]
pub struct SlotAllocator {
    first: u32,
    state: Mutex<(u32, Vec<u32>)>,
}

impl SlotAllocator {
    /// KVM_MEM_SLOTS_NUM on x86 (32767 user slots, less a few private ones).
    pub const LIMIT: u32 = 32764;

    /// Slots from `first` (the number of RAM slots) up.
    pub fn new(first: u32) -> Self {
        SlotAllocator {
            first,
            state: Mutex::new((first, Vec::new())),
        }
    }

    /// A free slot number, or `None` when every slot is taken.
    pub fn allocate(&self) -> Option<u32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = s.1.pop() {
            return Some(slot);
        }
        if s.0 >= Self::LIMIT {
            return None;
        }
        s.0 += 1;
        Some(s.0 - 1)
    }

    /// Gives back a slot from `allocate` once the hypervisor no longer has it.
    pub fn free(&self, slot: u32) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if (self.first..s.0).contains(&slot) && !s.1.contains(&slot) {
            s.1.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;

    #[test]
    fn creates_lazy_regions_and_registers_one_slot_each() {
        let ranges = [
            (GuestAddress(0), 64 << 20),
            (GuestAddress(1 << 32), 32 << 20),
        ];
        let mem = create(&ranges, &MemoryConfig::default()).unwrap();
        assert_eq!(mem.num_regions(), 2);
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let slots = register(vm.as_ref(), &mem).unwrap();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[1].slot, 1);
        assert_eq!(slots[1].guest_phys_addr, 1 << 32);
        assert_eq!(slots[1].size, 32 << 20);
        assert!(hv.calls().contains(&Call::SetMemoryRegion(slots[0])));
        // Each region's host mapping is aligned like its guest address (huge pages in KVM).
        for r in mem.iter() {
            assert!(
                aligned_like(r.as_ptr(), r.start_addr().0),
                "{:p}",
                r.as_ptr()
            );
        }
    }

    fn anon(size: usize) -> vm_memory::mmap::MmapRegion {
        MmapRegionBuilder::<()>::new(size)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
            .build()
            .unwrap()
    }

    #[test]
    fn the_next_mapping_lands_in_the_aligned_hole_where_the_kernel_does_not_align() {
        // A 1 MiB phase, which no kernel picks by itself: a mapping there is in the hole.
        let size = 8 << 20;
        let gpa = 0x10_0000;
        let hole = AlignedHole::new(size, gpa).unwrap();
        let region = anon(size);
        drop(hole);
        let in_hole = region.as_ptr() as u64 % RAM_ALIGN == gpa;
        // Linux 6.7+ pads a large anonymous mapping's search to align it to 2 MiB itself, so
        // the exact-size hole is passed over there; older kernels (Debian 12's 6.1) take it.
        let kernel_aligns = (0..4).all(|_| (anon(size).as_ptr() as u64).is_multiple_of(RAM_ALIGN));
        assert!(in_hole || kernel_aligns, "{:p}", region.as_ptr());
        // Below 2 MiB there is nothing to align.
        assert!(AlignedHole::new(1 << 20, 0).is_none());
    }

    #[test]
    fn slots_start_after_ram_and_are_reused() {
        let slots = SlotAllocator::new(2);
        assert_eq!(slots.allocate(), Some(2));
        assert_eq!(slots.allocate(), Some(3));
        slots.free(2);
        slots.free(2);
        slots.free(0); // a RAM slot is never handed out
        assert_eq!(slots.allocate(), Some(2));
        assert_eq!(slots.allocate(), Some(4));
        let full = SlotAllocator::new(SlotAllocator::LIMIT);
        assert_eq!(full.allocate(), None);
    }

    #[test]
    fn a_large_guest_costs_no_resident_memory() {
        // 64 GiB of guest RAM maps instantly with MAP_NORESERVE and nothing is touched.
        let ranges = [
            (GuestAddress(0), 3 << 30),
            (GuestAddress(1 << 32), 61 << 30),
        ];
        let mem = create(&ranges, &MemoryConfig::default()).unwrap();
        assert_eq!(mem.iter().map(|r| r.len()).sum::<u64>(), 64 << 30);
    }

    /// Free 2 MiB huge pages in the host's pool (/proc/meminfo).
    fn free_huge_pages() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn hugepages_beyond_the_pool_are_an_error_not_a_sigbus_later() {
        // 64 MiB more than the pool holds: with MAP_NORESERVE the mmap would succeed and the
        // first touch past the pool would kill the process with SIGBUS.
        let size = (free_huge_pages() << 21) + (64 << 20);
        let cfg = MemoryConfig {
            hugepages: true,
            ..MemoryConfig::default()
        };
        let err = create(&[(GuestAddress(0), size as usize)], &cfg).unwrap_err();
        assert!(
            err.to_string().contains("nr_hugepages"),
            "the error says how to fix it: {err}"
        );
    }
}
