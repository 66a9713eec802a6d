//! Device-level tests: requests go through `activate`, the worker thread
//! and the queues, against a temporary image file.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use virtio_queue::QueueT;

use virtio_bindings::virtio_blk::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::virtio::device::{ActivatedQueue, VirtioInterruptType};
use crate::virtio::test_utils::{
    guest_memory, wait_until, RecordingInterrupt, TestQueue, F_INDIRECT, F_NEXT, F_WRITE,
};

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const STATUS_POISON: u8 = 0xee;
const IMAGE_LEN: usize = 64 * 1024;

fn image(fill: u8) -> TempFile {
    let tmp = TempFile::new().unwrap();
    tmp.as_file()
        .write_all_at(&vec![fill; IMAGE_LEN], 0)
        .unwrap();
    tmp
}

fn file_bytes(tmp: &TempFile) -> Vec<u8> {
    std::fs::read(tmp.as_path()).unwrap()
}

struct Harness {
    mem: GuestMemoryMmap,
    queues: Vec<TestQueue>,
    kicks: Vec<EventFd>,
    irq: Arc<RecordingInterrupt>,
    dev: Block,
}

impl Harness {
    fn new(cfg: &DiskConfig, acked: u64) -> Self {
        let mut dev = Block::new(cfg).unwrap();
        dev.ack_features(acked);
        let mem = guest_memory();
        let irq = Arc::new(RecordingInterrupt::default());
        let mut h = Harness {
            mem,
            queues: Vec::new(),
            kicks: Vec::new(),
            irq,
            dev,
        };
        h.activate();
        h
    }

    fn activate(&mut self) {
        let n = self.dev.queue_max_sizes().len();
        self.queues = (0..n)
            .map(|i| TestQueue::at(&self.mem, i as u64, 16))
            .collect();
        let mut activated = Vec::new();
        self.kicks.clear();
        for (i, tq) in self.queues.iter().enumerate() {
            let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
            self.kicks.push(notifier.try_clone().unwrap());
            activated.push(ActivatedQueue {
                index: i as u16,
                queue: tq.queue(),
                notifier,
            });
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues: activated,
            interrupt: self.irq.clone(),
            worker_init: None,
        };
        self.dev.activate(ctx).unwrap();
    }

    /// Submits a chain on queue `q`, waits for its completion and returns
    /// (used length, status byte).
    fn submit_on(&mut self, q: usize, descs: &[(u64, u32, u16)]) -> (u32, u8) {
        self.mem
            .write_obj(STATUS_POISON, GuestAddress(STATUS))
            .unwrap();
        let tq = &mut self.queues[q];
        let before = tq.used_idx();
        tq.add_chain(descs);
        self.kicks[q].write(1).unwrap();
        assert!(
            wait_until(|| tq.used_idx() != before),
            "request not completed"
        );
        let (_, len) = tq.used_elem(before);
        (len, self.mem.read_obj(GuestAddress(STATUS)).unwrap())
    }

    fn request(&mut self, kind: u32, sector: u64, data: Option<(u32, u16)>) -> (u32, u8) {
        write_header(&self.mem, kind, sector);
        let mut descs = vec![(HDR, 16, 0)];
        if let Some((len, flags)) = data {
            descs.push((DATA, len, flags));
        }
        descs.push((STATUS, 1, F_WRITE));
        self.submit_on(0, &descs)
    }
}

fn write_header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
}

