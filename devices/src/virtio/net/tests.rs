//! Device-level tests: features, config space, activation and frames going
//! through the worker thread to a fake tap.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::fake_tap::{fake_tap, Peer};
use super::*;
use crate::virtio::device::{ActivatedQueue, VirtioInterruptType};
use crate::virtio::test_utils::{guest_memory, wait_until, RecordingInterrupt, TestQueue, F_WRITE};

fn config(num_queues: u16) -> NetConfig {
    NetConfig {
        mac: Some("52:54:00:12:34:56".parse().unwrap()),
        num_queues,
        queue_size: 16,
        ..NetConfig::default()
    }
}

fn device(num_queues: u16) -> (Net, Vec<Peer>) {
    let (taps, peers): (Vec<_>, Vec<_>) = (0..num_queues / 2)
        .map(|_| {
            let (t, p) = fake_tap();
            (Box::new(t) as Box<dyn Tap>, p)
        })
        .unzip();
    (Net::with_taps(&config(num_queues), taps).unwrap(), peers)
}

struct Harness {
    mem: GuestMemoryMmap,
    queues: Vec<TestQueue>,
    kicks: Vec<EventFd>,
    irq: Arc<RecordingInterrupt>,
    dev: Net,
    peers: Vec<Peer>,
}

fn activate(mut dev: Net, peers: Vec<Peer>, acked: u64) -> Harness {
    dev.ack_features(acked);
    let mem = guest_memory();
    let n = dev.queue_max_sizes().len();
    let queues: Vec<_> = (0..n).map(|i| TestQueue::at(&mem, i as u64, 16)).collect();
    let mut kicks = Vec::new();
    let mut activated = Vec::new();
    for (i, tq) in queues.iter().enumerate() {
        let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
        kicks.push(notifier.try_clone().unwrap());
        activated.push(ActivatedQueue {
            index: i as u16,
            queue: tq.queue(),
            notifier,
        });
    }
    let irq = Arc::new(RecordingInterrupt::default());
    let ctx = ActivateContext {
        mem: mem.clone(),
        queues: activated,
        interrupt: irq.clone(),
        worker_init: None,
    };
    dev.activate(ctx).unwrap();
    Harness {
        mem,
        queues,
        kicks,
        irq,
        dev,
        peers,
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(payload);
    f
}

#[test]
fn config_space_holds_the_mac_and_queue_pairs() {
    let (dev, _peers) = device(4);
    let mut cfg = [0u8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[0..6], &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 2);
    let mut mac_tail = [0u8; 2];
    dev.read_config(4, &mut mac_tail);
    assert_eq!(mac_tail, [0x34, 0x56]);
    assert_eq!(dev.mac().to_string(), "52:54:00:12:34:56");
    assert_eq!(dev.device_type(), 1);
}

#[test]
fn multiqueue_adds_a_control_queue_and_its_features() {
    let (one, _p) = device(2);
    assert_eq!(one.queue_max_sizes(), &[16, 16]);
    assert_eq!(one.features() & (1 << VIRTIO_NET_F_MQ), 0);
    assert_ne!(one.features() & (1 << VIRTIO_NET_F_MAC), 0);
    assert_ne!(one.features() & (1 << VIRTIO_NET_F_MRG_RXBUF), 0);
    let (two, _p) = device(4);
    assert_eq!(two.queue_max_sizes().len(), 5);
    assert_ne!(two.features() & (1 << VIRTIO_NET_F_MQ), 0);
    assert_ne!(two.features() & (1 << VIRTIO_NET_F_CTRL_VQ), 0);
}

#[test]
fn bad_settings_are_rejected() {
    let taps = || -> Vec<Box<dyn Tap>> { vec![Box::new(fake_tap().0)] };
    for nq in [0, 1, 3, 2 * MAX_QUEUE_PAIRS + 2] {
        let err = Net::with_taps(&config(nq), taps()).err().unwrap();
        assert!(matches!(err, NetError::NumQueues(n) if n == nq));
    }
    let err = Net::with_taps(&config(4), taps()).err().unwrap();
    assert!(matches!(err, NetError::TapCount { taps: 1, pairs: 2 }));
    let cfg = NetConfig {
        queue_size: 100,
        ..config(2)
    };
    assert!(matches!(
        Net::with_taps(&cfg, taps()),
        Err(NetError::QueueSize(100))
    ));
}

#[test]
fn a_random_mac_is_used_when_none_is_given() {
    let cfg = NetConfig::default();
    let dev = Net::with_taps(&cfg, vec![Box::new(fake_tap().0)]).unwrap();
    assert!(dev.mac().is_local_unicast());
}

#[test]
fn offloads_follow_the_acked_guest_features() {
    let acked = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    assert_eq!(
        tap_offload_flags(acked),
        libc::TUN_F_CSUM | libc::TUN_F_TSO4
    );
    assert_eq!(tap_offload_flags(0), 0);
    let (dev, peers) = device(2);
    let h = activate(dev, peers, VIRTIO_F_VERSION_1 | acked);
    assert_eq!(h.peers[0].offload(), libc::TUN_F_CSUM | libc::TUN_F_TSO4);
}

#[test]
fn activation_needs_version_1_and_keeps_the_taps_on_failure() {
    let (mut dev, _peers) = device(2);
    dev.ack_features(bit(VIRTIO_NET_F_MAC));
    let ctx = ActivateContext {
        mem: guest_memory(),
        queues: Vec::new(),
        interrupt: Arc::new(RecordingInterrupt::default()),
        worker_init: None,
    };
    let err = dev.activate(ctx).unwrap_err();
    assert!(matches!(err, ActivateError::MissingFeature(_)));
    dev.ack_features(VIRTIO_F_VERSION_1);
    let ctx = ActivateContext {
        mem: guest_memory(),
        queues: Vec::new(),
        interrupt: Arc::new(RecordingInterrupt::default()),
        worker_init: None,
    };
    assert!(matches!(
        dev.activate(ctx),
        Err(ActivateError::MissingQueue(0))
    ));
    // The taps are still there for a proper activation.
    let (_, peers) = device(2);
    let h = activate(dev, peers, VIRTIO_F_VERSION_1);
    assert!(h.dev.is_active());
}

#[test]
fn frames_flow_both_ways_through_the_worker() {
    let (dev, peers) = device(2);
    let mut h = activate(dev, peers, u64::MAX);
    // Guest -> host.
    let out = frame(b"guest says hi");
    h.mem.write_slice(&out, GuestAddress(0x10_0000)).unwrap();
    h.queues[1].add_chain(&[(0x10_0000, out.len() as u32, 0)]);
    h.kicks[1].write(1).unwrap();
    let peer = &h.peers[0];
    let mut got = None;
    assert!(wait_until(|| {
        got = got.take().or_else(|| peer.try_recv());
        got.is_some()
    }));
    assert_eq!(got.unwrap(), out);
    // Host -> guest: buffers first, then the frame wakes the worker.
    h.queues[0].add_chain(&[(0x20_0000, 2048, F_WRITE)]);
    h.kicks[0].write(1).unwrap();
    let inbound = frame(b"host says hello");
    h.peers[0].send(&inbound);
    let rx = &h.queues[0];
    assert!(wait_until(|| rx.used_idx() == 1));
    assert_eq!(rx.used_elem(0).1, inbound.len() as u32);
    let mut buf = vec![0u8; inbound.len()];
    h.mem.read_slice(&mut buf, GuestAddress(0x20_0000)).unwrap();
    assert_eq!(&buf[VNET_HDR_LEN..], b"host says hello");
    assert!(wait_until(
        || h.irq.count(VirtioInterruptType::Queue(0)) == 1
    ));
}

#[test]
fn a_frame_arriving_before_buffers_is_delivered_once_they_are_posted() {
    let (dev, peers) = device(2);
    let mut h = activate(dev, peers, VIRTIO_F_VERSION_1);
    let inbound = frame(b"early");
    h.peers[0].send(&inbound);
    std::thread::sleep(std::time::Duration::from_millis(20));
    h.queues[0].add_chain(&[(0x20_0000, 2048, F_WRITE)]);
    h.kicks[0].write(1).unwrap();
    let rx = &h.queues[0];
    assert!(wait_until(|| rx.used_idx() == 1));
    assert_eq!(rx.used_elem(0).1, inbound.len() as u32);
}

#[test]
fn the_second_pair_and_the_control_queue_work() {
    let (dev, peers) = device(4);
    let mut h = activate(dev, peers, u64::MAX);
    h.queues[2].add_chain(&[(0x20_0000, 2048, F_WRITE)]);
    h.kicks[2].write(1).unwrap();
    h.peers[1].send(&frame(b"pair one"));
    let rx1 = &h.queues[2];
    assert!(wait_until(|| rx1.used_idx() == 1));
    assert_eq!(h.queues[0].used_idx(), 0);
    // VIRTIO_NET_CTRL_MQ / VQ_PAIRS_SET 2 -> VIRTIO_NET_OK.
    h.mem
        .write_slice(&[4, 0, 2, 0], GuestAddress(0x30_0000))
        .unwrap();
    h.mem.write_obj(0xffu8, GuestAddress(0x30_1000)).unwrap();
    h.queues[4].add_chain(&[(0x30_0000, 4, 0), (0x30_1000, 1, F_WRITE)]);
    h.kicks[4].write(1).unwrap();
    let ctrl = &h.queues[4];
    assert!(wait_until(|| ctrl.used_idx() == 1));
    assert_eq!(h.mem.read_obj::<u8>(GuestAddress(0x30_1000)).unwrap(), 0);
}

#[test]
fn reset_returns_the_taps_for_a_new_activation() {
    let (dev, peers) = device(2);
    let mut h = activate(dev, peers, u64::MAX);
    assert!(h.dev.reset());
    assert!(!h.dev.is_active());
    let Harness { dev, peers, .. } = h;
    let mut h = activate(dev, peers, u64::MAX);
    h.queues[0].add_chain(&[(0x20_0000, 2048, F_WRITE)]);
    h.kicks[0].write(1).unwrap();
    h.peers[0].send(&frame(b"after reset"));
    let rx = &h.queues[0];
    assert!(wait_until(|| rx.used_idx() == 1));
}
