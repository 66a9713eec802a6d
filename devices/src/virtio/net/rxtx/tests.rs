//! RX/TX path tests against a fake tap, without a worker thread.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::virtio::device::{ActivatedQueue, VirtioInterruptType};
use crate::virtio::net::fake_tap::{fake_tap, Peer};
use crate::virtio::test_utils::{guest_memory, RecordingInterrupt, TestQueue, F_WRITE};

struct Setup {
    mem: GuestMemoryMmap,
    rx: TestQueue,
    tx: TestQueue,
    pair: QueuePair,
    peer: Peer,
    irq: Arc<RecordingInterrupt>,
    dyn_irq: Arc<dyn VirtioInterrupt>,
    counters: Arc<Counters>,
}

fn device_queue(tq: &TestQueue, index: u16) -> DeviceQueue {
    DeviceQueue::new(
        ActivatedQueue {
            index,
            queue: tq.queue(),
            notifier: EventFd::new(EFD_NONBLOCK).unwrap(),
        },
        false,
    )
}

fn setup() -> Setup {
    let mem = guest_memory();
    let rx = TestQueue::at(&mem, 0, 16);
    let tx = TestQueue::at(&mem, 1, 16);
    let (tap, peer) = fake_tap();
    let counters = Arc::new(Counters::new(net::NAMES));
    let pair = QueuePair::new(
        Some(device_queue(&rx, 0)),
        Some(device_queue(&tx, 1)),
        Box::new(tap),
    )
    .with_counters(counters.clone());
    let irq = Arc::new(RecordingInterrupt::default());
    Setup {
        mem,
        rx,
        tx,
        pair,
        peer,
        dyn_irq: irq.clone(),
        irq,
        counters,
    }
}

/// A frame with a vnet header (flags byte set so it is recognisable) and
/// `payload_len` bytes of payload.
fn frame(payload_len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN + payload_len];
    f[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    for (i, b) in f[VNET_HDR_LEN..].iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
    f
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

fn num_buffers(mem: &GuestMemoryMmap, addr: u64) -> u16 {
    u16::from_le_bytes(read(mem, addr + 10, 2).try_into().unwrap())
}

#[test]
fn tx_sends_header_and_payload_as_one_frame() {
    let mut s = setup();
    let f = frame(100, 3);
    s.mem
        .write_slice(&f[..VNET_HDR_LEN], GuestAddress(0x10_0000))
        .unwrap();
    s.mem
        .write_slice(&f[VNET_HDR_LEN..], GuestAddress(0x10_1000))
        .unwrap();
    s.tx.add_chain(&[(0x10_0000, VNET_HDR_LEN as u32, 0), (0x10_1000, 100, 0)]);
    s.pair.process_tx(&s.mem, &s.dyn_irq);
    assert_eq!(s.peer.try_recv().unwrap(), f);
    assert_eq!(s.tx.used_elem(0), (0, 0));
    assert_eq!(s.irq.count(VirtioInterruptType::Queue(1)), 1);
}

#[test]
fn tx_drops_bad_chains_and_keeps_going() {
    let mut s = setup();
    // Device-writable buffer, a runt shorter than the header, a buffer
    // outside guest memory; then a good frame.
    s.tx.add_chain(&[(0x10_0000, 64, F_WRITE)]);
    s.tx.add_chain(&[(0x10_0000, 4, 0)]);
    s.tx.add_chain(&[(u64::MAX - 4, 64, 0)]);
    s.tx.add_chain(&[(0x10_0000, (MAX_FRAME_LEN + 1) as u32, 0)]);
    let f = frame(20, 9);
    s.mem.write_slice(&f, GuestAddress(0x10_0000)).unwrap();
    s.tx.add_chain(&[(0x10_0000, f.len() as u32, 0)]);
    s.pair.process_tx(&s.mem, &s.dyn_irq);
    assert_eq!(s.tx.used_idx(), 5);
    assert_eq!(s.peer.try_recv().unwrap(), f);
    assert!(s.peer.try_recv().is_none());
    // Only the frame that reached the tap counts, without its virtio header.
    assert_eq!(
        s.counters.read(),
        [
            ("rx_bytes", 0),
            ("rx_frames", 0),
            ("tx_bytes", 20),
            ("tx_frames", 1)
        ]
    );
}

#[test]
fn rx_fills_one_buffer_and_sets_num_buffers() {
    let mut s = setup();
    s.rx.add_chain(&[(0x20_0000, 2048, F_WRITE)]);
    let f = frame(60, 1);
    s.peer.send(&f);
    s.pair.process_rx(&s.mem, &s.dyn_irq, false);
    assert_eq!(s.rx.used_elem(0), (0, f.len() as u32));
    let got = read(&s.mem, 0x20_0000, f.len());
    assert_eq!(got[VNET_HDR_LEN..], f[VNET_HDR_LEN..]);
    assert_eq!(got[0], 1);
    assert_eq!(num_buffers(&s.mem, 0x20_0000), 1);
    assert_eq!(s.irq.count(VirtioInterruptType::Queue(0)), 1);
    assert_eq!(s.counters.read()[..2], [("rx_bytes", 60), ("rx_frames", 1)]);
}

#[test]
fn rx_waits_for_buffers_then_delivers() {
    let mut s = setup();
    let f = frame(40, 5);
    s.peer.send(&f);
    s.pair.process_rx(&s.mem, &s.dyn_irq, false);
    assert_eq!(s.rx.used_idx(), 0);
    s.rx.add_chain(&[(0x20_0000, 1024, F_WRITE)]);
    s.pair.process_rx(&s.mem, &s.dyn_irq, false);
    assert_eq!(s.rx.used_elem(0), (0, f.len() as u32));
}

#[test]
fn rx_drops_a_frame_too_big_for_the_buffer_but_keeps_the_buffer() {
    let mut s = setup();
    s.rx.add_chain(&[(0x20_0000, 100, F_WRITE)]);
    s.peer.send(&frame(500, 0));
    let small = frame(30, 7);
    s.peer.send(&small);
    s.pair.process_rx(&s.mem, &s.dyn_irq, false);
    assert_eq!(s.rx.used_idx(), 1);
    assert_eq!(s.rx.used_elem(0), (0, small.len() as u32));
    assert_eq!(read(&s.mem, 0x20_0000 + 12, 30), small[12..]);
}

#[test]
fn mergeable_rx_spreads_a_frame_over_several_buffers() {
    let mut s = setup();
    for i in 0..3u64 {
        s.rx.add_chain(&[(0x20_0000 + i * 0x1000, 1024, F_WRITE)]);
    }
    let f = frame(3000 - VNET_HDR_LEN, 11);
    s.peer.send(&f);
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 3);
    assert_eq!(s.rx.used_elem(0), (0, 1024));
    assert_eq!(s.rx.used_elem(1), (1, 1024));
    assert_eq!(s.rx.used_elem(2), (2, 952));
    assert_eq!(num_buffers(&s.mem, 0x20_0000), 3);
    let mut got = read(&s.mem, 0x20_0000, 1024);
    got.extend(read(&s.mem, 0x20_1000, 1024));
    got.extend(read(&s.mem, 0x20_2000, 952));
    assert_eq!(got[VNET_HDR_LEN..], f[VNET_HDR_LEN..]);
}