#[test]
fn config_space_layout_matches_the_spec_struct() {
    use std::mem::offset_of;
    let tmp = image(0);
    let dev = Block::new(&DiskConfig {
        num_queues: 4,
        ..DiskConfig::new(tmp.as_path())
    })
    .unwrap();
    let read_u32 = |off: usize| {
        let mut b = [0u8; 4];
        dev.read_config(off as u64, &mut b);
        u32::from_le_bytes(b)
    };
    let mut cap = [0u8; 8];
    dev.read_config(offset_of!(virtio_blk_config, capacity) as u64, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), (IMAGE_LEN / 512) as u64);
    assert_eq!(dev.capacity(), (IMAGE_LEN / 512) as u64);
    assert_eq!(read_u32(offset_of!(virtio_blk_config, seg_max)), 254);
    assert_eq!(read_u32(offset_of!(virtio_blk_config, blk_size)), 512);
    let mut nq = [0u8; 2];
    dev.read_config(offset_of!(virtio_blk_config, num_queues) as u64, &mut nq);
    assert_eq!(u16::from_le_bytes(nq), 4);
    assert_eq!(
        read_u32(offset_of!(virtio_blk_config, max_discard_seg)),
        DISCARD_LIMITS.max_segments
    );
    assert_eq!(
        read_u32(offset_of!(virtio_blk_config, max_write_zeroes_sectors)),
        DISCARD_LIMITS.max_sectors
    );
    assert_eq!(
        offset_of!(virtio_blk_config, write_zeroes_may_unmap),
        56,
        "config builder offsets are out of date"
    );
    assert_eq!(dev.queue_max_sizes(), &[256; 4]);
    assert_ne!(dev.features() & (1 << VIRTIO_BLK_F_MQ), 0);
}

#[test]
fn features_follow_the_disk_mode() {
    let tmp = image(0);
    let ro = Block::new(&DiskConfig {
        readonly: true,
        ..DiskConfig::new(tmp.as_path())
    })
    .unwrap();
    let f = ro.features();
    assert_ne!(f & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(f & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
    assert_eq!(f & (1 << VIRTIO_BLK_F_DISCARD), 0);
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    assert_ne!(f & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_eq!(f & (1 << VIRTIO_BLK_F_MQ), 0);
    drop(ro);
    let rw = Block::new(&DiskConfig::new(tmp.as_path())).unwrap();
    assert_eq!(rw.features() & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(rw.features() & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
}

#[test]
fn bad_queue_settings_are_rejected() {
    let tmp = image(0);
    let cfg = |nq, qs| DiskConfig {
        num_queues: nq,
        queue_size: qs,
        ..DiskConfig::new(tmp.as_path())
    };
    assert!(matches!(
        Block::new(&cfg(0, 256)),
        Err(BlockError::NumQueues(0))
    ));
    assert!(matches!(
        Block::new(&cfg(1, 100)),
        Err(BlockError::QueueSize(100))
    ));
    assert!(matches!(
        Block::new(&cfg(1, 1)),
        Err(BlockError::QueueSize(1))
    ));
}

#[test]
fn a_second_device_on_the_same_image_is_refused() {
    let tmp = image(0);
    let _first = Block::new(&DiskConfig::new(tmp.as_path())).unwrap();
    let err = Block::new(&DiskConfig::new(tmp.as_path())).err().unwrap();
    assert!(matches!(err, BlockError::Disk(DiskError::Locked { .. })));
    assert!(err
        .to_string()
        .contains(&tmp.as_path().display().to_string()));
}

#[test]
fn write_then_read_round_trips_through_the_worker() {
    let tmp = image(0);
    let cfg = DiskConfig::new(tmp.as_path());
    let mut h = Harness::new(&cfg, u64::MAX);
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    h.mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
    assert_eq!(h.request(VIRTIO_BLK_T_OUT, 3, Some((1024, 0))), (1, 0));
    assert_eq!(&file_bytes(&tmp)[3 * 512..5 * 512], &pattern[..]);

    h.mem.write_slice(&[0u8; 1024], GuestAddress(DATA)).unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_IN, 3, Some((1024, F_WRITE))),
        (1025, VIRTIO_BLK_S_OK as u8)
    );
    let mut back = vec![0u8; 1024];
    h.mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert_eq!(back, pattern);
    // With EVENT_IDX and used_event left at 0, only the first completion
    // interrupts.
    assert_eq!(h.irq.count(VirtioInterruptType::Queue(0)), 1);
}

#[test]
fn flush_and_get_id_succeed() {
    let tmp = image(0);
    let cfg = DiskConfig {
        id: Some("disk-serial-0123456789abcdef".into()),
        ..DiskConfig::new(tmp.as_path())
    };
    let mut h = Harness::new(&cfg, !VIRTIO_F_RING_EVENT_IDX);
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, None), (1, 0));
    assert_eq!(
        h.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, F_WRITE))),
        (21, 0)
    );
    // Without EVENT_IDX every completion interrupts.
    assert_eq!(h.irq.count(VirtioInterruptType::Queue(0)), 2);
    let mut id = [0u8; 20];
    h.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"disk-serial-01234567");
}

