//! Test helpers: guest memory, a driver-side split queue laid out in it, an
//! interrupt recorder and a polling wait for worker-thread tests.
//!
//! virtio-queue's own `mock::MockSplitQueue` is not used because it allocates
//! descriptors from a free list it does not let tests reuse or corrupt, and
//! the hostile-guest tests need exactly that.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::device::{VirtioInterrupt, VirtioInterruptType};
use super::queue::Chain;

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Size of the test guest memory (one region at 0).
pub const MEM_SIZE: u64 = 0x100_0000;
/// Where the rings of the first test queue live; buffers go at 1 MiB+.
const RING_BASE: u64 = 0x1_0000;
/// Space reserved per queue's rings.
const RING_STRIDE: u64 = 0x1_0000;

pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

/// The test guest memory backed by a file (a memfd), as `--memory shared=on` makes it: what a
/// vhost-user backend can be given.
pub fn shared_guest_memory() -> GuestMemoryMmap {
    use std::os::fd::FromRawFd;
    use vm_memory::mmap::MmapRegionBuilder;
    use vm_memory::{FileOffset, GuestRegionMmap};
    // SAFETY: a NUL-terminated name; the new fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"test-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(MEM_SIZE).unwrap();
    let mapping = MmapRegionBuilder::new(MEM_SIZE as usize)
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_SHARED)
        .with_file_offset(FileOffset::new(file, 0))
        .build()
        .unwrap();
    let region = GuestRegionMmap::new(mapping, GuestAddress(0)).unwrap();
    GuestMemoryMmap::from_regions(vec![region]).unwrap()
}

/// The driver's view of a split queue in guest memory, plus (for tests that
/// want chains directly) a device-side `Queue` over the same rings.
pub struct TestQueue {
    mem: GuestMemoryMmap,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    device: Queue,
}

impl TestQueue {
    /// Queue 0's rings.
    pub fn new(mem: &GuestMemoryMmap, size: u16) -> Self {
        Self::at(mem, 0, size)
    }

    /// The rings of test queue number `slot` (distinct memory per slot).
    pub fn at(mem: &GuestMemoryMmap, slot: u64, size: u16) -> Self {
        let desc = RING_BASE + slot * RING_STRIDE;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        mem.write_slice(&vec![0u8; RING_STRIDE as usize], GuestAddress(desc))
            .unwrap();
        let mut tq = TestQueue {
            mem: mem.clone(),
            size,
            desc,
            avail,
            used,
            next_desc: 0,
            avail_idx: 0,
            device: Queue::new(size).unwrap(),
        };
        tq.device = tq.queue();
        tq
    }

    /// A device-side queue configured for these rings, ready.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_ready(true);
        q
    }

    pub fn write_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.desc + 16 * u64::from(index));
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&raw, at).unwrap();
    }

    /// Writes a chain of `(addr, len, flags)` into consecutive descriptors
    /// (`NEXT` links are added), publishes it and returns its head.
    pub fn add_chain(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let next = (index + 1) % self.size;
            let flags = if i + 1 < descs.len() {
                flags | F_NEXT
            } else {
                flags
            };
            self.write_desc(index, addr, len, flags, next);
        }
        self.next_desc = (head + descs.len() as u16) % self.size;
        self.publish(head);
        head
    }

    /// Puts `head` in the available ring and bumps `avail.idx`.
    pub fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem
            .write_obj(head.to_le(), GuestAddress(self.avail + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx.to_le(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    pub fn used_idx(&self) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(self.used + 2)).unwrap())
    }

    /// Entry `i` of the used ring: (head id, written length).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    /// Pops the next chain through the internal device-side queue.
    pub fn pop<'a>(&mut self, mem: &'a GuestMemoryMmap) -> Chain<'a> {
        self.device.iter(mem).unwrap().next().expect("a chain")
    }
}

/// Records every interrupt raised.
#[derive(Debug, Default)]
pub struct RecordingInterrupt(pub Mutex<Vec<VirtioInterruptType>>);

impl RecordingInterrupt {
    pub fn count(&self, kind: VirtioInterruptType) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == kind)
            .count()
    }
}

impl VirtioInterrupt for RecordingInterrupt {
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()> {
        self.0.lock().unwrap().push(kind);
        Ok(())
    }
}

/// Polls `cond` for up to 5 seconds; whether it became true.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}