#[test]
fn mergeable_rx_waits_until_enough_buffers_are_posted() {
    let mut s = setup();
    s.rx.add_chain(&[(0x20_0000, 1024, F_WRITE)]);
    let f = frame(1500, 2);
    s.peer.send(&f);
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 0, "one buffer is not enough");
    s.rx.add_chain(&[(0x20_1000, 1024, F_WRITE)]);
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 2);
    assert_eq!(num_buffers(&s.mem, 0x20_0000), 2);
}

#[test]
fn rx_completes_bad_chains_empty_and_uses_the_next_one() {
    let mut s = setup();
    s.rx.add_chain(&[(u64::MAX - 100, 64, F_WRITE)]);
    s.rx.add_chain(&[(0x20_0000, 64, 0)]);
    s.rx.add_chain(&[(0x20_1000, 1024, F_WRITE)]);
    let f = frame(50, 4);
    s.peer.send(&f);
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 3);
    assert_eq!(s.rx.used_elem(0), (0, 0));
    assert_eq!(s.rx.used_elem(1), (1, 0));
    assert_eq!(s.rx.used_elem(2), (2, f.len() as u32));
}

#[test]
fn rx_does_not_stall_when_all_buffers_together_are_too_small() {
    let mut s = setup();
    // 16 buffers of 8 bytes fill the ring and cannot hold a 200-byte frame.
    for i in 0..16u64 {
        s.rx.add_chain(&[(0x20_0000 + i * 0x100, 8, F_WRITE)]);
    }
    s.peer.send(&frame(188, 0));
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 0);
    // The frame was dropped, so a small one now goes through.
    s.peer.send(&frame(0, 0));
    s.pair.process_rx(&s.mem, &s.dyn_irq, true);
    assert_eq!(s.rx.used_idx(), 2);
    // The 12-byte header straddles the two 8-byte buffers.
    assert_eq!(read(&s.mem, 0x20_0100 + 2, 2), [2, 0]);
}