#[test]
fn default_id_is_derived_from_the_image() {
    let tmp = image(0);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    assert_eq!(
        h.request(VIRTIO_BLK_T_GET_ID, 0, Some((20, F_WRITE))),
        (21, 0)
    );
    let mut id = [0u8; 20];
    h.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert!(id.contains(&b'-'), "{id:?}");
}

#[test]
fn discard_and_write_zeroes_zero_sectors() {
    let tmp = image(0xff);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    let seg = |sector: u64, n: u32, flags: u32| {
        let mut s = [0u8; 16];
        s[0..8].copy_from_slice(&sector.to_le_bytes());
        s[8..12].copy_from_slice(&n.to_le_bytes());
        s[12..16].copy_from_slice(&flags.to_le_bytes());
        s
    };
    h.mem
        .write_slice(&seg(2, 2, 0), GuestAddress(DATA))
        .unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, 0))),
        (1, 0)
    );
    let bytes = file_bytes(&tmp);
    assert!(bytes[1024..2048].iter().all(|&b| b == 0));
    assert!(bytes[..1024].iter().all(|&b| b == 0xff));
    assert!(bytes[2048..].iter().all(|&b| b == 0xff));

    let discard = h.dev.features() & (1 << VIRTIO_BLK_F_DISCARD) != 0;
    h.mem
        .write_slice(&seg(64, 8, 0), GuestAddress(DATA))
        .unwrap();
    let (_, status) = h.request(VIRTIO_BLK_T_DISCARD, 0, Some((16, 0)));
    if discard {
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert!(file_bytes(&tmp)[64 * 512..72 * 512].iter().all(|&b| b == 0));
    } else {
        assert_eq!(status, VIRTIO_BLK_S_UNSUPP as u8);
    }
    // The unmap flag is not allowed on discard; a range past the end fails.
    h.mem
        .write_slice(&seg(64, 8, 1), GuestAddress(DATA))
        .unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_DISCARD, 0, Some((16, 0))).1,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    h.mem
        .write_slice(&seg(127, 2, 0), GuestAddress(DATA))
        .unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, 0))).1,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(file_bytes(&tmp).len(), IMAGE_LEN);
}

#[test]
fn requests_beyond_the_end_fail_and_leave_the_image_alone() {
    let tmp = image(0x11);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    h.mem
        .write_slice(&[0x22u8; 1024], GuestAddress(DATA))
        .unwrap();
    let last = (IMAGE_LEN / 512) as u64 - 1;
    // Straddles the end by one sector.
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, last, Some((1024, 0))),
        (1, VIRTIO_BLK_S_IOERR as u8)
    );
    // sector * 512 overflows u64.
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, u64::MAX / 256, Some((512, 0)))
            .1,
        VIRTIO_BLK_S_IOERR as u8
    );
    // sector * 512 + len overflows u64.
    let near_max = (u64::MAX - 100) / 512;
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, near_max, Some((1024, 0))).1,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(
        h.request(VIRTIO_BLK_T_IN, last + 1, Some((512, F_WRITE))).1,
        VIRTIO_BLK_S_IOERR as u8
    );
    let bytes = file_bytes(&tmp);
    assert_eq!(bytes.len(), IMAGE_LEN);
    assert!(bytes.iter().all(|&b| b == 0x11));
    // The last sector itself is fine.
    assert_eq!(h.request(VIRTIO_BLK_T_OUT, last, Some((512, 0))), (1, 0));
    assert_eq!(file_bytes(&tmp).len(), IMAGE_LEN);
}

