//! A hostile driver's split virtqueue: descriptor table, available ring and indirect tables
//! all come from the input; the device side pops chains with virtio-queue and checks them with
//! `devices::virtio::chain::ChainBuffers::parse`, then copies data in and out with
//! `gather`/`scatter` and completes the chains.
//!
//! Properties: no panic; every accepted segment lies in guest RAM, readable ones first;
//! `split_at` keeps the byte count; gather/scatter stay within the segments.
//!
//! Input layout (little endian):
//! ```text
//! 0   u16  queue size as the driver writes it (the device offers 256)
//! 2   u8   flags: bit 0 EVENT_IDX
//! 3   u16  descriptor table address
//! 5   u16  available ring address
//! 7   u16  used ring address
//! 9   u16  next_avail the device starts from (ring wrap-around)
//! 11  u8   chains to pop at most
//! 12  ..   guest RAM image from address 0 (the tables and the buffers)
//! ```
#![no_main]

use libfuzzer_sys::fuzz_target;

use devices::virtio::chain::{gather, scatter, split_at, total_len, ChainBuffers};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemory;
use vmm_fuzz::{guest_memory, in_guest_ram, trace, Cursor};

const MAX_SIZE: u16 = 256;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let size = c.u16();
    let flags = c.u8();
    let desc = c.u16();
    let avail = c.u16();
    let used = c.u16();
    let next_avail = c.u16();
    let max_chains = c.u8();
    let mem = guest_memory(c.rest());

    let mut q = Queue::new(MAX_SIZE).unwrap();
    q.set_size(size);
    q.set_desc_table_address(Some(u32::from(desc)), Some(0));
    q.set_avail_ring_address(Some(u32::from(avail)), Some(0));
    q.set_used_ring_address(Some(u32::from(used)), Some(0));
    q.set_next_avail(next_avail);
    q.set_ready(true);
    // What devices::virtio::queue::take_queues demands before a device may use the queue.
    let size = q.size();
    if size == 0 || size > MAX_SIZE || !size.is_power_of_two() || !q.is_valid(&mem) {
        trace!("queue of size {size} refused");
        return;
    }
    q.set_event_idx(flags & 1 != 0);

    let mut scratch = vec![0u8; 0x2_0000];
    for _ in 0..max_chains {
        // One chain per pass, as devices::virtio::queue::DeviceQueue::pop takes them.
        let Ok(mut iter) = q.iter(&mem) else {
            // avail.idx ran more than the queue size ahead: the device ignores the queue.
            return;
        };
        let Some(chain) = iter.next() else {
            break;
        };
        let head = chain.head_index();
        let parsed = ChainBuffers::parse(&mem, chain.clone());
        trace!("chain {head}: {parsed:?}");
        let len = match parsed {
            Ok(bufs) => check_and_copy(&mem, &bufs, &mut scratch),
            Err(_) => 0,
        };
        // The used ring is guest memory the driver controls too; errors are fine, panics not.
        let _ = q.add_used(&mem, head, len);
        let _ = q.needs_notification(&mem);
    }
    let _ = q.enable_notification(&mem);
    let _ = q.disable_notification(&mem);
});

/// Checks what `parse` accepted and moves bytes through it like a device would; returns the
/// number of bytes written into the chain.
fn check_and_copy<M: GuestMemory>(mem: &M, bufs: &ChainBuffers, scratch: &mut [u8]) -> u32 {
    for seg in bufs.readable.iter().chain(&bufs.writable) {
        assert!(seg.len > 0, "zero-length segment kept: {seg:?}");
        assert!(
            in_guest_ram(seg.addr.0, u64::from(seg.len)),
            "segment outside guest RAM accepted: {seg:?}"
        );
    }
    let readable = bufs.readable_len();
    let writable = bufs.writable_len();
    assert_eq!(readable, total_len(&bufs.readable));

    // Split the readable stream like a block request does (header, then data).
    let at = readable.min(16);
    let (h, t) = split_at(&bufs.readable, at);
    assert_eq!(total_len(&h), at);
    assert_eq!(total_len(&h) + total_len(&t), readable);

    let n = (readable as usize).min(scratch.len());
    let got = gather(mem, &bufs.readable, &mut scratch[..n]).expect("gather of checked segments");
    assert_eq!(got, n);
    let n = (writable as usize).min(scratch.len());
    let put = scatter(mem, &bufs.writable, &scratch[..n]).expect("scatter into checked segments");
    assert_eq!(put, n);
    put as u32
}