#[test]
fn a_disk_grown_while_active_serves_the_new_sectors_and_tells_the_driver() {
    let tmp = image(0x11);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    let old_end = (IMAGE_LEN / 512) as u64;
    h.mem
        .write_slice(&[0x33u8; 512], GuestAddress(DATA))
        .unwrap();
    // Beyond the end before: an I/O error.
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, old_end, Some((512, 0))).1,
        VIRTIO_BLK_S_IOERR as u8
    );
    let before = h.irq.count(VirtioInterruptType::Config);
    let grown = 2 * IMAGE_LEN as u64;
    h.dev.resize(grown).unwrap();
    assert_eq!(h.dev.capacity(), grown / 512);
    assert_eq!(std::fs::metadata(tmp.as_path()).unwrap().len(), grown);
    assert_eq!(h.irq.count(VirtioInterruptType::Config), before + 1);
    // The worker serves the new sectors at once; the new part read zeros before.
    assert_eq!(h.request(VIRTIO_BLK_T_OUT, old_end, Some((512, 0))), (1, 0));
    let bytes = file_bytes(&tmp);
    assert!(bytes[IMAGE_LEN..IMAGE_LEN + 512].iter().all(|&b| b == 0x33));
    assert!(bytes[IMAGE_LEN + 512..].iter().all(|&b| b == 0));
    // Shrinking and sizes that are not whole sectors are refused; nothing changes.
    for bad in [IMAGE_LEN as u64, grown + 100] {
        assert!(h.dev.resize(bad).is_err(), "{bad}");
    }
    assert_eq!(h.dev.capacity(), grown / 512);
    assert_eq!(h.irq.count(VirtioInterruptType::Config), before + 1);
    // A read-only disk cannot grow.
    let ro = image(0);
    let mut cfg = DiskConfig::new(ro.as_path());
    cfg.readonly = true;
    let mut dev = Block::new(&cfg).unwrap();
    let e = dev.resize(2 * IMAGE_LEN as u64).unwrap_err();
    assert!(e.contains("read-only"), "{e}");
}

#[test]
fn a_readonly_disk_refuses_writes() {
    let tmp = image(0x33);
    let cfg = DiskConfig {
        readonly: true,
        ..DiskConfig::new(tmp.as_path())
    };
    let mut h = Harness::new(&cfg, u64::MAX);
    h.mem
        .write_slice(&[0x44u8; 512], GuestAddress(DATA))
        .unwrap();
    assert_eq!(
        h.request(VIRTIO_BLK_T_OUT, 0, Some((512, 0))),
        (1, VIRTIO_BLK_S_IOERR as u8)
    );
    assert_eq!(
        h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, 0))).1,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert!(file_bytes(&tmp).iter().all(|&b| b == 0x33));
    assert_eq!(
        h.request(VIRTIO_BLK_T_IN, 0, Some((512, F_WRITE))),
        (513, 0)
    );
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, None), (1, 0));
}

#[test]
fn unsupported_or_unnegotiated_requests_get_unsupp() {
    let tmp = image(0);
    // The driver acked neither DISCARD nor WRITE_ZEROES.
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), VIRTIO_F_VERSION_1);
    assert_eq!(
        h.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, 0))).1,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    assert_eq!(h.request(0x77, 0, None), (1, VIRTIO_BLK_S_UNSUPP as u8));
}

#[test]
fn malformed_chains_are_dropped_and_the_device_keeps_working() {
    let tmp = image(0);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    write_header(&h.mem, VIRTIO_BLK_T_IN, 0);
    // A data buffer outside guest memory: dropped with used length 0.
    let (len, status) = h.submit_on(
        0,
        &[
            (HDR, 16, 0),
            (u64::MAX - 511, 512, F_WRITE),
            (STATUS, 1, F_WRITE),
        ],
    );
    assert_eq!((len, status), (0, STATUS_POISON));
    // A looping chain: descriptor 1 points back to 0.
    let before = h.queues[0].used_idx();
    let head = h.queues[0].add_chain(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    h.queues[0].write_desc(head + 1, STATUS, 1, F_WRITE | F_NEXT, head);
    h.kicks[0].write(1).unwrap();
    let tq = &h.queues[0];
    assert!(wait_until(|| tq.used_idx() != before));
    assert_eq!(tq.used_elem(before).1, 0);
    // A chain with a writable header: answered with IOERR.
    assert_eq!(
        h.submit_on(0, &[(HDR, 16, F_WRITE), (STATUS, 1, F_WRITE)]),
        (1, VIRTIO_BLK_S_IOERR as u8)
    );
    // The device still serves good requests.
    assert_eq!(
        h.request(VIRTIO_BLK_T_IN, 0, Some((512, F_WRITE))),
        (513, 0)
    );
}

#[test]
fn indirect_chains_are_followed() {
    let tmp = image(0x5a);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    write_header(&h.mem, VIRTIO_BLK_T_IN, 1);
    // Three descriptors in an indirect table at 0x40_0000.
    let table = 0x40_0000u64;
    let raw = |addr: u64, len: u32, flags: u16, next: u16| {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        d
    };
    let descs = [
        raw(HDR, 16, F_NEXT, 1),
        raw(DATA, 512, F_WRITE | F_NEXT, 2),
        raw(STATUS, 1, F_WRITE, 0),
    ];
    for (i, d) in descs.iter().enumerate() {
        h.mem
            .write_slice(d, GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    assert_eq!(h.submit_on(0, &[(table, 48, F_INDIRECT)]), (513, 0));
    let mut back = [0u8; 512];
    h.mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert!(back.iter().all(|&b| b == 0x5a));
}

#[test]
fn every_queue_of_a_multiqueue_disk_is_served() {
    let tmp = image(0x66);
    let cfg = DiskConfig {
        num_queues: 3,
        ..DiskConfig::new(tmp.as_path())
    };
    let mut h = Harness::new(&cfg, u64::MAX);
    write_header(&h.mem, VIRTIO_BLK_T_IN, 0);
    let descs = [(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)];
    assert_eq!(h.submit_on(2, &descs), (513, 0));
    assert_eq!(h.irq.count(VirtioInterruptType::Queue(2)), 1);
    assert_eq!(h.submit_on(1, &descs), (513, 0));
}

#[test]
fn reset_stops_the_worker_and_the_device_can_be_reactivated() {
    let tmp = image(0);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    assert!(h.dev.is_active());
    assert!(h.dev.reset());
    assert!(!h.dev.is_active());
    // The image stays locked by this device while it is reset.
    assert!(Block::new(&DiskConfig::new(tmp.as_path())).is_err());
    h.dev.ack_features(u64::MAX);
    h.activate();
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, None), (1, 0));
}

#[test]
fn activation_errors_leave_the_device_usable() {
    let tmp = image(0);
    let mut dev = Block::new(&DiskConfig::new(tmp.as_path())).unwrap();
    let mem = guest_memory();
    let irq = Arc::new(RecordingInterrupt::default());
    let ctx = ActivateContext {
        mem: mem.clone(),
        queues: Vec::new(),
        interrupt: irq.clone(),
        worker_init: None,
    };
    assert!(matches!(
        dev.activate(ctx),
        Err(ActivateError::MissingQueue(0))
    ));
    let tq = TestQueue::new(&mem, 16);
    let ctx = ActivateContext {
        mem,
        queues: vec![ActivatedQueue {
            index: 0,
            queue: tq.queue(),
            notifier: EventFd::new(EFD_NONBLOCK).unwrap(),
        }],
        interrupt: irq,
        worker_init: None,
    };
    dev.activate(ctx).unwrap();
    assert!(dev.is_active());
    let again = ActivateContext {
        mem: guest_memory(),
        queues: Vec::new(),
        interrupt: Arc::new(RecordingInterrupt::default()),
        worker_init: None,
    };
    assert!(matches!(
        dev.activate(again),
        Err(ActivateError::AlreadyActive)
    ));
    assert!(dev.is_active());
}

/// A tiny deterministic PRNG (xorshift64*) for the randomized test below.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[test]
fn random_descriptor_tables_never_panic_nor_resize_the_image() {
    use super::handler::{Negotiated, RequestExecutor};
    use crate::virtio::test_utils::MEM_SIZE;

    let tmp = image(0x11);
    let disk = DiskImage::open(tmp.as_path(), false, false).unwrap();
    let mut ex = RequestExecutor::new(disk, [0u8; ID_LEN], DISCARD_LIMITS);
    ex.set_negotiated(Negotiated {
        discard: true,
        write_zeroes: true,
    });
    let mem = guest_memory();
    let mut tq = TestQueue::new(&mem, 16);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let sectors = (IMAGE_LEN / 512) as u64;
    for _ in 0..3000 {
        for i in 0..16 {
            let (r1, r2, r3) = (rng.next(), rng.next(), rng.next() as u32);
            let addr = rng.pick(&[HDR, DATA, STATUS, MEM_SIZE - 8, r1, r2 % MEM_SIZE]);
            let len = rng.pick(&[0, 1, 15, 16, 17, 512, 1024, 4096, r3]);
            let flags = (rng.next() % 8) as u16;
            let next = (rng.next() % 20) as u16;
            tq.write_desc(i, addr, len, flags, next);
        }
        let r = rng.next();
        let kind = rng.pick(&[0u32, 1, 4, 8, 11, 13, r as u32]);
        let sector = rng.pick(&[0, 1, sectors - 1, sectors, r]);
        write_header(&mem, kind, sector);
        // A random discard segment in case the data is parsed as one.
        let seg = [rng.next().to_le_bytes(), rng.next().to_le_bytes()].concat();
        mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
        tq.publish((rng.next() % 18) as u16);
        let chain = tq.pop(&mem);
        let used = ex.handle_chain(&mem, chain);
        assert!(u64::from(used) <= MEM_SIZE);
    }
    assert_eq!(file_bytes(&tmp).len(), IMAGE_LEN);
}

#[test]
fn a_paused_device_reports_its_place_and_carries_on_from_it() {
    let tmp = image(0);
    let mut h = Harness::new(&DiskConfig::new(tmp.as_path()), u64::MAX);
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, None), (1, 0));
    assert_eq!(h.request(VIRTIO_BLK_T_FLUSH, 0, None), (1, 0));
    let positions = h.dev.pause().unwrap().expect("it was active");
    assert_eq!(
        positions,
        vec![crate::virtio::QueuePosition {
            index: 0,
            next_avail: 2,
            next_used: 2
        }]
    );
    assert!(!h.dev.is_active());
    // The image stays this device's, and the acked features stay acked: activated again
    // with the same rings at the saved place, the next request is the third.
    assert!(Block::new(&DiskConfig::new(tmp.as_path())).is_err());
    assert!(
        h.dev.pause().unwrap().is_none(),
        "not active: nothing to save"
    );
    let mut queue = h.queues[0].queue();
    queue.set_next_avail(positions[0].next_avail);
    queue.set_next_used(positions[0].next_used);
    let notifier = EventFd::new(EFD_NONBLOCK).unwrap();
    h.kicks[0] = notifier.try_clone().unwrap();
    let ctx = ActivateContext {
        mem: h.mem.clone(),
        queues: vec![ActivatedQueue {
            index: 0,
            queue,
            notifier,
        }],
        interrupt: h.irq.clone(),
        worker_init: None,
    };
    h.dev.activate(ctx).unwrap();
    let data = (512, F_WRITE);
    assert_eq!(h.request(VIRTIO_BLK_T_IN, 0, Some(data)), (513, 0));
    assert_eq!(h.queues[0].used_idx(), 3);
    let positions = h.dev.pause().unwrap().unwrap();
    assert_eq!((positions[0].next_avail, positions[0].next_used), (3, 3));
}
